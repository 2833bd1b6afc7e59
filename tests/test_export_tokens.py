"""--export-tokens: tokens.npz per image, NumPy only."""

import json

import numpy as np
from typer.testing import CliRunner

from aptviz.cli.command import app
from aptviz.compute.tokens import llm_tokens

from conftest import ROOT

ARGS = ["-m", "budget:0.3", "-m", "v2:1", "-m", "v1", "-q"]
LABELS = ["budget_alpha0.3", "v2_alpha1", "v1"]


def test_tokens_npz_holds_each_selections_fields(tmp_path):
    r = CliRunner().invoke(app, ["sample_images/coffee.png", *ARGS, "--export-tokens", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "coffee"
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["files"]["tokens"] == "tokens.npz"
    with np.load(folder / "tokens.npz") as z:
        assert z["image_grid_thw"].tolist() == [[1, 28, 42]]
        for label, sel in zip(LABELS, stats["selections"]):
            counts = {int(k): v for k, v in sel["tokens_by_scale"].items()}
            sizes, coords = z[f"apt_patch_sizes_{label}"], z[f"apt_patch_coords_{label}"]
            assert z[f"apt_pixel_values_{label}"].shape == (sel["vit_tokens"], 3 * 2 * 14 * 14)
            assert z[f"apt_pixel_values_{label}"].dtype == np.float32
            assert {s: int((sizes == s).sum()) for s in counts} == counts
            assert z[f"apt_vit_token_counts_{label}"].tolist() == [sel["tokens"]]
            assert z[f"apt_llm_token_counts_{label}"].tolist() == [sel["llm_tokens"]] == [llm_tokens(counts)]
            # every 14 px cell covered once by the patches at their coordinates
            cover = np.zeros((28, 42), int)
            for (y, x), s in zip(coords, sizes):
                cover[y : y + s // 14, x : x + s // 14] += 1
            assert (cover == 1).all()


def test_resume_needs_the_same_export_choice(tmp_path):
    base = ["sample_images/chelsea.png", "-m", "budget:0.3", "-o", str(tmp_path), "-q"]
    CliRunner().invoke(app, [*base, "--export-tokens"])
    npz = tmp_path / "chelsea" / "tokens.npz"
    first = npz.stat().st_mtime_ns
    r = CliRunner().invoke(app, [*base, "--export-tokens", "--json"])
    assert json.loads(r.stdout)["files"]["tokens"] == "tokens.npz" and npz.stat().st_mtime_ns == first  # skipped
    CliRunner().invoke(app, base)
    assert not npz.exists()  # redone without it: no stale tokens.npz


def test_the_memory_estimate_counts_the_export():
    from aptviz.compute.params import Params
    from aptviz.runs.memory import EXPORT_TOKENS_BYTES_PER_PIXEL, plan, resized_bound

    params = Params(max_pixels=20_000_000)
    without = plan(params, workers=1, max_memory=64 << 30, threads=1)
    with_tokens = plan(params, workers=1, max_memory=64 << 30, threads=1, export_tokens=True)
    assert with_tokens.total - without.total == EXPORT_TOKENS_BYTES_PER_PIXEL * resized_bound(params)


def test_export_tokens_runs_within_its_estimate(tmp_path):
    """tokens.npz is written one array at a time: its peak stays under EXPORT_TOKENS_BYTES_PER_PIXEL a pixel."""
    import tracemalloc

    from aptviz.compute.params import Params, build_runs
    from aptviz.output.atomic import write_npz_stream_atomic
    from aptviz.pipeline import _token_arrays, compute
    from aptviz.runs.memory import EXPORT_TOKENS_BYTES_PER_PIXEL

    result = compute(ROOT / "sample_images" / "astronaut.png", build_runs(["budget:1", "v2:1", "budget:0.3"]), Params())
    pixels = result.resized.shape[0] * result.resized.shape[1]
    tracemalloc.start()
    try:
        write_npz_stream_atomic(tmp_path / "tokens.npz", _token_arrays(result))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < EXPORT_TOKENS_BYTES_PER_PIXEL * pixels
    with np.load(tmp_path / "tokens.npz") as z:
        assert z["apt_pixel_values_budget_alpha1"].shape == (pixels // 196, 1176)
