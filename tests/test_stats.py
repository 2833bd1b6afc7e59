"""aptviz stats: numbers-only rows for datasets, Parquet output, local and Ray engines, summary."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from aptviz.cli.command import app
from aptviz.compute.loading import open_image, open_image_bytes
from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats
from aptviz.datasets.parquet import MissingExtraError, part_files, require_pyarrow
from aptviz.datasets.sources import run_task as _REAL_RUN_TASK
from aptviz.datasets.summary import summarize

from conftest import SAMPLES, textured

RUNS = expand_runs(["v1", "v2", "budget"], [0.3, 1.0])
IDENTITY = ["path", "source", "shard", "member", "input_size", "input_mtime_ns", "input_key", "row_id"]


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray with 2 CPUs for the whole session (starting Ray takes seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _jpeg_bytes(seed: int, h: int = 90, w: int = 140, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(textured(h, w, seed)).save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def _png_rgba_bytes(seed: int) -> bytes:
    rgba = np.dstack([textured(70, 100, seed), np.linspace(0, 255, 7000).reshape(70, 100).astype(np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


CORRUPT = b"\xff\xd8\xff\xe0 this is not really a jpeg"


@pytest.fixture
def folder(tmp_path):
    """Sample photos, a rotated JPEG, an RGBA PNG and a corrupt file."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for p in sorted(SAMPLES.glob("*.png"))[:2]:
        shutil.copy(p, d / p.name)
    (d / "sub" / "rotated.jpg").write_bytes(_jpeg_bytes(1, orientation=6))
    (d / "sub" / "alpha.png").write_bytes(_png_rgba_bytes(2))
    (d / "broken.jpg").write_bytes(CORRUPT)
    (d / "notes.txt").write_text("not an image")
    return d


def _table(out) -> pa.Table:
    return pds.dataset([str(f) for f in part_files(out)], format="parquet").to_table()


def _sorted(t: pa.Table, keys=("path", "selection")) -> pa.Table:
    return t.sort_by([(k, "ascending") for k in keys])


def _numbers(t: pa.Table) -> pa.Table:
    """Everything but where the image came from."""
    return t.drop_columns(IDENTITY)


def test_bytes_load_like_files(tmp_path):
    """Loading from bytes applies the rules of loading from a path: EXIF, alpha, refusals."""
    for name, data in [("r.jpg", _jpeg_bytes(3, orientation=8)), ("a.png", _png_rgba_bytes(4))]:
        (tmp_path / name).write_bytes(data)
        a, b = open_image(tmp_path / name), open_image_bytes(data)
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert (a.frames, a.source_mode, a.orientation) == (b.frames, b.source_mode, b.orientation)
    (tmp_path / "bad.jpg").write_bytes(CORRUPT)
    errors = []
    for load in (
        lambda: open_image(tmp_path / "bad.jpg"),
        lambda: open_image_bytes(CORRUPT),
        lambda: open_image_bytes(b""),
    ):
        with pytest.raises(Exception) as info:
            load()
        errors.append(str(info.value))
    assert errors[0] == errors[1] and errors[2] == "empty file (0 bytes)"


