import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aptviz.compute.params import Params
from aptviz.compute.stats import ImageInfo, ImageStats, SelectionStats
from aptviz.errors import Status
from aptviz.runs.results import JobResult
from aptviz.runs.summary import Summary, aggregate, write_retention_plot


def _stats(path, retention_by_alpha, name):
    stats = ImageStats(
        aptviz_version="0",
        image=ImageInfo(path, (451, 300), (448, 308)),
        params=Params(),
        grid={14: (22, 32), 28: (11, 16), 56: (6, 8)},
        entropy={},
        selections=[
            SelectionStats("budget", a, None, {14: 10, 28: 2, 56: 1}, 13, 704, r, a) for a, r in retention_by_alpha
        ],
    )
    return JobResult(Path(path), name, Status.done, stats=stats)


def _failed(path, error):
    return JobResult.failed(path, error)


def test_rows_written_in_input_order_and_replaced(tmp_path):
    s = Summary(tmp_path, [14, 28, 56], order=["b.png", "a.png"], interval=3600)
    s.add(_stats("a.png", [(0.2, 0.19), (0.4, 0.39)], "a"))
    assert s.write(force=True)
    s.add(_failed("b.png", "empty file (0 bytes)"))
    assert not s.write()  # throttled: the interval has not passed
    s.write(force=True)
    with open(tmp_path / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["image"], r["status"], r["alpha"]) for r in rows] == [
        ("b.png", "failed", ""),
        ("a.png", "ok", "0.2"),
        ("a.png", "ok", "0.4"),
    ]
    assert rows[0]["error"] == "empty file (0 bytes)" and rows[1]["tokens_28"] == "2"
    assert rows[1]["output"] == str(tmp_path / "a")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data[2]["retention"] == 0.39 and data[0]["output"] is None
    # an image redone replaces its rows rather than adding more
    s.add(_stats("a.png", [(0.3, 0.29)], "a"))
    assert [r["alpha"] for r in s.rows if r["status"] == "ok"] == [0.3]


def test_aggregate_and_plot(tmp_path):
    s = Summary(tmp_path, [14, 28, 56])
    s.add(_stats("a.png", [(0.2, 0.19), (0.4, 0.41)], "a"))
    s.add(_stats("b.png", [(0.2, 0.21), (0.4, 0.39)], "b"))
    groups = {g.alpha: g for g in aggregate(s.rows)}
    assert groups[0.2].images == 2 and abs(groups[0.2].mean_retention - 0.2) < 1e-12
    assert groups[0.4].min_retention == 0.39 and groups[0.4].max_retention == 0.41
    out = write_retention_plot(tmp_path / "retention_vs_alpha.png", s.rows)
    assert out.stat().st_size > 10_000
    assert write_retention_plot(tmp_path / "none.png", []) is None


def test_plot_draws_llm_retention_beside_vit_retention():
    from aptviz.runs.summary import retention_figure

    rows = [
        {"status": "ok", "method": "budget", "alpha": a, "retention": r, "tokens": 10, "llm_retention": lr,
         "llm_tokens": 5}
        for a, r, lr in ((0.2, 0.19, 0.40), (0.2, 0.21, 0.44), (0.4, 0.39, 0.60))
    ]  # fmt: skip

    def lines(fig):
        return {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}

    both = lines(retention_figure(rows))
    assert both["budget ViT (mean)"] == [0.2, 0.39]
    assert [round(y, 12) for y in both["budget LLM (mean)"]] == [0.42, 0.6]
    assert "budget LLM (mean)" not in lines(retention_figure(rows, llm=False))
    old = [{k: v for k, v in r.items() if not k.startswith("llm")} for r in rows]  # rows of an older summary
    assert "budget LLM (mean)" not in lines(retention_figure(old))


def test_csv_cells_that_spreadsheets_run_as_formulas_are_quoted_in_csv_only(tmp_path, monkeypatch):
    """Files named =..., +..., -..., @... given as inputs: a leading ' in summary.csv, unchanged in summary.json."""
    import shutil

    from aptviz.cli.command import main

    names = ["=HYPERLINK(1).png", "+1.png", "-x.png", "@SUM(A1).png", "plain=.png"]
    for name in names:
        shutil.copy(Path(__file__).resolve().parents[1] / "sample_images" / "chelsea.png", tmp_path / name)
    monkeypatch.chdir(tmp_path)
    try:
        main(["-o", "out", "-m", "v2", "-q", "-j", "1", "--", *names])
    except SystemExit as exc:
        assert exc.code == 0
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(r["image"] for r in data) == sorted(names)
    want = sorted(n if n.startswith("plain") else "'" + n for n in names)
    assert sorted(r["image"] for r in rows) == want
    assert all(r["output"].startswith("out/") and float(r["retention"]) > 0 for r in rows)


