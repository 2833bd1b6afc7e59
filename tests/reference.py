"""Independent, deliberately naive implementations of docs/pipeline.md §1.3-1.4.

Python loops over cells, float64 everywhere, geometry from the pixel size:
nothing here shares code with aptviz, so agreement is evidence, not echo.
"""

from __future__ import annotations

import math

import numpy as np

PAD = 1e6


def gray_f32(img: np.ndarray) -> np.ndarray:
    r = img[..., 0].astype(np.float32) * np.float32(0.2989)
    g = img[..., 1].astype(np.float32) * np.float32(0.5870)
    b = img[..., 2].astype(np.float32) * np.float32(0.1140)
    return (r + g) + b


def entropy_map(img: np.ndarray, ps: int, bins: int = 512) -> np.ndarray:
    """Entropy of every ps x ps cell, zero-padded, PAD rows/cols, float64.

    The bin of a pixel is ``min(floor(gray * bins / 256), bins - 1)`` with the
    product taken in float64 from the float32 gray (docs/pipeline.md §1.3), exact for any
    bin count.
    """
    gray = gray_f32(img).astype(np.float64)
    h, w = gray.shape
    rows, cols = math.ceil(h / ps), math.ceil(w / ps)
    padded = np.zeros((rows * ps, cols * ps))
    padded[:h, :w] = gray
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            cell = padded[r * ps : (r + 1) * ps, c * ps : (c + 1) * ps]
            idx = np.minimum(np.floor(cell * bins / 256), bins - 1).astype(int)
            counts = np.bincount(idx.ravel(), minlength=bins)
            p = counts[counts > 0] / ps**2
            out[r, c] = -math.fsum(p * np.log2(p))
    if rows * ps > h:
        out[-1, :] = PAD
    if cols * ps > w:
        out[:, -1] = PAD
    return out


class Geometry:
    """Cells of every scale for an image of height x width pixels."""

    def __init__(self, height: int, width: int, scales: list[int]):
        self.h, self.w, self.scales = height, width, sorted(scales)
        self.finest = self.scales[0]

    def grid(self, ps):
        return math.ceil(self.h / ps), math.ceil(self.w / ps)

    def inside(self, ps, r, c):
        return (r + 1) * ps <= self.h and (c + 1) * ps <= self.w

    def exists(self, ps, r, c):
        return r * ps < self.h and c * ps < self.w

    def children(self, ps, r, c):
        half = ps // 2
        out = []
        for dr in (0, 1):
            for dc in (0, 1):
                cell = (half, 2 * r + dr, 2 * c + dc)
                if self.exists(*cell):
                    out.append(cell)
        return out

    def finest_cells(self, ps, r, c):
        k = ps // self.finest
        rows, cols = self.grid(self.finest)
        return [(rr, cc) for rr in range(r * k, min((r + 1) * k, rows)) for cc in range(c * k, min((c + 1) * k, cols))]


def masks_from_cells(geo: Geometry, kept: set) -> dict[int, np.ndarray]:
    masks = {ps: np.zeros(geo.grid(ps), dtype=bool) for ps in geo.scales}
    for ps, r, c in kept:
        masks[ps][r, c] = True
    return masks


def select_thresholds(maps: dict[int, np.ndarray], geo: Geometry, thresholds) -> dict[int, np.ndarray]:
    """v1/v2: each finest cell goes to the largest scale whose cell is kept."""
    coarse = geo.scales[1:]
    kept = set()
    rows, cols = geo.grid(geo.finest)
    for r in range(rows):
        for c in range(cols):
            owner = (geo.finest, r, c)
            for ps, thr in zip(coarse, thresholds):
                k = ps // geo.finest
                pr, pc = r // k, c // k
                if thr is not None and geo.inside(ps, pr, pc) and float(maps[ps][pr, pc]) < thr:
                    owner = (ps, pr, pc)  # later (larger) scales override
            kept.add(owner)
    return masks_from_cells(geo, kept)


def v2_thresholds(maps, geo: Geometry, alpha: float):
    out = []
    for ps in geo.scales[1:]:
        rows, cols = geo.grid(ps)
        vals = [float(maps[ps][r, c]) for r in range(rows) for c in range(cols) if geo.inside(ps, r, c)]
        out.append(alpha * (math.fsum(vals) / len(vals)) if vals else None)
    return out


def select_budget(maps: dict[int, np.ndarray], geo: Geometry, alpha: float, own_value: bool = False):
    """Budget selection; ``own_value``: a cell scores its own map value (upsample-mse, docs/pipeline.md §7)."""
    finest = geo.finest
    rows, cols = geo.grid(finest)
    n = rows * cols
    budget = round(alpha * n)
    fine = maps[finest]

    def score(cell):
        if own_value:
            return float(maps[cell[0]][cell[1], cell[2]])
        vals = [float(fine[rr, cc]) for rr, cc in geo.finest_cells(*cell)]
        return math.fsum(vals) / len(vals)

    base = []

    def fit(cell):
        if cell[0] == finest or geo.inside(*cell):
            base.append(cell)
        else:
            for ch in geo.children(*cell):
                fit(ch)

    top = geo.scales[-1]
    trows, tcols = geo.grid(top)
    for r in range(trows):
        for c in range(tcols):
            fit((top, r, c))

    prop = {}
    splittable = []

    def walk(cell, parent_prop):
        if cell[0] > finest:
            own = score(cell)
            p = own if parent_prop is None else min(own, parent_prop)
            prop[cell] = p
            splittable.append(cell)
            for ch in geo.children(*cell):
                walk(ch, p)

    for cell in base:
        walk(cell, None)
    k = min(max(0, (budget - len(base)) // 3), len(splittable))
    order = sorted(splittable, key=lambda cell: (-prop[cell], -cell[0], cell[1], cell[2]))
    split = set(order[:k])
    kept = set()

    def collect(cell):
        if cell in split:
            for ch in geo.children(*cell):
                collect(ch)
        else:
            kept.add(cell)

    for cell in base:
        collect(cell)
    info = {
        "alpha": alpha,
        "base_small_tokens": n,
        "base_tokens": len(base),
        "budget": budget,
        "k": k,
        "tokens": len(kept),
    }
    return masks_from_cells(geo, kept), info
