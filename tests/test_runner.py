"""The library run API, driven directly (no command line)."""

import json
import shutil
from pathlib import Path

import pytest

import aptviz
from aptviz.compute.params import Params, RunSpec
from aptviz.errors import ParameterError, Status
from aptviz.runs.results import RunReport
from aptviz.runs.runner import ProgressEvent

from conftest import SAMPLES, small_images


def test_one_image(tmp_path):
    events: list[ProgressEvent] = []
    report = aptviz.run(
        [SAMPLES / "chelsea.png"], tmp_path, [RunSpec("budget", 0.3)], Params(), workers=1, on_progress=events.append
    )
    assert isinstance(report, RunReport) and report.return_code == 0
    (result,) = report.results
    assert result.status is Status.done and result.name == "chelsea"
    sel = result.stats.selections[0]
    assert (sel.tokens, sel.budget_info.k, sel.files["overlay"]) == (
        209,
        51,
        "02_patches_grid/patches_visualization.jpg",
    )
    # the report holds exactly what was written, and what analyze() computes
    on_disk = json.loads((tmp_path / "chelsea" / "stats.json").read_text())
    assert on_disk == result.stats.to_dict()
    numbers = aptviz.analyze(SAMPLES / "chelsea.png", methods=["budget"], alphas=[0.3])
    for key in ("aptviz_version", "image", "params", "grid", "entropy"):
        assert on_disk[key] == numbers[key], key
    assert [s | {"files": {}} for s in on_disk["selections"]] == numbers["selections"]
    assert [(e.done, e.total, e.result is None) for e in events] == [(0, 1, True), (1, 1, False)]
    assert report.plot is None and not (tmp_path / "retention_vs_alpha.png").exists()


@pytest.mark.slow
def test_batch_with_a_failure(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, src / name)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "out"
    report = aptviz.run([src, tmp_path / "missing.jpg"], out, ["v1", "budget:0.3"], Params(), workers=2)
    assert report.return_code == 1 and report.jobs == 3
    assert sorted(r.path.name for r in report.images) == ["chelsea.png", "coffee.png"]
    failed = {r.path.name: r.error for r in report.failures}
    assert set(failed) == {"broken.png", "missing.jpg"} and failed["missing.jpg"] == "file not found"
    assert all(r.failure.error and r.stats is None for r in report.failures)
    rows = json.loads((out / "summary.json").read_text())
    assert [(Path(r["image"]).name, r["status"]) for r in rows] == [
        ("broken.png", "failed"),
        ("chelsea.png", "ok"),
        ("chelsea.png", "ok"),
        ("coffee.png", "ok"),
        ("coffee.png", "ok"),
        ("missing.jpg", "failed"),
    ]
    assert report.plot == out / "retention_vs_alpha.png" and report.plot.stat().st_size > 10_000


@pytest.mark.slow
def test_resume_skips_complete_images_and_redoes_changed_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    one = small_images(tmp_path / "one", 1, size=(224, 336)) / "img00.png"  # resume, not the photo, is the point
    for i in range(3):
        shutil.copy(one, src / f"img{i}.png")
    out = tmp_path / "out"
    first = aptviz.run([src], out, ["v2:0.8,1.2"], workers=1)
    assert first.count(Status.done) == 3 and first.return_code == 0
    (out / "img1" / "stats.json").unlink()
    keep = (out / "img0" / "stats.json").stat().st_mtime_ns
    again = aptviz.run([src], out, ["v2:0.8,1.2"], workers=1)
    status = {r.path.name: r.status for r in again.results}
    assert status == {"img0.png": Status.skipped, "img1.png": Status.done, "img2.png": Status.skipped}
    assert (out / "img0" / "stats.json").stat().st_mtime_ns == keep
    # a skipped image reports the same typed stats as a computed one
    by_name = {r.path.name: r.stats for r in again.results}
    assert by_name["img0.png"].selections == by_name["img1.png"].selections
    assert [s.alpha for s in by_name["img0.png"].selections] == [0.8, 1.2]
    # other selections: everything is redone
    redo = aptviz.run([src], out, ["v2:0.8"], workers=1)
    assert redo.count(Status.done) == 3


def test_auto_device_works_from_the_api(tmp_path):
    stats = aptviz.analyze(SAMPLES / "chelsea.png", methods=["BUDGET"], alphas=[0.3], device="auto")
    assert stats["params"]["device"] in ("cpu", "cuda") and stats["selections"][0]["tokens"] == 209
    from aptviz.pipeline import compute

    result = compute(SAMPLES / "chelsea.png", [RunSpec("v1")], Params(device="auto"))
    assert result.params.device in ("cpu", "cuda")


def test_bad_parameters_fail_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match="budget alpha must be in"):
        aptviz.run([SAMPLES / "chelsea.png"], tmp_path / "o", ["budget:1.5"])
    with pytest.raises(ParameterError, match="did you mean 'budget'"):
        aptviz.run([SAMPLES / "chelsea.png"], tmp_path / "o", ["budgte"])
    assert not (tmp_path / "o").exists()


def test_selections_may_mix_runspecs_and_text(tmp_path):
    report = aptviz.run([SAMPLES / "chelsea.png"], tmp_path, [RunSpec("v1"), "budget:0.3,0.5", "v1"], workers=1)
    assert [(s.method, s.alpha) for s in report.images[0].stats.selections] == [
        ("v1", None),
        ("budget", 0.3),
        ("budget", 0.5),
    ]


def test_workers_given_beside_options_is_used(tmp_path, monkeypatch):
    """``run(..., workers=1, options=RunOptions(...))`` used to drop ``workers`` silently (issue 24)."""
    import aptviz.runs.runner as runner
    from aptviz.runs.runner import RunOptions

    used = []

    def fake_batch(jobs, output, runs, params, workers, *args, **kwargs):
        used.append(workers)
        return iter(())

    monkeypatch.setattr(runner, "run_batch", fake_batch)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        shutil.copy(SAMPLES / f"{name}.png", src / f"{name}.png")
    aptviz.run([src], tmp_path / "out", ["budget:0.3"], workers=1, options=RunOptions(dataset_view=False))
    aptviz.run([src], tmp_path / "out2", ["budget:0.3"], options=RunOptions(workers=1), dataset_view=False)
    assert used == [1, 1]
