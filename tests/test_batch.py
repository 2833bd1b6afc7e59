import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from aptviz.runs.batch import discover

from conftest import DEADLINE, SAMPLES, command, copies, invoke, small_images, start, summary_rows, wait_for


def build_tree(root: Path) -> Path:
    """nested folders, duplicate stems, a broken file and a non-image file."""
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    shutil.copy(SAMPLES / "chelsea.png", root / "a" / "rocket.png")
    shutil.copy(SAMPLES / "coffee.png", root / "b" / "rocket.png")
    shutil.copy(SAMPLES / "astronaut.png", root / "b" / "deep" / "Astro.PNG")
    (root / "b" / "broken.jpg").write_bytes((SAMPLES / "chelsea.png").read_bytes()[:2000])
    (root / "notes.txt").write_text("not an image")
    return root


def test_discover_mirrors_paths_and_resolves_collisions(tmp_path):
    src = build_tree(tmp_path / "in")
    shutil.copy(SAMPLES / "chelsea.png", src / "x.png")
    (src / "x.jpg").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    jobs, failures = discover([src], recursive=True)
    names = {j.path.relative_to(src).as_posix(): j.name for j in jobs}
    assert names == {
        "a/rocket.png": "a/rocket",
        "b/rocket.png": "b/rocket",
        "b/deep/Astro.PNG": "b/deep/Astro",
        "b/broken.jpg": "b/broken",
        "x.jpg": "x",
        "x.png": "x_png",
    }
    assert failures == []
    flat, _ = discover([src])
    assert sorted(j.name for j in flat) == ["x", "x_png"]
    # two inputs with one stem, given directly
    jobs, _ = discover([src / "a" / "rocket.png", src / "b" / "rocket.png"])
    assert [j.name for j in jobs] == ["rocket", "rocket_2"]


def test_discover_reports_missing_and_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    jobs, failures = discover([tmp_path / "empty", tmp_path / "missing.png"])
    assert jobs == []
    assert [(f.path.name, f.error) for f in failures] == [
        ("empty", "no images found in folder"),
        ("missing.png", "file not found"),
    ]


