"""calibrate: exact steps, re-checked by a sweep at the value found."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given
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
