"""The public API (aptviz/__init__.py): selections given one way everywhere, typed results with to_dict()."""

import json

import pytest

import aptviz
from aptviz.compute.params import RunSpec
from aptviz.compute.stats import ImageStats, SelectionStats
from aptviz.errors import ParameterError

from conftest import SAMPLES

CHELSEA = SAMPLES / "chelsea.png"


def test_analyze_takes_text_or_runspecs_and_returns_typed_stats_that_are_the_dict():
    text = aptviz.analyze(CHELSEA, ["budget:0.3", "v1"])
    specs = aptviz.analyze(CHELSEA, [RunSpec("budget", 0.3), RunSpec("v1", None, (3.0, 2.0))])
    one = aptviz.analyze(CHELSEA, "budget:0.3")
    old = aptviz.analyze(CHELSEA, methods=["budget", "v1"], alphas=[0.3])
    assert text == specs == old and one["selections"] == text["selections"][:1]
    assert isinstance(text.stats, ImageStats) and isinstance(text.selections[0], SelectionStats)
    assert text.selections[0].tokens == text["selections"][0]["tokens"] == 209
    plain = text.to_dict()
    assert type(plain) is dict and json.loads(json.dumps(plain)) == plain == text
    with pytest.raises(ParameterError, match="once"):
        aptviz.analyze(CHELSEA, "v1", methods=["v1"])


def test_explore_starts_from_a_selection_given_as_text_or_runspec():
    a = aptviz.explore(CHELSEA, "budget:0.3")
    b = aptviz.explore(CHELSEA, RunSpec("budget", 0.3))
    c = aptviz.explore(CHELSEA, RunSpec("v1", None, (2.5, 1.5)))
    assert (a.method, a.alpha) == (b.method, b.alpha) == ("budget", 0.3)
    assert (c.method, c.thresholds) == ("v1", [2.5, 1.5])


def test_calibrate_is_exported_and_takes_a_selection(tmp_path):
    from aptviz.runs.calibrate import calibrate_paths

    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = [CHELSEA, SAMPLES / "coffee.png", tmp_path / "broken.png"]
    cal = aptviz.calibrate(paths, "v2", target=0.3)
    same, _ = calibrate_paths([str(p) for p in paths[:2]], "v2", 0.3)
    assert (cal.value, cal.achieved) == (same.value, same.achieved) and cal.achieved <= 0.3
    assert [p for p, _ in cal.failed] == [str(tmp_path / "broken.png")]
    v1 = aptviz.calibrate(paths[:2], RunSpec("v1", None, (2.0, 1.0)), target=0.3)
    assert v1.method == "v1" and v1.thresholds == [pytest.approx(2.0 * v1.value), pytest.approx(1.0 * v1.value)]
    assert v1.to_dict()["factor"] == v1.value
