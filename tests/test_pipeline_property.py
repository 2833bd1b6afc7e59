"""The whole per-image pipeline on any image (hypothesis): stats.json, grids, full coverage, token counts."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import aptviz
from aptviz.compute.params import Params, expand_runs
from aptviz.compute.selection import coverage
from aptviz.pipeline import compute, write_outputs

from conftest import textured


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 400),
    ratio=st.floats(0.02, 50),
    seed=st.integers(0, 10**6),
    kind=st.sampled_from(["noise", "flat", "textured", "levels"]),
    alpha=st.floats(0, 1),
)
@pytest.mark.slow
def test_whole_pipeline_property(tmp_path_factory, h, ratio, seed, kind, alpha):
    w = max(1, min(4000, int(round(h * ratio))))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "flat":
        arr = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    elif kind == "levels":
        arr = (rng.integers(0, 3, (h, w, 3)) * 120).astype(np.uint8)
    else:
        arr = textured(h, w, seed)
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "img.png"
    Image.fromarray(arr).save(path)
    runs = expand_runs(["v1", "v2", "budget"], [alpha])
    result = compute(path, runs, Params())  # process_image is compute then write_outputs: one compute for both checks
    stats = write_outputs(result, folder / "out").to_dict()
    assert json.loads((folder / "out" / "stats.json").read_text(encoding="utf-8")) == stats
    maps = aptviz.entropy_maps(np.asarray(Image.open(folder / "out" / "03_original_resized" / "resized_image.jpg")))
    assert stats["grid"] == {str(ps): list(m.shape) for ps, m in maps.items()}
    for sel_stats, method in zip(stats["selections"], ["v1", "v2", "budget"]):
        assert sel_stats["method"] == method
    for sel in (s.selection for s in result.selections):
        assert bool((coverage(sel.masks) == 1).all())
    assert [s["tokens"] for s in stats["selections"]] == [s.selection.tokens for s in result.selections]
