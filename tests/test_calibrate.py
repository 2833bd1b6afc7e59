"""calibrate: exact steps, re-checked by a sweep at the value found."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aptviz.compute.calibration import calibrate_maps, step_function
from aptviz.compute.entropy import entropy_maps
from aptviz.compute.loading import load_image
from aptviz.compute.resize import resize_image
from aptviz.compute.selection import select_patches
from aptviz.errors import ParameterError
from aptviz.pipeline import analyze
from aptviz.runs.calibrate import calibrate_paths

from conftest import textured


def _retention(maps, method, x):
    if method == "v2":
        return select_patches(maps, "v2", alpha=x).retention
    return select_patches(maps, "v1", thresholds=[3.0 * x, 2.0 * x]).retention


@pytest.mark.parametrize("method", ["v2", "v1"])
def test_step_function_equals_selection_everywhere(method):
    img = textured(168, 224, 3)
    maps = entropy_maps(img)
    f = step_function(maps, method)
    steps = f.lo[np.isfinite(f.lo)]
    xs = np.concatenate([np.linspace(0, 3, 61), steps * (1 + 1e-9), steps * (1 - 1e-9)])
    expected = [round(_retention(maps, method, x) * f.n) for x in xs]
    assert f.tokens(xs).tolist() == expected


@pytest.mark.parametrize("statistic", ["mean", "median"])
@pytest.mark.parametrize("method", ["v2", "v1"])
def test_calibrate_is_rechecked_by_a_sweep(sample_paths, method, statistic):
    target = 0.3
    cal, failed = calibrate_paths([str(p) for p in sample_paths], method, target, statistic=statistic)
    assert not failed
    # a sweep at the value found, through the public API
    key = {"alphas": [cal.value]} if method == "v2" else {"thresholds": [3.0 * cal.value, 2.0 * cal.value]}
    rets = [analyze(p, methods=[method], **key)["selections"][0]["retention"] for p in sample_paths]
    stat = statistics.fmean(rets) if statistic == "mean" else statistics.median(rets)
    assert rets == cal.retentions
    assert stat == cal.achieved <= target
    assert cal.below_target
    # closest from below: nothing between the value found and the target on any finer alpha grid
    maps = [entropy_maps(np.asarray(resize_image(load_image(p)))) for p in sample_paths]
    for x in np.linspace(0, 3 * cal.value, 301):
        r = [_retention(m, method, x) for m in maps]
        s = statistics.fmean(r) if statistic == "mean" else statistics.median(r)
        assert not (cal.achieved < s <= target)


def test_target_unreachable_from_below_gives_the_minimum():
    img = np.full((112, 112, 3), 7, np.uint8)  # flat: every 56 px cell has entropy 0 and mean 0
    maps = entropy_maps(img)
    cal = calibrate_maps([maps], "v1", target=0.01)
    assert cal.achieved == 4 / 64 and not cal.below_target


@given(st.integers(0, 40), st.floats(0.05, 1.0))
@pytest.mark.slow
def test_calibrate_property(seed, target):
    maps = [entropy_maps(textured(112, 140, seed)), entropy_maps(textured(84, 168, seed + 1))]
    cal = calibrate_maps(maps, "v2", target=target)
    rets = [select_patches(m, "v2", alpha=cal.value).retention for m in maps]
    assert statistics.fmean(rets) == cal.achieved
    if cal.below_target:
        assert cal.achieved <= target
        # any smaller alpha that changes the mean moves it above the target
        for x in np.linspace(0, cal.value, 41)[:-1]:
            m = statistics.fmean(select_patches(mm, "v2", alpha=x).retention for mm in maps)
            assert m >= cal.achieved
            assert m == cal.achieved or m > target


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"method": "budget"}, "calibrate works for v1 and v2"),
        ({"statistic": "max"}, "statistic must be mean or median"),
        ({"target": 0.0}, "target must be in (0, 1]"),
        ({"target": 1.5}, "target must be in (0, 1]"),
    ],
)
def test_bad_arguments(kwargs, message):
    maps = entropy_maps(textured(56, 56))
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        calibrate_maps([maps], **kwargs)


def _old_calibrate_maps(maps_list, method, target, statistic, thresholds=(3.0, 2.0)):
    """The implementation before the O(images + steps) curve: an images x steps matrix (the reference)."""
    from aptviz.compute.calibration import _short_decimal

    functions = [step_function(m, method, thresholds) for m in maps_list]
    steps = np.unique(np.concatenate([f.lo for f in functions] + [f.hi for f in functions]))
    steps = steps[np.isfinite(steps) & (steps >= 0)]
    edges = np.unique(np.concatenate([[0.0], steps, [np.inf]]))
    lows = np.concatenate([[0.0], edges[:-1]])
    highs = np.concatenate([[0.0], edges[1:]])
    inside = np.where(np.isinf(highs), lows + 1.0, (lows + highs) / 2.0)
    values = np.stack([f.retention(inside) for f in functions])
    curve = values.mean(axis=0) if statistic == "mean" else np.median(values, axis=0)
    ok = np.nonzero(curve <= target + 1e-12)[0]
    pick = ok[0] if ok.size else int(np.argmin(curve))
    same = np.nonzero(curve == curve[pick])[0]
    return _short_decimal(float(lows[same.min()]), float(highs[same.max()]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(28, 120), st.integers(28, 120), st.integers(0, 10**6), st.sampled_from([1, 7, 64])),
             min_size=1, max_size=24),
    st.floats(0.02, 1.0), st.sampled_from(["mean", "median"]), st.sampled_from(["v2", "v1"]),
)
def test_curve_equals_the_images_by_steps_matrix(images, target, statistic, method):
    """The merged curve picks exactly the value the full images x steps matrix picked, on random maps."""
    maps = []
    for h, w, seed, levels in images:
        img = np.random.default_rng(seed).integers(0, 256, (h, w, 3))
        maps.append(entropy_maps(((img // (256 // levels if levels < 256 else 1)) * 3).astype(np.uint8)))
    cal = calibrate_maps(maps, method, target=target, statistic=statistic)
    assert cal.value == _old_calibrate_maps(maps, method, target, statistic)


@pytest.mark.slow
def test_calibrate_memory_is_linear_in_images():
    """Four times the images take at most about four times the memory (the images x steps matrix took 16x)."""
    import tracemalloc

    maps = [entropy_maps(textured(56, 84, seed)) for seed in range(800)]

    def peak(n):
        tracemalloc.start()
        calibrate_maps(maps[:n], "v2", target=0.4, statistic="median")
        out = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out

    small, large = peak(200), peak(800)
    assert large < 6 * small
