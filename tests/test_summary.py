import csv
import json
from pathlib import Path

from aptviz.compute.params import Params
from aptviz.compute.stats import ImageInfo, ImageStats, SelectionStats
from aptviz.runs.results import JobResult, Status
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
