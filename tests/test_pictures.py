"""aptviz.render.pictures: the drawing primitives, against plain NumPy."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aptviz.render.pictures import _expand


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 9), st.integers(0, 2), st.integers(0, 10**6),
       st.integers(-12, 4), st.integers(-12, 4))  # fmt: skip
def test_expand_repeats_every_cell_and_crops(rows, cols, ps, kind, seed, dh, dw):
    """Cells blown up to ps x ps pixels, cropped to (or short of) the asked size: the same array as
    repeating every pixel along both axes, of the same dtype, new and writable (callers draw into it)."""
    rng = np.random.default_rng(seed)
    shape = [(rows, cols), (rows, cols, 3), (rows, cols, 3)][kind]
    cells = rng.integers(0, 256, shape).astype([bool, np.uint8, np.float64][kind])
    height, width = max(1, rows * ps + dh), max(1, cols * ps + dw)
    out = _expand(cells, ps, height, width)
    expected = np.repeat(np.repeat(cells, ps, axis=0), ps, axis=1)[:height, :width]
    assert out.dtype == cells.dtype and out.shape == expected.shape and np.array_equal(out, expected)
    assert out.flags.writeable and not np.shares_memory(out, cells)