@pytest.mark.slow
def test_local_rows_match_the_main_command_stats_json(folder, tmp_path):
    out = tmp_path / "stats"
    report = run_stats([folder], out, RUNS, Params(), recursive=True, workers=2)
    assert (report.images, report.failed, report.return_code) == (5, 1, 1)
    t = _table(out)
    assert t.num_rows == 5 * len(RUNS) and t.schema.names[0] == "path"
    failed = t.filter(pc.equal(t["status"], "failed")).to_pylist()
    assert {r["path"] for r in failed} == {str(folder / "broken.jpg")}
    assert all(r["error"].startswith("cannot decode image") and r["vit_tokens"] is None for r in failed)

    viz = tmp_path / "viz"
    args = [str(folder), "-r", "-o", str(viz), "-m", "v1", "-m", "v2", "-m", "budget", "-a", "0.3", "-a", "1.0", "-q"]
    assert CliRunner().invoke(app, args).exit_code == 1
    rows = {(r["path"], r["selection"]): r for r in t.to_pylist()}
    compared = 0
    for stats_file in viz.rglob("stats.json"):
        stats = json.loads(stats_file.read_text())
        path, entropy = stats["image"]["path"], list(stats["entropy"].values())
        for spec, sel in zip(RUNS, stats["selections"]):
            row = rows[(path, spec.label)]
            assert row["status"] == "ok"
            assert [row["original_width"], row["original_height"]] == stats["image"]["original_size"]
            assert [row["resized_width"], row["resized_height"]] == stats["image"]["resized_size"]
            assert (row["method"], row["alpha"], row["thresholds"]) == (sel["method"], sel["alpha"], sel["thresholds"])
            assert row["tokens_by_scale"] == list(sel["tokens_by_scale"].values())
            assert row["scales"] == [int(s) for s in sel["tokens_by_scale"]]
            assert (row["vit_tokens"], row["base_small_tokens"]) == (sel["tokens"], sel["base_small_tokens"])
            assert (row["retention"], row["target_retention"]) == (sel["retention"], sel["target_retention"])
            budget = sel["budget_info"] or {}
            assert (row["budget"], row["budget_base_tokens"], row["budget_k"]) == (
                budget.get("budget"),
                budget.get("base_tokens"),
                budget.get("k"),
            )
            assert (row["importance"], row["aggregate"]) == ("entropy", None)
            assert row["importance_mean"] == [e["mean"] for e in entropy]
            assert row["importance_max"] == [e["max"] for e in entropy]
            for k in ("vit_tokens", "llm_tokens", "llm_tokens_uniform", "llm_retention"):
                assert row[k] == sel[k]
            t14 = sel["tokens_by_scale"]["14"]
            assert row["llm_tokens"] * 4 == t14 + 4 * (sel["tokens"] - t14)
            assert row["importance_p5"][0] <= row["importance_p50"][0] <= row["importance_p95"][0]
            compared += 1
    assert compared == 4 * len(RUNS)


def test_other_importance_measure_matches_analyze(tmp_path):
    from aptviz import analyze

    image = SAMPLES / "chelsea.png"
    runs = expand_runs(["v2", "budget"], [0.5])
    run_stats([image], tmp_path / "o", runs, Params(importance="laplacian", aggregate="max"), workers=1)
    rows = {r["selection"]: r for r in _table(tmp_path / "o").to_pylist()}
    stats = analyze(image, methods=["v2", "budget"], alphas=[0.5], importance="laplacian", aggregate="max")
    for spec, sel in zip(runs, stats["selections"]):
        row = rows[spec.label]
        assert (row["importance"], row["aggregate"]) == ("laplacian", "max")
        assert (row["vit_tokens"], row["llm_tokens"], row["thresholds"]) == (
            sel["tokens"],
            sel["llm_tokens"],
            sel["thresholds"],
        )
        assert row["importance_mean"] == [e["mean"] for e in stats["importance"].values()]


