"""fidelity_vs_tokens.png: the batch figure of every measure x method against the uniform baseline of the run's model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from statistics import fmean, median

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from aptviz.compute.fidelity import FidelityPoint, fidelity_points, pareto, retention_curves, uniform_curve

from conftest import invoke  # the command in this process: the files it writes are the point

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


@pytest.mark.slow
def test_batch_over_three_measures_writes_the_figure_and_the_report_shows_it(tmp_path):
    out = tmp_path / "out"
    done = invoke(SAMPLES, "--importance", "entropy,laplacian,upsample-mse", "-m", "budget:0.3", "-m", "v2:1.0",
                  "-q", "-o", out)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    fig = np.asarray(Image.open(out / "fidelity_vs_tokens.png").convert("RGB"))
    assert fig.shape[1] > 1000 and fig.std() > 10  # a drawn figure, not an empty canvas
    page = (out / "report.html").read_text()
    assert '<img loading="lazy" src="fidelity_vs_tokens.png"' in page
    # the numbers behind it, recomputed from the summary rows and each image's stats.json uniform_sweep
    rows = json.loads((out / "summary.json").read_text())
    sweeps = [json.loads(p.read_text())["uniform_sweep"] for p in sorted(out.glob("*/stats.json"))]
    panels = json.loads((out / "dataset.json").read_text())["fidelity"]
    assert [p["cost"] for p in panels] == ["llm", "vit"]
    for panel, key in zip(panels, ("llm_retention", "retention")):
        assert len(panel["apt"]) == 6  # 3 measures x 2 selections
        for p in panel["apt"]:
            mine = [r for r in rows if (r["importance"], r["method"], r["alpha"]) == (p["measure"], p["method"], p["alpha"])]
            assert len(mine) == 3 and p["images"] == 3
            assert p["retention"] == fmean(r[key] for r in mine)
            assert p["ssim"] == fmean(r["ssim_apt"] for r in mine)
            assert p["psnr"] == fmean(r["psnr_apt"] for r in mine)
        _check_uniform(panel, sweeps)
        med = median(p["retention"] for p in panel["apt"])
        best_apt = max((p for p in panel["apt"] if p["retention"] <= med), key=lambda p: p["ssim"])
        assert panel["best_apt"] == best_apt and panel["median_retention"] == med
        uni = _at(panel["uniform"], med, "ssim")
        best = panel["best"]
        if uni > best_apt["ssim"]:
            assert best["method"] == "uniform" and best["ssim"] == pytest.approx(uni) and "best SSIM: uniform" in panel["caption"]
        else:
            assert best == best_apt and f"best SSIM: {best['measure']} {best['method']}" in panel["caption"]


def _at(curve: list[dict], x: float, key: str) -> float:
    """The uniform curve at retention ``x`` (linear between its points)."""
    xs = [p["retention"] for p in curve]
    return float(np.interp(x, xs, [p[key] for p in curve]))


def _check_uniform(panel: dict, sweeps: list[list[dict]]) -> None:
    """The uniform curve: every image's sweep interpolated at equal retention and averaged, over the range all cover,
    reaching past every APT point; no zig-zag (SSIM never falls as the retention grows); the front only where both
    are measured."""
    uni = panel["uniform"]
    xs = [p["retention"] for p in uni]
    assert xs == sorted(xs) and len(xs) > 20
    assert xs[0] == max(s[0]["retention"] for s in sweeps) and xs[-1] == min(s[-1]["retention"] for s in sweeps)
    assert xs[0] <= min(p["retention"] for p in panel["apt"]) and xs[-1] >= max(p["retention"] for p in panel["apt"])
    for p in uni[:: max(1, len(uni) // 7)]:
        expected = fmean(float(np.interp(p["retention"], [q["retention"] for q in s], [q["ssim"] for q in s]))
                         for s in sweeps)  # fmt: skip
        assert p["ssim"] == pytest.approx(expected, abs=1e-12)
    ssims = [p["ssim"] for p in uni]
    assert all(b >= a - 1e-9 for a, b in zip(ssims, ssims[1:]))
    lo, hi = panel["both_measured"]
    for key, front in panel["pareto"].items():
        assert front and all(lo - 1e-12 <= p["retention"] <= hi + 1e-12 for p in front), key
    # every APT point has the uniform curve at its own retention (a point of the curve, not a neighbour)
    assert all(any(abs(x - p["retention"]) < 1e-9 for x in xs) for p in panel["apt"])


P = st.builds(
    lambda t, s: FidelityPoint("entropy", "v2", 1.0, 1, t / 50, float(s), None),
    st.integers(1, 50),
    st.floats(0, 1, allow_nan=False),
)


@given(st.lists(P, min_size=1, max_size=30))
def test_pareto_front_is_exactly_the_undominated_points(points):
    front = pareto(points, "ssim")

    def dominated(p):
        return any(q.retention <= p.retention and q.ssim >= p.ssim
                   and (q.retention, q.ssim) != (p.retention, p.ssim) for q in points)  # fmt: skip

    undominated = {(p.retention, p.ssim) for p in points if not dominated(p)}
    assert {(p.retention, p.ssim) for p in front} == undominated
    assert [p.retention for p in front] == sorted(p.retention for p in front)


def test_rows_without_ssim_give_no_figure_and_lossless_psnr_is_kept_apart():
    base = {"status": "ok", "importance": "entropy", "method": "v1", "alpha": None, "llm_tokens": 10,
            "retention": 0.5, "llm_retention": 0.625, "uniform_vit_tokens": 32, "base_small_tokens": 64,
            "llm_tokens_uniform": 16, "llm_uniform_tokens": 9}  # fmt: skip
    assert fidelity_points([dict(base, ssim_apt=None, ssim_uniform=None)]) is None
    rows = [dict(base, image="a", ssim_apt=1.0, ssim_uniform=0.9, psnr_apt=None, psnr_uniform=30.0,
                 ssim_uniform_llm=0.95, psnr_uniform_llm=32.0),
            dict(base, image="b", ssim_apt=0.98, ssim_uniform=0.8, psnr_apt=40.0, psnr_uniform=28.0,
                 ssim_uniform_llm=0.85, psnr_uniform_llm=30.0)]  # fmt: skip
    s = fidelity_points(rows)  # no sweep: each image's two baselines (32/64 = 0.5 and 9/16 = 0.5625) make its curve
    llm, vit = s.panels
    [p] = llm.points
    assert (p.psnr, p.lossless, p.ssim, p.retention) == (40.0, 1, 0.99, 0.625)  # one lossless image: out of the dB mean
    assert vit.points[0].retention == 0.5
    assert [(u.retention, u.psnr, u.ssim) for u in (llm.uniform[0], llm.uniform[-1])] == [
        (0.5, 29.0, pytest.approx(0.85)), (0.5625, 31.0, pytest.approx(0.9))]
    assert s.to_dict()[0]["psnr_lossless_images"] == 1 and "1 lossless image(s) left out" in s.caption
    [p] = fidelity_points([dict(r, psnr_apt=None) for r in rows]).panels[0].points
    assert p.psnr is None and p.lossless == 2  # every image lossless: no finite mean, marked instead
    # a sweep that cannot reach the cheapest APT point (0.5 here) is left out of the curve, and the caption says so
    sweeps = [[{"retention": 0.2, "psnr": 20.0, "ssim": 0.5}, {"retention": 1.0, "psnr": None, "ssim": 1.0}],
              [{"retention": 0.6, "psnr": 25.0, "ssim": 0.7}, {"retention": 1.0, "psnr": None, "ssim": 1.0}]]  # fmt: skip
    s = fidelity_points(rows, sweeps)
    assert (s.uniform_images, s.uniform_left_out) == (1, 1) and "mean over 1 of 2 images" in s.caption
    assert s.panels[1].uniform[0].retention == 0.2 and s.panels[1].uniform[0].ssim == 0.5


@given(st.lists(st.lists(st.tuples(st.floats(0.01, 1.0), st.floats(0, 1)), min_size=1, max_size=8), min_size=1,
                max_size=5))
def test_uniform_curve_is_the_mean_of_the_images_at_equal_retention(images):
    sweeps = [[{"retention": r, "psnr": 20 + 10 * s, "ssim": s} for r, s in pts] for pts in images]
    curve = uniform_curve(sweeps, at=[0.333])
    ranges = []
    for sw in sweeps:
        xs = sorted({p["retention"] for p in sw})
        ranges.append((xs[0], xs[-1]))
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if lo > hi:
        assert curve == []
        return
    assert curve[0]["retention"] == pytest.approx(lo) and curve[-1]["retention"] == pytest.approx(hi)
    assert (lo < 0.333 < hi) == any(abs(p["retention"] - 0.333) < 1e-12 for p in curve)
    for p in curve:
        values = []
        for sw in sweeps:
            first = {}
            for q in sorted(sw, key=lambda q: q["retention"]):
                first.setdefault(q["retention"], q["ssim"])  # the first of equal retentions
            xs = sorted(first)
            values.append(float(np.interp(p["retention"], xs, [first[x] for x in xs])))
        assert p["ssim"] == pytest.approx(fmean(values), abs=1e-9)


@pytest.mark.slow
def test_one_lossless_image_does_not_empty_the_psnr_panel(tmp_path):
    """A 1x1 PNG resizes to a flat picture every selection reproduces exactly (PSNR null = infinite dB)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (src / name).write_bytes((SAMPLES / name).read_bytes())
    Image.new("RGB", (1, 1), (120, 60, 30)).save(src / "dot.png")
    out = tmp_path / "out"
    done = invoke(src, "--importance", "entropy,upsample-mse", "-m", "budget:0.3", "-m", "v2:1", "-q", "-o", out)
    assert done.exit_code == 0, done.stderr
    rows = json.loads((out / "summary.json").read_text())
    dot = [r for r in rows if r["image"].endswith("dot.png")]
    assert dot and all(r["psnr_apt"] is None for r in dot)  # the case this is about
    [data, _] = json.loads((out / "dataset.json").read_text())["fidelity"]
    for p in data["apt"]:
        mine = [r for r in rows if (r["importance"], r["method"], r["alpha"]) == (p["measure"], p["method"], p["alpha"])]
        finite = [r["psnr_apt"] for r in mine if r["psnr_apt"] is not None]
        assert p["psnr"] == fmean(finite) and p["psnr_lossless"] == len(mine) - len(finite) >= 1
    assert sum(u["psnr"] is not None for u in data["uniform"]) > 10
    assert data["psnr_lossless_images"] == 1
    # the dot is lossless at every uniform size too: in the SSIM curve, out of the PSNR mean
    assert (data["uniform_images"], data["uniform_left_out"]) == (3, 0)
    from aptviz.render.fidelity import fidelity_figure

    summary = fidelity_points(rows, [json.loads(p.read_text())["uniform_sweep"] for p in out.glob("*/stats.json")])
    assert "(1 lossless image(s) left out)" in summary.caption
    fig = fidelity_figure(summary)
    psnr_panel = fig.axes[2]  # PSNR vs LLM tokens
    labels = {line.get_label() for line in psnr_panel.get_lines() if np.isfinite(line.get_ydata()).all()}
    assert {f"{m} {k}" for m in ("entropy", "upsample-mse") for k in ("budget", "v2")} <= labels, labels
    assert any(label.startswith("uniform") for label in labels) and "Pareto front (where both are measured)" in labels


