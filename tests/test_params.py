"""One source of truth: Method/Device enums, self-validating Params/RunSpec, per-method alphas."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aptviz.compute.entropy import compute_maps
from aptviz.compute.params import (
    Device,
    Method,
    Params,
    RunSpec,
    build_runs,
    format_alpha,
    parse_method,
)
from aptviz.compute.selection import select_patches
from aptviz.errors import ParameterError


def test_per_method_alphas_and_default_list():
    runs = build_runs(["v2:0.8,1,1.2", "budget:0.3", "v1", "Budget"], [0.5])
    assert [(r.method, r.alpha) for r in runs] == [
        (Method.v2, 0.8),
        (Method.v2, 1.0),
        (Method.v2, 1.2),
        (Method.budget, 0.3),
        (Method.v1, None),
        (Method.budget, 0.5),  # a bare method takes the -a list
    ]
    assert build_runs([]) == [RunSpec("v1")]
    assert build_runs(["budget:0.3", "BUDGET:0.3"]) == [RunSpec("budget", 0.3)]  # duplicates removed


@pytest.mark.parametrize(
    "text,needle",
    [
        ("budgte", "unknown method 'budgte' (did you mean 'budget'?); choose v1, v2 or budget"),
        ("V3", "(did you mean 'v2'?)"),
        ("xyz", "unknown method 'xyz'; choose v1, v2 or budget"),
        ("v1:0.3", "v1 takes no alpha"),
        ("budget:", "give at least one alpha"),
        ("budget:a", "expected comma-separated numbers"),
        ("budget:1.0000001", "budget alpha must be in [0, 1], got 1.0000001"),
        ("v2:-0.5", "v2 alpha must be >= 0, got -0.5"),
        ("v2:nan", "alpha must be a finite number"),
    ],
)
def test_bad_methods_are_one_clean_line(text, needle):
    with pytest.raises(ParameterError) as info:
        build_runs([text])
    message = str(info.value)
    assert needle in message and "\n" not in message and "Value error" not in message


def test_method_names_in_any_case():
    assert [parse_method(t) for t in ("V1", "v2", "bUdGeT")] == [Method.v1, Method.v2, Method.budget]


def test_params_validate_themselves():
    with pytest.raises(ParameterError, match="min-pixels"):
        Params(min_pixels=10, max_pixels=5)
    with pytest.raises(ParameterError, match="unknown device"):
        Params(device="tpu")
    assert Params(device=Device.cuda).device == "cuda" and Params(device="CUDA:1").device == "cuda:1"
    assert Params(device="auto").resolved().device in ("cpu", "cuda")


def test_select_patches_validates_through_runspec():
    maps = compute_maps(np.zeros((112, 112, 3), np.uint8))
    for method, alpha in (("budget", 1.5), ("v2", -1.0)):
        with pytest.raises(ParameterError) as api:
            select_patches(maps, method, alpha=alpha)
        with pytest.raises(ParameterError) as spec:
            RunSpec(method, alpha)
        assert str(api.value) == str(spec.value)
    with pytest.raises(ParameterError, match="did you mean 'budget'"):
        select_patches(maps, "budgte")
    assert select_patches(maps, "BUDGET", alpha=0.5).tokens == 31


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_alpha_printed_as_given_round_trips(alpha):
    assert float(format_alpha(alpha)) == alpha
    assert format_alpha(RunSpec("budget", float(format_alpha(alpha))).alpha) == format_alpha(alpha)


def test_a_merge_unit_larger_than_max_pixels_is_a_usage_error(tmp_path):
    """Issue 27: ``--merge-size 1000`` made every image 14000 x 14000 pixels (smart_resize keeps at least one
    14000 px unit per side), 103 s and 7 GB past ``--max-pixels``. Refused before any work, for both commands."""
    from conftest import aptviz

    with pytest.raises(ParameterError, match="14 x 1000 = 14000 px"):
        Params(merge_size=1000)
    assert Params(merge_size=35).factor ** 2 <= Params().max_pixels  # the largest unit that fits (490 px)
    with pytest.raises(ParameterError, match="more than max-pixels"):
        Params(patch_size=16, merge_size=2, min_pixels=100, max_pixels=32 * 32 - 1)
    image = Path(__file__).resolve().parents[1] / "sample_images" / "chelsea.png"
    for command in ([], ["stats"]):
        r = aptviz(*command, image, "-o", tmp_path / f"o{len(command)}", "--merge-size", "1000", timeout=60)
        assert r.returncode == 2, r.stderr
        assert "aptviz: error: patch-size x merge-size is 14 x 1000 = 14000 px: one 14000x14000 unit is " in r.stderr
        assert not (tmp_path / f"o{len(command)}").exists()