def _parquet_and_tar(tmp_path) -> tuple:
    """A Parquet file (binary and HF struct columns) and a WebDataset tar, with bad entries."""
    images = [_jpeg_bytes(10), _png_rgba_bytes(11), _jpeg_bytes(12, orientation=3)]
    src = tmp_path / "src"
    src.mkdir()
    for i, data in enumerate(images):
        (src / f"{i}.img").write_bytes(data)
    binary = [*images, CORRUPT, None]
    struct = [{"bytes": b, "path": f"{i}.jpg"} for i, b in enumerate(binary[:4])] + [{"bytes": None, "path": "x.jpg"}]
    table = pa.table(
        {
            "image": pa.array(binary, pa.binary()),
            "img": pa.array(struct, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": list(range(5)),
        }
    )
    pq.write_table(table, tmp_path / "shard.parquet", row_group_size=2)
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for name, data in [
            ("000.jpg", images[0]),
            ("000.cls", b"3"),
            ("001.png", images[1]),
            ("002.jpeg", images[2]),
            ("003.jpg", CORRUPT),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return src, images


def test_parquet_binary_and_struct_columns_and_webdataset_tar(tmp_path):
    src, images = _parquet_and_tar(tmp_path)
    ref = _table(_run(tmp_path / "ref", [src / f"{i}.img" for i in range(3)]))
    want = _numbers(_sorted(ref)).drop_columns(["error"])

    binary = _sorted(_table(_run(tmp_path / "b", [tmp_path / "shard.parquet"])), ("input_key", "selection"))
    struct = _sorted(
        _table(_run(tmp_path / "s", [tmp_path / "shard.parquet"], image_column="img")), ("input_key", "selection")
    )
    tar = _sorted(_table(_run(tmp_path / "t", [tmp_path / "shard.tar"])), ("input_key", "selection"))
    for t, n in [(binary, 5), (struct, 5), (tar, 4)]:
        ok = t.filter(pc.equal(t["status"], "ok"))
        assert ok.num_rows == 3 * len(RUNS) and t.num_rows == n * len(RUNS)
        assert _numbers(_sorted(ok, ("member", "selection"))).drop_columns(["error"]).equals(want)
    errors = {r["member"]: r["error"] for r in binary.filter(pc.equal(binary["status"], "failed")).to_pylist()}
    assert errors["3"].startswith("cannot decode image") and errors["4"] == "no image in this row (null)"
    assert "only a path: x.jpg" in struct.filter(pc.equal(struct["member"], "4"))["error"][0].as_py()
    assert set(tar["member"].to_pylist()) == {"000.jpg", "001.png", "002.jpeg", "003.jpg"}
    assert tar["path"][0].as_py() == f"{tmp_path / 'shard.tar'}::000.jpg"


def _run(out, inputs, **kw):
    run_stats(inputs, out, RUNS, Params(), workers=1, **kw)
    return out


def test_failed_rows_name_their_importance_measure(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "chelsea.png", src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    from aptviz.cli.command import main

    args = ["stats", str(src), "-o", str(tmp_path / "o"), "--importance", "entropy,laplacian", "-m", "budget:0.3", "-q"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1  # the bad file
    rows = _table(tmp_path / "o").to_pylist()
    ok = sorted((r["importance"], r["aggregate"], r["selection"]) for r in rows if r["status"] == "ok")
    failed = sorted((r["importance"], r["aggregate"], r["selection"]) for r in rows if r["status"] == "failed")
    assert len(ok) == 2 and ok[0][0] != ok[1][0]
    assert failed == ok  # each failed row says which measure's selection it stands for, as the ok rows do


def test_missing_column_or_bad_shard_is_a_failed_row(tmp_path):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "nocol.parquet")
    (tmp_path / "junk.tar").write_bytes(b"\x00" * 10 + b"junk" * 300)
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nope")
    report = run_stats(sorted(tmp_path.glob("*.*")), tmp_path / "o", RUNS[:1], Params(), workers=1)
    t = _table(tmp_path / "o").to_pylist()
    assert report.failed == 3 and {r["status"] for r in t} == {"failed"}
    errors = {os.path.basename(r["path"]): r["error"] for r in t}
    assert errors["nocol.parquet"] == "no column 'image' (columns: x)"
    assert errors["junk.tar"].startswith("cannot read tar file")
    assert errors["junk.parquet"].startswith("cannot read Parquet file")


@pytest.mark.slow
def test_ray_engine_gives_the_local_rows(folder, tmp_path, ray_local):
    """One Ray run over every input kind: the same rows as the local engine, order aside."""
    _parquet_and_tar(tmp_path)
    inputs = [folder, tmp_path / "shard.parquet", tmp_path / "shard.tar"]
    local = run_stats(inputs, tmp_path / "local", RUNS, Params(), recursive=True, workers=2)
    ray = run_stats(inputs, tmp_path / "ray", RUNS, Params(), recursive=True, workers=2, engine="ray")
    assert (ray.images, ray.failed) == (local.images, local.failed) == (14, 4)
    a = _sorted(_table(tmp_path / "local"), ("row_id",))
    b = _sorted(_table(tmp_path / "ray"), ("row_id",))
    assert a.num_rows == 14 * len(RUNS) and a.equals(b)


def test_resume_skips_complete_images_and_redoes_changed_ones(folder, tmp_path):
    out = tmp_path / "o"
    first = run_stats([folder], out, RUNS[:2], Params(), recursive=True, workers=2)
    assert (first.images, first.skipped) == (5, 0)
    again = run_stats([folder], out, RUNS[:2], Params(), recursive=True, workers=2)
    assert (again.images, again.skipped, again.parts) == (0, 5, [])
    # a changed file is a different input; an added selection redoes only what is missing
    changed = folder / "sub" / "rotated.jpg"
    changed.write_bytes(_jpeg_bytes(7))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**10))
    more = run_stats([folder], out, RUNS[:3], Params(), recursive=True, workers=2)
    assert (more.images, more.skipped) == (5, 0)
    t = _table(out)
    assert t.num_rows == 5 * 2 + 1 * 2 + 5 * 1
    assert len(set(t["row_id"].to_pylist())) == t.num_rows
    # the summary counts the changed file once, with its new numbers
    v1 = next(s for s in summarize(out) if s.selection == "v1")
    assert (v1.images, v1.failed) == (4, 1)
    rows = [r for r in t.to_pylist() if r["selection"] == "v1" and r["status"] == "ok"]
    assert len(rows) == 5  # rotated.jpg twice: before and after the change
    newest = max(r["input_mtime_ns"] for r in rows if "rotated" in r["path"])
    keep = [r["retention"] for r in rows if "rotated" not in r["path"] or r["input_mtime_ns"] == newest]
    assert v1.retention_mean == pytest.approx(np.mean(keep), rel=1e-12)
    other = run_stats([folder], out, RUNS[:1], Params(bins=256), recursive=True, workers=1)
    assert (other.images, other.skipped) == (5, 0)


PSNR = ["psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt", "ssim_uniform",  # what --fidelity adds:
        "llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm"]  # also the baseline at equal LLM tokens


@pytest.mark.slow
def test_fidelity_columns_match_stats_json_and_join_the_resume_key(folder, tmp_path):
    """--fidelity adds stats.json's PSNR and SSIM fields row by row; without it they are absent; resume redoes
    images for it; stats-summary reports their means per selection."""
    from aptviz.cli import stats as cli_stats

    out, runs = tmp_path / "o", expand_runs(["v2", "budget"], [0.3])
    plain = run_stats([folder], out, runs, Params(), recursive=True, workers=2)
    assert not set(PSNR) & set(_table(out).schema.names)
    sel = ["-m", "v2", "-m", "budget", "-a", "0.3"]
    args = [str(folder), "-r", "-o", str(out), *sel, "-j", "2", "-q", "--fidelity"]
    assert CliRunner().invoke(cli_stats.app, args, catch_exceptions=False).exit_code == 1
    new_parts = sorted(set(part_files(out)) - set(plain.parts))
    t = pds.dataset([str(f) for f in new_parts], format="parquet").to_table()
    assert t.num_rows == 5 * len(runs)  # every image redone, none skipped
    assert t.schema.names[t.schema.names.index("llm_retention") + 1 :][: len(PSNR)] == PSNR
    old = pds.dataset([str(f) for f in plain.parts], format="parquet").to_table()
    assert not set(t["row_id"].to_pylist()) & set(old["row_id"].to_pylist())
    same = _numbers(_sorted(t)).drop_columns(PSNR + ["run_key"])
    assert same.equals(_numbers(_sorted(old)).drop_columns(["run_key"]))  # the other columns are unchanged
    viz = tmp_path / "viz"
    assert CliRunner().invoke(app, [str(folder), "-r", "-o", str(viz), *sel, "-q"]).exit_code == 1
    rows = {(r["path"], r["selection"]): r for r in t.to_pylist()}
    compared = 0
    for stats_file in viz.rglob("stats.json"):
        stats = json.loads(stats_file.read_text())
        for spec, sel in zip(runs, stats["selections"]):
            row = rows[(stats["image"]["path"], spec.label)]
            assert [row[k] for k in PSNR] == [sel[k] for k in PSNR]
            compared += row["psnr_uniform"] is not None
    assert compared >= 2 * len(runs)  # the photos; a tiny image can be reproduced exactly (PSNR None)
    assert all(r[k] is None for r in rows.values() if r["status"] == "failed" for k in PSNR)
    again = run_stats([folder], out, runs, Params(), recursive=True, workers=1, psnr=True)  # the former name
    assert (again.images, again.skipped) == (0, 5)
    summaries = summarize(out)
    assert [s.images for s in summaries] == [4] * 4  # parts with and without the columns, kept apart
    with_fidelity = [s for s in summaries if s.ssim_apt_mean is not None]
    assert len(with_fidelity) == 2 and all(s.psnr_apt_mean is None for s in summaries if s not in with_fidelity)
    for s in with_fidelity:
        mine = [r for r in rows.values() if r["selection"] == s.selection and r["status"] == "ok"]
        for k in PSNR:
            values = [r[k] for r in mine if r[k] is not None]
            assert getattr(s, f"{k}_mean") == pytest.approx(np.mean(values), rel=1e-12), k
    r = CliRunner().invoke(cli_stats.summary_app, [str(out)], catch_exceptions=False)
    assert r.exit_code == 0 and "SSIM APT mean" in r.output and "PSNR uniform, equal ViT (dB)" in r.output
    assert "SSIM uniform, equal LLM" in r.output and "uniform LLM tokens mean" in r.output


def test_psnr_is_an_alias_of_fidelity_on_the_real_command(tmp_path):
    """`aptviz stats --psnr` and `--fidelity` write the same eight columns and the same resume key."""
    from conftest import command  # `aptviz stats ...` as the command line dispatches it, in this process

    outs = {}
    for flag in ("--fidelity", "--psnr"):
        out = tmp_path / flag.strip("-")
        done = command("stats", SAMPLES / "chelsea.png", "-o", out, "-m", "budget", "-a", "0.3", "-q", flag)
        assert done.returncode == 0, done.stderr
        outs[flag] = _table(out)
    a, b = outs["--fidelity"], outs["--psnr"]
    assert a.equals(b)
    [row] = a.to_pylist()
    assert all(row[k] is not None for k in PSNR) and 0 < row["ssim_apt"] < 1 and 0 < row["ssim_uniform"] < 1


@pytest.mark.slow
def test_ray_engine_gives_the_local_psnr_rows(tmp_path, ray_local):
    inputs = [SAMPLES / "chelsea.png", SAMPLES / "coffee.png"]
    runs = expand_runs(["budget"], [0.3])
    run_stats(inputs, tmp_path / "local", runs, Params(), workers=1, psnr=True)
    run_stats(inputs, tmp_path / "ray", runs, Params(), workers=2, engine="ray", psnr=True)
    a = _sorted(_table(tmp_path / "local"), ("row_id",))
    b = _sorted(_table(tmp_path / "ray"), ("row_id",))
    assert a.num_rows == 2 and a.equals(b) and None not in a["psnr_apt"].to_pylist()


def test_ctrl_c_leaves_complete_parts_and_the_rerun_finishes(folder, tmp_path):
    out = tmp_path / "o"

    def stop(progress):
        if progress.done >= 1:
            raise KeyboardInterrupt

    report = run_stats([folder], out, RUNS, Params(), recursive=True, workers=1, task_size=1, on_progress=stop)
    assert report.interrupted and report.return_code == 130 and report.images == 1
    from aptviz.output.lock import OutputLock

    left = [p.name for p in out.iterdir() if p.name != OutputLock.NAME]
    assert left == [p.name for p in part_files(out)]  # no temp file left
    assert _table(out).num_rows == len(RUNS)
    rest = run_stats([folder], out, RUNS, Params(), recursive=True, workers=2)
    assert (rest.images, rest.skipped) == (4, 1)
    assert _table(out).num_rows == 5 * len(RUNS)


def _dies_on_killer(task, *args):
    if any("killer" in u.ref.path for u in task.units):
        os._exit(1)
    return _REAL_RUN_TASK(task, *args)


def test_a_dying_worker_fails_only_its_image(folder, tmp_path, monkeypatch):
    import aptviz.datasets.engines as stats_run

    shutil.copy(SAMPLES / "coffee.png", folder / "killer.png")
    monkeypatch.setattr(stats_run, "run_task", _dies_on_killer)
    report = run_stats([folder], tmp_path / "o", RUNS[:1], Params(), recursive=True, workers=2)
    rows = {os.path.basename(r["path"]): r for r in _table(tmp_path / "o").to_pylist()}
    assert (report.images, report.failed, len(rows)) == (6, 2, 6)
    assert rows["killer.png"]["error"] == "worker process died (out of memory?)"
    assert rows["broken.jpg"]["status"] == "failed"
    assert sum(r["status"] == "ok" for r in rows.values()) == 4


def test_summary_matches_numpy(folder, tmp_path):
    out = tmp_path / "o"
    for i in range(3):  # more images: copies with different content
        (folder / f"gen{i}.png").write_bytes(_png_rgba_bytes(20 + i))
    run_stats([folder], out, RUNS, Params(), recursive=True, workers=2, rows_per_part=7, task_size=2)
    assert len(part_files(out)) > 1
    rows = _table(out).to_pylist()
    summaries = {s.selection: s for s in summarize(out)}
    assert list(summaries) == [s.label for s in RUNS]
    for label, s in summaries.items():
        mine = [r for r in rows if r["selection"] == label]
        ok = [r for r in mine if r["status"] == "ok"]
        assert (s.images, s.failed) == (len(ok), 1)
        for col in ("retention", "llm_retention"):
            v = np.array([r[col] for r in ok])
            got = [getattr(s, f"{col}_{k}") for k in ("mean", "median", "p5", "p95")]
            assert got == pytest.approx([v.mean(), np.median(v), np.percentile(v, 5), np.percentile(v, 95)], rel=1e-12)
        assert s.vit_tokens_saved == sum(r["base_small_tokens"] - r["vit_tokens"] for r in ok)
        assert s.llm_tokens_saved == sum(r["llm_tokens_uniform"] - r["llm_tokens"] for r in ok)


def test_missing_pyarrow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'aptviz\[stats\]'"):
        require_pyarrow()


def test_cli_stats_and_summary(folder, tmp_path, capsys):
    from aptviz.cli import stats as cli_stats
    from aptviz.cli.command import main

    out = tmp_path / "o"
    args = ["stats", str(folder), "-r", "-o", str(out), "-m", "v2", "-m", "budget:0.3", "-j", "2", "--summary"]
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    assert info.value.code == 1  # one corrupt file
    assert captured.err.count("aptviz: error:") == 1 and "broken.jpg: cannot decode image" in captured.err
    assert "5 image(s)" in captured.out and "LLM retention median" in captured.out
    t = _table(out)
    assert sorted(set(t["selection"].to_pylist())) == ["budget_alpha0.3", "v2_alpha1"] and t.num_rows == 10
    written = json.loads((out / "summary.json").read_text())
    r = CliRunner().invoke(cli_stats.summary_app, [str(out), "--json"], catch_exceptions=False)
    assert r.exit_code == 0 and json.loads(r.stdout) == written
    budget = next(s for s in written["selections"] if s["method"] == "budget")
    ok = t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.equal(t["method"], "budget")))
    assert budget["retention_mean"] == pytest.approx(np.mean(ok["retention"].to_numpy()), rel=1e-12)
    assert (budget["images"], budget["failed"]) == (4, 1)

    again = CliRunner().invoke(cli_stats.app, args[1:-1], catch_exceptions=False)
    assert again.exit_code == 0 and "0 image(s)" in again.stdout and "5 already in" in again.stdout
    assert _table(out).num_rows == 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bins", "0"], "bins must be an integer >= 1"),
        (["-m", "budget:1.5"], "budget alpha must be in [0, 1]"),
        (["--engine", "spark"], "Invalid value for '--engine'"),
        (["--max-memory", "1M"], "need more memory than --max-memory"),
    ],
)
def test_cli_stats_usage_errors(folder, tmp_path, args, message):
    from aptviz.cli import stats as cli_stats

    r = CliRunner().invoke(cli_stats.app, [str(folder), "-o", str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_cli_stats_summary_of_a_folder_without_parts(tmp_path):
    from aptviz.cli import stats as cli_stats

    r = CliRunner().invoke(cli_stats.summary_app, [str(tmp_path)])
    assert r.exit_code == 1 and "no part-*.parquet files" in r.output


def test_file_names_that_are_not_utf8(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    shutil.copy(SAMPLES / "chelsea.png", d / name)
    report = run_stats([d], tmp_path / "o", RUNS[:1], Params(), workers=1)
    assert (report.images, report.failed) == (1, 0)
    [row] = _table(tmp_path / "o").to_pylist()
    assert row["path"] == str(d / "caf\\xe9.png") and row["status"] == "ok"
    again = run_stats([d], tmp_path / "o", RUNS[:1], Params(), workers=1)
    assert again.skipped == 1


# -- faults of aptviz stats (issue 21: 1, 7, 8, 10, 16) ------------------------------------------------
from conftest import DEADLINE, aptviz, children, command, gone_within, needs_proc, small_images, start  # noqa: E402


def test_a_second_run_on_one_output_refuses_at_once(tmp_path):
    """Fault 1: the main command's lock; two runs would write every row twice."""
    from aptviz.output.lock import OutputLock

    src = small_images(tmp_path / "in", 2)
    out = tmp_path / "rows"
    out.mkdir()
    with OutputLock(out):
        r = aptviz("stats", src, "-o", out, "-m", "budget:0.3")
    assert r.returncode == 2 and "output folder is in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not part_files(out)


@pytest.mark.timing
def test_two_concurrent_runs_never_duplicate_a_row(tmp_path):
    src = small_images(tmp_path / "in", 24, size=(56, 84))
    out = tmp_path / "rows"
    runs = [start("stats", src, "-o", out, "-m", "budget:0.3", "-j", "2", "-q") for _ in range(2)]
    results = [(p.wait(DEADLINE), p.communicate()[1]) for p in runs]
    for code, err in results:
        assert code == 0 or (code == 2 and "output folder is in use" in err), err
    ids = _table(out)["row_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 24


def test_output_equal_to_an_input_folder_is_refused(tmp_path):
    """Fault 16: as the main command does; nothing is written into the input folder."""
    src = small_images(tmp_path / "in", 2)
    r = command("stats", src, "-o", src)  # in this process
    assert r.returncode == 2 and "is also an input folder" in r.stderr, r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["img00.png", "img01.png"]


def test_temp_parts_of_dead_writers_are_cleaned(tmp_path):
    """Fault 10: a killed writer's temporary part goes; a live writer's stays."""
    import subprocess

    out = tmp_path / "rows"
    out.mkdir()
    dead = out / ".part-20250101-000000-abcdef12-00000.parquet.999999999.k1ll3d00.tmp"
    dead.write_bytes(b"half a part")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = out / f".part-20250101-000000-abcdef12-00001.parquet.{live.pid}.l1ve0000.tmp"
        mine.write_bytes(b"being written")
        report = run_stats([SAMPLES / "chelsea.png"], out, RUNS[:1], Params(), workers=1)
        assert report.rows == 1 and not dead.exists() and mine.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.timing
@pytest.mark.parametrize("name", ["shard.tar", "table.parquet", "photo.png"])
def test_a_fifo_input_is_refused_and_never_opened(tmp_path, name):
    """Fault 7: a FIFO named like an input, given directly or in a folder, is one failed row; no hang."""
    src = small_images(tmp_path / "in", 1)
    os.mkfifo(src / name)
    for inputs in ([src / name, src / "img00.png"], [src]):
        out = tmp_path / f"rows{len(inputs)}"
        r = aptviz("stats", *inputs, "-o", out, "-m", "budget:0.3", "-q")  # a hang ends in a timeout
        assert r.returncode == 1, r.stderr
        assert f"{name}: not a regular file (a named pipe)" in r.stderr and "Traceback" not in r.stderr
        rows = {os.path.basename(row["path"]): row for row in _table(out).to_pylist()}
        assert rows[name]["status"] == "failed" and rows["img00.png"]["status"] == "ok"


SIGTERM_AFTER_ONE = """
import os, signal, sys
from aptviz.compute.params import Params, expand_runs
from aptviz.datasets.engines import run_stats

def stop(progress):
    if progress.done >= 2:
        os.kill(os.getpid(), signal.SIGTERM)

report = run_stats([sys.argv[1]], sys.argv[2], expand_runs(["budget"], [0.3]), Params(), workers=int(sys.argv[3]),
                   engine=sys.argv[4], task_size=1, on_progress=stop, ray_address=sys.argv[5] or None)
print(report.images, report.rows, report.interrupted)
sys.exit(report.return_code)
"""


@pytest.mark.timing
@pytest.mark.parametrize("engine,workers", [("local", 1), ("local", 2), pytest.param("ray", 2, marks=pytest.mark.slow)])
def test_sigterm_flushes_the_finished_rows_and_exits_143(tmp_path, engine, workers, request):
    """Fault 8: SIGTERM acts like Ctrl-C: rows finished so far are written, exit 143 (with Ray: no stack dump).
    With Ray the command's process joins the session's running Ray (ray_local) instead of starting its own:
    it still calls ray.init, so Ray's signal handlers are installed and must be put back."""
    import subprocess

    address = ""
    if engine == "ray":
        pytest.importorskip("ray")
        address = request.getfixturevalue("ray_local").get_runtime_context().gcs_address
    src = small_images(tmp_path / "in", 12)
    out = tmp_path / "rows"
    r = subprocess.run([sys.executable, "-c", SIGTERM_AFTER_ONE, str(src), str(out), str(workers), engine, address],
                       capture_output=True, text=True, timeout=2 * DEADLINE)  # fmt: skip
    assert r.returncode == 143, r.stderr
    assert "SIGTERM received" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    images, rows, interrupted = r.stdout.split()
    assert interrupted == "True" and 2 <= int(images) < 12 and int(rows) == int(images)
    assert _table(out).num_rows == int(rows) and not [p for p in out.iterdir() if p.suffix == ".tmp"]


@needs_proc
@pytest.mark.timing
def test_sigterm_on_the_command_stops_it_cleanly(tmp_path):
    import signal

    src = small_images(tmp_path / "in", 40, size=(448, 560))
    proc = start("stats", src, "-o", tmp_path / "rows", "-m", "budget:0.3", "-j", "2", "-q")
    from conftest import workers_of

    workers = workers_of(proc)
    assert len(workers) >= 2, proc.communicate()[1]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err
    assert "aptviz: interrupted" in err and "Traceback" not in err
    assert gone_within(workers), "orphaned workers"
    assert not children(proc.pid)