def test_image_named_like_a_layout_folder_survives_the_next_run(tmp_path, make_image):
    """Issue 16 bug: ``12cat.jpg`` (a name starting with two digits, like 01_heatmaps) stayed in
    summary.json only for the run that computed it; the next run with other inputs dropped it."""
    import aptviz

    cat = make_image("in/12cat.jpg")
    make_image("in/sub/07_dog.png", seed=1)
    other = make_image("other.png", seed=2)
    out = tmp_path / "out"
    first = aptviz.run([cat.parent], out, ["budget:0.3"], workers=1, recursive=True)
    assert first.return_code == 0
    second = aptviz.run([other], out, ["budget:0.3"], workers=1)
    assert second.return_code == 0
    rows = json.loads((out / "summary.json").read_text())
    assert sorted(Path(r["image"]).name for r in rows) == ["07_dog.png", "12cat.jpg", "other.png"]
    assert sorted(Path(r["output"]).relative_to(out).as_posix() for r in rows) == ["12cat", "other", "sub/07_dog"]
    # the dataset view and the report count them too (from the summary's stats, not from files read again)
    assert json.loads((out / "dataset.json").read_text())["images"] == 3
    assert (out / "report.html").read_text().count('class="card"') == 3


def test_summary_images_are_the_stats_written(tmp_path, make_image):
    """The dataset view and report.html take the summary's stats: this run's results as written, and
    the folders of earlier runs as read once when the summary loaded them (the same content)."""
    import aptviz

    paths = [make_image(f"img{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "out"
    aptviz.run(paths[:1], out, ["v1", "budget:0.3"], workers=1)
    fresh = Summary(out, [14, 28, 56])
    fresh.load_existing()
    on_disk = json.loads((out / "img0" / "stats.json").read_text())
    assert fresh.images == [(str(out / "img0"), on_disk)]
    report = aptviz.run(paths, out, ["v1", "budget:0.3"], workers=1)
    s = Summary(out, [14, 28, 56])
    for result in report.results:
        s.add(result)
    assert [folder for folder, _ in s.images] == [str(out / "img0"), str(out / "img1")]
    assert [stats for _, stats in s.images] == [
        json.loads((out / f"img{i}" / "stats.json").read_text()) for i in range(2)
    ]


def _written(folder):
    return (folder / "summary.csv").read_bytes(), (folder / "summary.json").read_bytes()


@given(st.lists(st.tuples(st.sampled_from(["a.png", "=b.png", "c\u00e9 d.png", "-e.png", "f,\"g\".png"]),
                          st.booleans(), st.floats(0.01, 1.0)), min_size=0, max_size=12))  # fmt: skip
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_summary_files_equal_the_whole_file_writers(tmp_path, events):
    """Rows serialized once and joined give the bytes the whole-file CSV and JSON writers give."""
    from aptviz.output.atomic import write_csv_atomic, write_json_atomic

    out, ref = tmp_path / "out", tmp_path / "ref"
    out.mkdir(exist_ok=True)
    ref.mkdir(exist_ok=True)
    s = Summary(out, [14, 28, 56], order=["=b.png", "a.png"], interval=3600)
    for i, (name, ok, r) in enumerate(events):
        s.add(_stats(name, [(0.3, r)], name.split(".")[0]) if ok else _failed(name, f"bad {i}\nline"))
        if i % 3 == 0:  # written between events: cached rows must follow replacements
            s.write(force=True)
    s.write(force=True)
    write_csv_atomic(ref / "summary.csv", s.rows, s.columns)
    write_json_atomic(ref / "summary.json", s.rows)
    assert _written(out) == _written(ref)


def test_summary_rewrites_wait_longer_as_writes_get_slower(tmp_path, monkeypatch):
    """A write that took d seconds is not followed by an unforced one before WRITE_SHARE * d (the per-image
    cost of the rewrites stays flat as the summary grows); a forced write always happens."""
    import aptviz.runs.summary as summary_mod

    clock = [1000.0]
    real_write = summary_mod.write_bytes_atomic

    def slow_write(path, data):  # each file write takes 0.5 s on the fake clock
        clock[0] += 0.5
        return real_write(path, data)

    monkeypatch.setattr(summary_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(summary_mod, "write_bytes_atomic", slow_write, raising=False)
    s = Summary(tmp_path, [14, 28, 56], interval=1.0)
    s.add(_stats("a.png", [(0.3, 0.2)], "a"))
    assert s.write()  # took 1 s (two files)
    clock[0] += 2.0
    assert not s.write()  # 2 s after a 1 s write: too soon
    clock[0] += getattr(summary_mod, "WRITE_SHARE", 20) * 1.0
    assert s.write()
    assert s.write(force=True)


def test_each_stats_json_is_read_once_per_run(tmp_path, make_image, monkeypatch):
    """Resuming: a skipped image's stats.json is read once (the completeness check), an earlier
    run's folder once (the summary loading it); the dataset view and the report read none."""
    import aptviz
    import aptviz.output.atomic as atomic

    paths = [make_image(f"img{i}.png", seed=i) for i in range(3)]
    out = tmp_path / "out"
    assert aptviz.run(paths, out, ["v1", "budget:0.3"], workers=1).return_code == 0
    reads = []
    real = atomic.read_json

    def counting(path):
        if Path(path).name == "stats.json":
            reads.append(Path(path).parent.name)
        return real(path)

    for module in ("aptviz.output.atomic", "aptviz.runs.batch", "aptviz.runs.summary"):
        monkeypatch.setattr(f"{module}.read_json", counting)
    report = aptviz.run(paths[:2], out, ["v1", "budget:0.3"], workers=1)
    assert report.return_code == 0 and {str(r.status) for r in report.results} == {"skipped"}
    assert sorted(reads) == ["img0", "img1", "img2"]
    assert (out / "report.html").read_text().count('class="card"') == 3
    assert json.loads((out / "dataset.json").read_text())["images"] == 3


def test_csv_names_with_a_carriage_return_keep_their_row_and_the_formula_guard(tmp_path, monkeypatch):
    """Issue 27: a file named CR + ``=1+1.png`` was written bare in summary.csv (Python's writer quotes
    only "\\n"): a CSV reader split the row there and got a cell starting with ``=``."""
    import shutil

    from aptviz.cli.command import main

    names = ["\r=1+1.png", "a\r=2+2.png", "b\n@c.png", "d\u2028=e.png"]
    for name in names:
        shutil.copy(Path(__file__).resolve().parents[1] / "sample_images" / "chelsea.png", tmp_path / name)
    monkeypatch.chdir(tmp_path)
    try:
        main(["-o", "out", "-m", "v1", "-q", "-j", "1", "--", *names])
    except SystemExit as exc:
        assert exc.code == 0
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + len(names) and {len(r) for r in rows} == {len(rows[0])}
    images = sorted(r[0] for r in rows[1:])
    assert images == sorted("'" + n if n.startswith("\r") else n for n in names)
    assert not [cell for row in rows[1:] for cell in row if cell[:1] in ("=", "+", "@")]


@given(st.lists(st.lists(st.text(alphabet="a=,\"'\r\n\x0b\x85\u2028\u2029 1", max_size=6), min_size=2, max_size=2),
                max_size=5))  # fmt: skip
def test_csv_lines_read_back_one_row_per_row(cells):
    """Any text, line breaks included, reads back as one CSV row per row, cell by cell as csv_cell gives it."""
    import io

    from aptviz.output.atomic import csv_cell, csv_lines

    rows = [{"a": a, "b": b} for a, b in cells]
    back = list(csv.reader(io.StringIO(csv_lines(rows, ["a", "b"]), newline="")))
    assert back == [[csv_cell(a), csv_cell(b)] for a, b in cells]


def _broken_stats(path, where, value):
    data = json.loads(path.read_text())
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path.write_text(json.dumps(data))


@pytest.mark.slow
def test_stats_json_of_the_wrong_types_is_redone_and_the_other_rows_kept(tmp_path, make_image):
    """Issue 27: a stats.json field of the wrong type (``"frames": "2"``, a number as text, a malformed
    histogram) crashed the next run, shrank summary.json and left report.html stale, run after run.
    Such an image is not complete: the next run redoes it, and the other images keep their rows.
    Each break is planted in its own image and one run redoes them all: every broken image is checked on
    its own (redone, its stats.json rewritten as before), the unbroken first and last ones are skipped."""
    import aptviz

    breaks = [
        (("image", "frames"), "2"),
        (("selections", 0, "tokens"), "5"),
        (("selections", 1, "retention"), "0.5"),
        (("importance_histogram",), {"x": "y"}),
        (("grid", "14"), [1, 2, 3]),
        (("selections", 0, "tokens_by_scale", "14"), None),
        (("importance", "28", "mean"), "nan"),
        (("selections", 0, "base_small_tokens"), 0),  # a number the report divides by
        (("image", "frames"), -5),
        (("time",), "2"),  # the time axis (a video's frames and tubelets)
        (("time",), {"frames": "2", "tubelets": 1}),
        (("selections", 1, "retention"), 10**400),  # an int no float holds
    ]
    count = len(breaks) + 2  # img00 and the last image stay unbroken
    paths = [make_image(f"img{i:02d}.png", seed=i) for i in range(count)]
    out = tmp_path / "out"
    assert aptviz.run(paths, out, ["v1", "v2"], workers=1).return_code == 0
    good = {i: (out / f"img{i:02d}" / "stats.json").read_bytes() for i in range(count)}
    broken = {f"img{i:02d}.png": where for i, (where, value) in enumerate(breaks, 1)}
    for i, (where, value) in enumerate(breaks, 1):
        _broken_stats(out / f"img{i:02d}" / "stats.json", where, value)
    (out / "report.html").unlink()
    report = aptviz.run(paths, out, ["v1", "v2"], workers=1)
    assert report.return_code == 0
    status = {Path(r.path).name: r.status.value for r in report.results}
    for name, where in broken.items():
        assert status.pop(name) == "done", (name, where)
    assert status == {"img00.png": "skipped", f"img{count - 1:02d}.png": "skipped"}
    assert len(json.loads((out / "summary.json").read_text())) == 2 * count
    assert (out / "report.html").read_text().count('class="card"') == count
    for i in range(count):
        where = breaks[i - 1][0] if 0 < i <= len(breaks) else None
        assert (out / f"img{i:02d}" / "stats.json").read_bytes() == good[i], (i, where)


def test_summary_leaves_out_a_folder_whose_stats_json_has_the_wrong_types(tmp_path, make_image):
    """A folder this run does not redo, with a malformed stats.json, is left out; the others are kept."""
    import aptviz

    paths = [make_image(f"img{i}.png", seed=i) for i in range(3)]
    out = tmp_path / "out"
    assert aptviz.run(paths, out, ["v1", "v2"], workers=1).return_code == 0
    _broken_stats(out / "img2" / "stats.json", ("image", "resized_size"), ["448", 308])
    assert aptviz.run(paths[:1], out, ["v1", "v2"], workers=1).return_code == 0
    rows = json.loads((out / "summary.json").read_text())
    assert sorted(Path(r["image"]).name for r in rows) == ["img0.png", "img0.png", "img1.png", "img1.png"]
    from conftest import command  # the command says so, in one line (in this process)

    r = command(paths[0], "-o", out, "-m", "v1", "-m", "v2", "-j", "1")
    assert r.returncode == 0 and r.stderr == (
        f"WARNING: {out / 'img2' / 'stats.json'}: left out of the summary "
        "(stats.json: wrong type or value of resized_size)\n"
    ), r.stderr


import shutil  # noqa: E402

from conftest import command as aptviz  # noqa: E402  (in this process: the rows are the point)
from conftest import small_images  # noqa: E402
from conftest import summary_rows as rows_of  # noqa: E402


def test_summary_accumulates_over_runs(tmp_path):
    a = small_images(tmp_path / "a", 2, seed=0)
    b = small_images(tmp_path / "b", 2, seed=5)
    out = tmp_path / "out"
    assert aptviz(a / "img00.png", a / "img01.png", "-o", out, "-m", "budget:0.3", "-q").returncode == 0
    shutil.copy(b / "img00.png", tmp_path / "other.png")
    assert aptviz(tmp_path / "other.png", "-o", out, "-m", "budget:0.3", "-q").returncode == 0
    rows = rows_of(out)
    assert sorted(Path(r["output"]).name for r in rows) == ["img00", "img01", "other"]
    # redoing one replaces its row, keeps the others
    assert aptviz(a / "img01.png", "-o", out, "-m", "budget:0.5", "-q").returncode == 0
    rows = {Path(r["output"]).name: r for r in rows_of(out)}
    assert sorted(rows) == ["img00", "img01", "other"]
    assert rows["img01"]["alpha"] == 0.5 and rows["img00"]["alpha"] == 0.3
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 4


from conftest import SAMPLES, copies, invoke  # noqa: E402


@pytest.mark.slow
def test_retention_plot_counts_legend_and_bars(tmp_path):
    from aptviz.runs.summary import retention_figure

    src = copies(tmp_path / "in", 3, "coffee.png")
    shutil.copy(SAMPLES / "chelsea.png", src / "other.png")
    assert invoke(src, "-o", tmp_path / "out", "-m", "v1", "-m", "v2:0.8,1.2", "-q").exit_code == 0
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    fig = retention_figure(rows)
    ax1, ax2 = fig.axes[:2]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax2.get_yticks())
    legend = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert {"v1 ViT (min-max)", "v1 LLM (mean)", "v2 ViT (mean)", "v2 LLM (mean)"} <= set(legend)
    # three groups (v1, v2 0.8, v2 1.2): their bars never overlap, so none hides another
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax2.patches if p.get_height() > 0]
    spans.sort()
    assert len(spans) >= 3 and all(a_end <= b_start + 1e-12 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