@pytest.mark.slow
def test_sweep_acceptance(tmp_path):
    src = build_tree(tmp_path / "in")
    out = tmp_path / "out"
    args = [src, "-r", "-m", "v1", "-m", "budget", "-a", "0.2", "-a", "0.4", "--workers", "2", "-o", out]
    r = invoke(*args)
    assert r.exit_code == 1, r.output
    rows = summary_rows(out)
    ok = [row for row in rows if row["status"] == "ok"]
    per_image = {}
    for row in ok:
        per_image.setdefault(row["image"], []).append((row["method"], row["alpha"]))
    assert len(per_image) == 3
    for combos in per_image.values():
        assert combos == [("v1", None), ("budget", 0.2), ("budget", 0.4)]
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["image"].endswith("broken.jpg") and "truncated" in failed[0]["error"]
    assert "broken.jpg" in r.stderr
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 * 3 + 1 and csv_lines[0].startswith("image,status,method,alpha")
    for name in ("a/rocket", "b/rocket", "b/deep/Astro"):
        stats = json.loads((out / name / "stats.json").read_text())
        assert [s["files"]["overlay"] for s in stats["selections"]] == [
            "02_patches_grid/patches_v1.jpg",
            "02_patches_grid/patches_budget_alpha0.2.jpg",
            "02_patches_grid/patches_budget_alpha0.4.jpg",
        ]
    assert (out / "retention_vs_alpha.png").stat().st_size > 10_000
    assert "Summary per method and alpha" in r.stdout

    # run again: every image is skipped, nothing rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("stats.json")}
    r2 = invoke(*args)
    assert r2.exit_code == 1
    assert r2.stdout.count("skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("stats.json")} == mtimes
    assert len([row for row in summary_rows(out) if row["status"] == "ok"]) == 9

    # different parameters: redone
    r3 = invoke(src, "-r", "-m", "budget", "-a", "0.3", "--workers", "2", "-o", out)
    assert r3.exit_code == 1 and "skipped" not in r3.stdout
    stats = json.loads((out / "a/rocket/stats.json").read_text())
    assert [(s["method"], s["alpha"]) for s in stats["selections"]] == [("budget", 0.3)]
    assert sorted(p.name for p in (out / "a/rocket/02_patches_grid").iterdir()) == ["patches_visualization.jpg"]

    # --overwrite redoes complete images
    before = (out / "a/rocket/stats.json").stat().st_mtime_ns
    time.sleep(0.01)
    r4 = invoke(src / "a", "-m", "budget", "-a", "0.3", "-o", out / "a", "--overwrite", "-q")
    assert r4.exit_code == 0
    assert (out / "a/rocket/stats.json").stat().st_mtime_ns > before


def test_resume_after_a_partial_run(tmp_path):
    src = copies(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert invoke(src, "-o", out, "-q", "--workers", "1").exit_code == 0
    # as if killed mid-image: img1 lost its stats.json and one overlay, a temp file is left over
    (out / "img1" / "stats.json").unlink()
    (out / "img2" / "02_patches_grid" / "patches_visualization.jpg").unlink()
    (out / "img1" / ".stats.json.abc.tmp").write_text("{")
    keep = (out / "img0" / "stats.json").stat().st_mtime_ns
    r = invoke(src, "-o", out, "--workers", "1")
    assert r.exit_code == 0
    assert r.stdout.count("skipped") == 1
    assert (out / "img0" / "stats.json").stat().st_mtime_ns == keep
    for i in range(3):
        assert json.loads((out / f"img{i}" / "stats.json").read_text())["selections"][0]["tokens"] == 704
        assert (out / f"img{i}" / "02_patches_grid" / "patches_visualization.jpg").is_file()
    assert not list(out.rglob("*.tmp"))


@pytest.mark.timing
@pytest.mark.slow
def test_ctrl_c_stops_quickly_and_leaves_nothing_torn(tmp_path):
    count = 12  # enough that Ctrl-C after the first two lands with many left
    src = copies(tmp_path / "in", count, "astronaut.png")
    out = tmp_path / "out"
    proc = start(src, "-o", out, *"-m v1 -m budget -a 0.3 --workers 2 -q".split())
    assert wait_for(lambda: len(list(out.glob("*/stats.json"))) >= 2), proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    _, err = proc.communicate(timeout=DEADLINE)  # quickly: the images in flight only (checked below)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = list(out.glob("*/stats.json"))
    assert 2 <= len(done) < count
    for p in done:
        json.loads(p.read_text())
    json.loads((out / "summary.json").read_text())
    # resume: every image ends complete
    r = invoke(src, "-o", out, "-m", "v1", "-m", "budget", "-a", "0.3", "--workers", "2", "-q")
    assert r.exit_code == 0
    assert len(list(out.glob("*/stats.json"))) == count
    rows = summary_rows(out)
    assert len(rows) == 2 * count and all(row["status"] == "ok" for row in rows)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.timing
def test_ctrl_c_message_counts_what_the_summary_describes_as_done(tmp_path):
    import re

    src = copies(tmp_path / "in", 20)
    out = tmp_path / "out"
    proc = start(src, "-o", out, *"-m v1 -m v2:1 -m budget:0.3 --workers 2".split())
    seen = wait_for(lambda: len(list(out.glob("*/stats.json"))))
    assert seen, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    said = re.search(r"aptviz: interrupted: (\d+) of 20 image\(s\) complete in the output; run the same command", err)
    assert said, err
    done = {row["image"] for row in summary_rows(out) if row["status"] == "ok"}
    assert int(said.group(1)) == len(done) >= seen  # folders workers finished after Ctrl-C included


def test_failed_image_never_removes_other_outputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src / "good.png")
    out = tmp_path / "out"
    assert invoke(src, "-o", out, "-q").exit_code == 0
    files = sorted(p.relative_to(out) for p in (out / "good").rglob("*"))
    (src / "bad.png").write_bytes(b"")
    r = invoke(src, "-o", out, "-q")
    assert r.exit_code == 1
    assert sorted(p.relative_to(out) for p in (out / "good").rglob("*")) == files
    rows = summary_rows(out)
    assert [(Path(row["image"]).name, row["status"]) for row in rows] == [("bad.png", "failed"), ("good.png", "ok")]


def _killer_work(path, *args):
    """Stand-in for aptviz.runs.batch._work (module level, so it pickles)."""
    if path.name == "killer.png":
        os._exit(9)
    return _REAL_WORK(path, *args)


from aptviz.runs.batch import _work as _REAL_WORK  # noqa: E402


@pytest.mark.timing
def test_a_dying_worker_fails_only_its_image(tmp_path, monkeypatch):
    """An image whose worker process dies (as when killed for memory) is recorded; the rest completes."""
    import aptviz.runs.batch as batch
    from aptviz.compute.params import Params, expand_runs

    src = copies(tmp_path / "in", 4, stem="ok")
    shutil.copy(SAMPLES / "chelsea.png", src / "killer.png")
    monkeypatch.setattr(batch, "_work", _killer_work)
    jobs, _ = discover([src])
    results = list(batch.run_batch(jobs, tmp_path / "out", expand_runs(["v1"]), Params(device="cpu"), workers=2))
    status = {r.path.name: r.status for r in results}
    assert status["killer.png"] == "failed"
    assert sorted(n for n, s in status.items() if s == "done") == [f"ok{i}.png" for i in range(4)]
    assert "died" in next(r.error for r in results if r.path.name == "killer.png")


@pytest.mark.slow
def test_output_inside_input_is_not_rescanned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small_images(tmp_path / "photos", 2)  # made images: the scan, not the photo, is the point
    args = [".", "-r", "-m", "v1", "-m", "budget", "-a", "0.3", "-o", "visualizations", "-q", "--workers", "1"]
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--overwrite").exit_code == 0  # a second pass sees only the two photos
    rows = summary_rows(tmp_path / "visualizations")
    assert sorted({Path(r["image"]).name for r in rows}) == ["img00.png", "img01.png"]
    assert not (tmp_path / "visualizations" / "visualizations").exists()


@pytest.mark.parametrize("missing", ["explorer.js", "01_heatmaps/importance_map_laplacian_scale_28.png"])
def test_resume_redoes_an_image_missing_any_file_it_lists(tmp_path, missing):
    """Resume checks the one list of an image's files (layout.listed_files): every measure's heatmaps, explorer.js."""
    from aptviz.compute.stats import ImageStats
    from aptviz.output.layout import listed_files

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src / "cat.png")
    args = [src, "-m", "budget", "-a", "0.3", "--importance", "entropy,laplacian", "-o", tmp_path / "out"]
    assert invoke(*args).exit_code == 0
    folder = tmp_path / "out" / "cat"
    stats = ImageStats.from_dict(json.loads((folder / "stats.json").read_text()))
    assert missing in listed_files(stats)
    assert all((folder / rel).is_file() for rel in listed_files(stats))
    (folder / missing).unlink()
    r = invoke(*args)
    assert r.exit_code == 0 and (folder / missing).is_file(), r.output


