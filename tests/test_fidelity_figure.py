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

from aptviz.render.fidelity import FidelityPoint, fidelity_points, pareto

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


@pytest.mark.slow
def test_batch_over_three_measures_writes_the_figure_and_the_report_shows_it(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aptviz", str(SAMPLES), "--importance", "entropy,laplacian,upsample-mse",
         "-m", "budget:0.3", "-m", "v2:1.0", "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fig = np.asarray(Image.open(out / "fidelity_vs_tokens.png").convert("RGB"))
    assert fig.shape[1] > 1000 and fig.std() > 10  # a drawn figure, not an empty canvas
    page = (out / "report.html").read_text()
    assert '<img loading="lazy" src="fidelity_vs_tokens.png"' in page
    # the numbers behind it, recomputed from the summary rows
    rows = json.loads((out / "summary.json").read_text())
    data = json.loads((out / "dataset.json").read_text())["fidelity"]
    assert len(data["points"]) == 6  # 3 measures x 2 selections
    for p in data["points"]:
        key = (p["importance"], p["method"], p["alpha"])
        mine = [r for r in rows if (r["importance"], r["method"], r["alpha"]) == key]
        assert len(mine) == 3 and p["images"] == 3
        assert p["llm_tokens"] == fmean(r["llm_tokens"] for r in mine)
        assert p["ssim"] == fmean(r["ssim_apt"] for r in mine)
        assert p["psnr"] == fmean(r["psnr_apt"] for r in mine)
    med = median(p["llm_tokens"] for p in data["points"])
    best = max((p for p in data["points"] if p["llm_tokens"] <= med), key=lambda p: p["ssim"])
    assert data["best"] == best and data["median_llm_tokens"] == med
    assert f"best SSIM: {best['importance']} {best['method']}" in data["caption"]
    uni_tokens = sorted({fmean(r["uniform_vit_tokens"] / 4 for r in rows if (r["importance"], r["method"], r["alpha"])
                              == (p["importance"], p["method"], p["alpha"])) for p in data["points"]})  # fmt: skip
    assert [u["llm_tokens"] for u in data["uniform"]] == sorted(set(uni_tokens))


P = st.builds(
    lambda t, s: FidelityPoint("entropy", "v2", 1.0, 1, float(t), float(s), None),
    st.integers(1, 50),
    st.floats(0, 1, allow_nan=False),
)


@given(st.lists(P, min_size=1, max_size=30))
def test_pareto_front_is_exactly_the_undominated_points(points):
    front = pareto(points, "ssim")

    def dominated(p):
        return any(q.llm_tokens <= p.llm_tokens and q.ssim >= p.ssim
                   and (q.llm_tokens, q.ssim) != (p.llm_tokens, p.ssim) for q in points)  # fmt: skip

    undominated = {(p.llm_tokens, p.ssim) for p in points if not dominated(p)}
    assert {(p.llm_tokens, p.ssim) for p in front} == undominated
    assert [p.llm_tokens for p in front] == sorted(p.llm_tokens for p in front)


def test_rows_without_ssim_give_no_figure_and_lossless_psnr_is_kept_apart():
    base = {"status": "ok", "importance": "entropy", "method": "v1", "alpha": None, "llm_tokens": 10,
            "uniform_vit_tokens": 36, "base_small_tokens": 64, "llm_tokens_uniform": 16}  # fmt: skip
    assert fidelity_points([dict(base, ssim_apt=None, ssim_uniform=None)]) is None
    rows = [dict(base, ssim_apt=1.0, ssim_uniform=0.9, psnr_apt=None, psnr_uniform=30.0),
            dict(base, ssim_apt=0.98, ssim_uniform=0.8, psnr_apt=40.0, psnr_uniform=28.0)]  # fmt: skip
    s = fidelity_points(rows)
    [p] = s.points
    assert (p.psnr, p.lossless, p.ssim) == (40.0, 1, 0.99)  # one lossless image: left out of the mean dB
    [u] = s.uniform
    assert u.llm_tokens == 9.0 and u.psnr == 29.0  # 36 ViT tokens / 4 per LLM token
    assert s.to_dict()["psnr_lossless_images"] == 1 and "1 lossless image(s) left out" in s.caption
    [p] = fidelity_points([dict(r, psnr_apt=None) for r in rows]).points
    assert p.psnr is None and p.lossless == 2  # every image lossless: no finite mean, marked instead


@pytest.mark.slow
def test_one_lossless_image_does_not_empty_the_psnr_panel(tmp_path):
    """A 1x1 PNG resizes to a flat picture every selection reproduces exactly (PSNR null = infinite dB)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (src / name).write_bytes((SAMPLES / name).read_bytes())
    Image.new("RGB", (1, 1), (120, 60, 30)).save(src / "dot.png")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aptviz", str(src), "--importance", "entropy,upsample-mse",
         "-m", "budget:0.3", "-m", "v2:1", "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "summary.json").read_text())
    dot = [r for r in rows if r["image"].endswith("dot.png")]
    assert dot and all(r["psnr_apt"] is None for r in dot)  # the case this is about
    data = json.loads((out / "dataset.json").read_text())["fidelity"]
    for p in data["points"]:
        mine = [r for r in rows if (r["importance"], r["method"], r["alpha"]) == (p["importance"], p["method"], p["alpha"])]
        finite = [r["psnr_apt"] for r in mine if r["psnr_apt"] is not None]
        assert p["psnr"] == fmean(finite) and p["psnr_lossless"] == len(mine) - len(finite) >= 1
    assert all(u["psnr"] is not None for u in data["uniform"])
    assert data["psnr_lossless_images"] == 1
    assert "PSNR lossless" not in data["caption"] and "(1 lossless image(s) left out)" in data["caption"]
    from aptviz.render.fidelity import fidelity_figure

    fig = fidelity_figure(fidelity_points(rows))
    psnr_panel = fig.axes[0]
    labels = {line.get_label() for line in psnr_panel.get_lines() if np.isfinite(line.get_ydata()).all()}
    assert {f"{m} {k}" for m in ("entropy", "upsample-mse") for k in ("budget", "v2")} <= labels, labels
    assert any(label.startswith("uniform") for label in labels) and "Pareto front" in labels


@pytest.mark.slow
def test_batch_figures_name_the_runs_model(tmp_path, monkeypatch):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aptviz", str(SAMPLES / "chelsea.png"), str(SAMPLES / "coffee.png"),
         "--model", "qwen3-vl", "-m", "budget:0.3", "-m", "v2:1", "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "summary.json").read_text())
    assert {r["model"] for r in rows} == {"qwen3-vl"}
    data = json.loads((out / "dataset.json").read_text())["fidelity"]
    assert data["model"] == "Qwen3-VL"
    from aptviz.render import figures
    from aptviz.render.fidelity import fidelity_figure

    drawn = []
    real = figures.new_figure
    monkeypatch.setattr(figures, "new_figure", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    assert figures.psnr_curves_png(rows) is not None
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
    import subprocess
    import sys

    from aptviz.render.fidelity import fidelity_figure, fidelity_points

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "aptviz", str(ROOT / "sample_images" / "chelsea.png"), "-m", "v1", "-m", "v2:1.0",
         "-m", "budget:0.3",
         "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = fidelity_points(json.loads((out / "summary.json").read_text()))
    lossless = [p for p in summary.points if p.psnr is None]
    assert lossless, "chelsea's v1 selection is expected to reproduce the image exactly"
    fig = fidelity_figure(summary)
    fig.tight_layout()
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    marks = [t for t in ax.texts if t.get_text() == "lossless"]
    assert len(marks) == len(lossless)
    for t in marks:
        e = t.get_window_extent()
        assert box.x0 <= e.x0 and e.x1 <= box.x1, (e, box)
