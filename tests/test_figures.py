"""The batch figures of render/figures.py (SPEC 17 fixes): legends off the data, off-scale labels tied to
their points. Data from real runs of the sample photos."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")

from conftest import SAMPLES, invoke  # noqa: E402

from aptviz.render.figures import importance_histogram_figure, psnr_curves_figure  # noqa: E402
from aptviz.runs.dataset_view import _v1_thresholds  # noqa: E402


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The sample photos with v1, three v2 alphas and two budgets (coffee's v1 view is near-lossless: 71 dB)."""
    out = tmp_path_factory.mktemp("batch")
    r = invoke(SAMPLES, "-o", out, "-m", "v2:0.8,1,1.3", "-m", "v1", "-m", "budget:0.2,0.5", "-j", "1", "-q")
    assert r.exit_code == 0, r.output
    return out


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_histogram_legends_are_off_the_data_and_the_threshold_lines(batch):
    data = json.loads((batch / "dataset.json").read_text())
    stats = [json.loads(p.read_text()) for p in batch.glob("*/stats.json")]
    v2 = [(float(a), thr) for a, thr in data["v2_mean_thresholds"].items()]
    fig = importance_histogram_figure(data["histogram"], _v1_thresholds(stats), v2)
    renderer = _drawn(fig)
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert len(fig.axes[1].get_legend().get_texts()) == 2 + len(v2)  # cells, v1, every v2 alpha


def test_off_scale_labels_are_tied_to_their_points(batch):
    rows = json.loads((batch / "summary.json").read_text())
    fig = psnr_curves_figure(rows)
    ax = fig.axes[0]
    top = ax.get_ylim()[1] - 0.5
    notes = [t for t in ax.texts if t.get_text().endswith(" dB")]
    assert notes, "coffee's v1 view is far above the others: it is drawn off scale"
    high = sorted(r["psnr_apt"] for r in rows if r.get("psnr_apt") is not None and r["psnr_apt"] > top)
    labelled = sorted(float(v) for t in notes for v in t.get_text()[:-3].split(", "))
    assert round(high[-1]) in labelled
    for note in notes:
        assert note.xy[1] == pytest.approx(top)  # the label points at its marker on the top edge...
        assert note.arrow_patch is not None  # ...through a leader line
        assert any(abs(x - note.xy[0]) < 1e-9 for line in ax.lines if line.get_marker() == "^"
                   for x in line.get_xdata())  # fmt: skip
    xs = [n.xy[0] for n in notes]
    assert len(set(xs)) == len(xs) or len({(n.xy[0], n.get_color()) for n in notes}) == len(notes)