def test_a_symlink_loop_is_one_failed_input_and_the_batch_goes_on(tmp_path):
    """Two links naming each other (`a.png -> b.png -> a.png`, or `x.mp4`) aborted the whole run with a
    RuntimeError traceback ("Symlink loop from ..."), in a folder or given directly."""
    src = copies(tmp_path / "in", 1)
    os.symlink("b.png", src / "a.png")
    os.symlink("a.png", src / "b.png")
    os.symlink("y.mp4", src / "x.mp4")
    os.symlink("x.mp4", src / "y.mp4")
    jobs, failures = discover([src, src / "x.mp4"])
    assert [j.path.name for j in jobs] == ["img0.png"]
    assert sorted(f.path.name for f in failures) == ["a.png", "b.png", "x.mp4", "x.mp4", "y.mp4"]
    assert all("symbolic link loop" in f.failure.error for f in failures)
    done = command(src, src / "x.mp4", "-o", tmp_path / "out", "-m", "budget:0.3", "-j", "1")  # a traceback raises
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{src / 'a.png'}: symbolic link loop" in done.stderr
    assert (tmp_path / "out" / "img0" / "stats.json").exists()


def test_inputs_named_like_the_runs_own_files_get_other_folders(tmp_path):
    """`report.html.mkv`, `summary.json.png`, `dataset.json.png` got the folders report.html, summary.json,
    dataset.json: the report and dataset.json were never written ("Is a directory") and summary.json.png failed
    ("File exists"). They get a suffix as any other collision does."""
    src = copies(tmp_path / "in", 3)
    renames = (("img0.png", "report.html.png"), ("img1.png", "summary.json.png"), ("img2.png", "Dataset.JSON.png"))
    for old, new in renames:
        (src / old).rename(src / new)
    jobs, _ = discover([src])
    assert sorted(j.name for j in jobs) == ["Dataset.JSON_png", "report.html_png", "summary.json_png"]
    out = tmp_path / "out"
    done = command(src, "-o", out, "-m", "budget:0.3", "-j", "1")  # in this process: the files are the point
    assert done.returncode == 0, done.stderr
    for name in ("report.html", "summary.json", "dataset.json"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "summary.json").read_text())) == 3  # one row per image (one selection)