@pytest.mark.slow
def test_batch_figures_name_the_runs_model(tmp_path, monkeypatch):
    out = tmp_path / "out"
    done = invoke(SAMPLES / "chelsea.png", SAMPLES / "coffee.png", "--model", "qwen3-vl", "-m", "budget:0.3",
                  "-m", "v2:1", "-q", "-o", out)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    rows = json.loads((out / "summary.json").read_text())
    assert {r["model"] for r in rows} == {"qwen3-vl"}
    data = json.loads((out / "dataset.json").read_text())["fidelity"]
    assert [p["model"] for p in data] == ["Qwen3-VL", "Qwen3-VL"]
    from aptviz.render import figures
    from aptviz.render.fidelity import fidelity_figure

    drawn = []
    real = figures.new_figure
    monkeypatch.setattr(figures, "new_figure", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    assert figures.psnr_curves_png(retention_curves(rows)) is not None
    fig = fidelity_figure(fidelity_points(rows))
    texts = [fig.get_suptitle()]
    for f in (drawn[0], fig):
        texts += [line.get_label() for ax in f.axes for line in ax.get_lines()]
    uniform = [t for t in texts if "uniform" in t]
    assert len(uniform) >= 3 and all("Qwen3-VL" in t for t in uniform), uniform
    assert not any("Qwen2-VL" in t for t in texts), texts


def test_fidelity_lossless_marks_stay_inside_the_psnr_panel(tmp_path):
    """v1 is lossless on chelsea (infinite dB): its PSNR mark sat outside the axes.

    A point is marked lossless only when every image of it is (a lossless image among others is left
    out of the mean), so the batch here is chelsea alone."""
    import json

    from aptviz.compute.fidelity import fidelity_points
    from aptviz.render.fidelity import fidelity_figure

    out = tmp_path / "out"
    done = invoke(ROOT / "sample_images" / "chelsea.png", "-m", "v1", "-m", "v2:1.0", "-m", "budget:0.3", "-q",
                  "-o", out)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    summary = fidelity_points(json.loads((out / "summary.json").read_text()))
    lossless = [p for p in summary.panels[0].points if p.psnr is None]
    assert lossless, "chelsea's v1 selection is expected to reproduce the image exactly"
    fig = fidelity_figure(summary)
    fig.tight_layout()
    fig.canvas.draw()
    ax = fig.axes[2]  # PSNR against LLM tokens
    box = ax.get_window_extent()
    marks = [t for t in ax.texts if t.get_text() == "lossless"]
    assert len(marks) == len(lossless)
    for t in marks:
        e = t.get_window_extent()
        assert box.x0 <= e.x0 and e.x1 <= box.x1, (e, box)


def test_the_uniform_curve_leaves_numpy_ma_unimported():
    """The batch's end (serial: every worker is done) does not import numpy.ma (~10 ms) for np.unique: the
    curve's grid is sorted and deduplicated as np.unique does it, the same points."""
    code = (
        "import sys, numpy as np\n"
        "from aptviz.compute.fidelity import uniform_curve\n"
        "a = [{'retention': r, 'psnr': 20 + r, 'ssim': r / 2} for r in (0.05, 0.1, 0.3, 0.3, 0.7, 1.0)]\n"
        "b = [{'retention': r, 'psnr': None if r == 1 else 30 * r, 'ssim': r} for r in (0.02, 0.25, 0.5, 1.0)]\n"
        "curve = uniform_curve([a, b], at=[0.25, 0.25, 0.333, 0.05])\n"
        "print('numpy.ma' in sys.modules, [p['retention'] for p in curve])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    imported, grid = out.stdout.split(" ", 1)
    assert imported == "False", out.stdout + out.stderr
    expected = np.unique(np.concatenate([[0.05], np.round(np.arange(6, 101) * 0.01, 12), [0.25, 0.333, 1.0]]))
    assert eval(grid) == [float(g) for g in expected]
