"""Qwen2-VL's vision tower on APT's tokens against the stock tower, same images, same run.

The tower has Qwen2-VL-2B's vision configuration (embed dim 1280, 16 heads,
MLP ratio 4, 14 px patches, 2x2 merge, merger to 1536) with random weights and
``--blocks`` of its 32 blocks (each block costs the same on both sides, so
the forward ratio holds; the fixed APT overhead weighs relatively more with
fewer blocks, see the 32-block estimate). The photos are the three sample
photos enlarged to 1600x1200, which Qwen2-VL resizes to about one megapixel
(1,003,520 px, about 5,100 patches).

Per photo and budget (0.3 and 0.5), the APT time is selection (entropy maps
and the budget selection) + packing (the APT rows, as the processor cuts
them) + the tower's forward on APT's rows (``enable_apt``'s path, planning
included); the baseline is the stock forward on ``pixel_values``. The two are
timed alternately (one warm-up each) and the ratio is the median of the
paired ratios. Goal (SPEC): APT / stock <= ViT retention + 0.10; the script
exits 1 if a case misses it. The last column scales the measured forward
times to all 32 blocks (the selection and packing cost stays as measured).

    python benchmarks/bench_vision_tower.py [--blocks 1] [--repeats 2] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import Qwen2VLConfig, Qwen2VLModel  # noqa: E402

from aptviz.compute.entropy import compute_maps  # noqa: E402
from aptviz.compute.packing import normalize_pixels, pack_selection  # noqa: E402
from aptviz.compute.resize import resize_image  # noqa: E402
from aptviz.compute.selection import select_patches  # noqa: E402
from aptviz.qwen2vl import APTQwen2VLImageProcessor, enable_apt  # noqa: E402
from aptviz.qwen2vl.modeling import apt_image_features  # noqa: E402

NAMES = ("astronaut", "chelsea", "coffee")
ALPHAS = (0.3, 0.5)
MARGIN = 0.10
# Qwen2-VL-2B-Instruct's vision_config (its LLM hidden size is 1536)
VISION_2B = dict(embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14, spatial_merge_size=2)


def tower(blocks: int, device: str) -> Qwen2VLModel:
    """A Qwen2VLModel with the 2B vision tower (``blocks`` blocks, random weights) and a one-layer toy LLM."""
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                        "mrope_section": [2, 3, 3]})
    torch.manual_seed(0)
    model = Qwen2VLModel(Qwen2VLConfig(text_config=text, vision_config=dict(VISION_2B, depth=blocks)))
    return enable_apt(model.to(device).eval())


def photos() -> list[tuple[str, Image.Image]]:
    return [
        (name, Image.open(ROOT / "sample_images" / f"{name}.png").convert("RGB").resize((1600, 1200), Image.BICUBIC))
        for name in NAMES
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def paired(baseline, candidate, repeats: int, device: str) -> tuple[float, float, float]:
    """Median seconds of each, and the median of the paired ratios (one warm-up each)."""
    times: dict[str, list[float]] = {"base": [], "cand": []}
    for i in range(repeats + 1):
        for key, fn in (("base", baseline), ("cand", candidate)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if i:
                times[key].append(time.perf_counter() - start)
    ratios = [c / b for b, c in zip(times["base"], times["cand"])]
    return statistics.median(times["base"]), statistics.median(times["cand"]), statistics.median(ratios)


def apt_steps(model, rgb: np.ndarray, pixels: np.ndarray, rows: np.ndarray, grid, alpha: float, device: str):
    """Selection + packing + forward on one resized image; returns (seconds per step, ViT tokens)."""
    spent = {}
    start = time.perf_counter()
    sel = select_patches(compute_maps(rgb, 14, 3, 512), "budget", alpha=alpha)
    spent["selection"] = time.perf_counter() - start
    start = time.perf_counter()
    packed = pack_selection(pixels, sel.masks, 14, 2, 2, rows=rows)
    apt = {
        "apt_pixel_values": torch.from_numpy(packed.pixel_values).to(device),
        "apt_patch_sizes": torch.from_numpy(packed.patch_sizes).to(device),
        "apt_patch_coords": torch.from_numpy(packed.patch_coords).to(device),
        "apt_vit_token_counts": torch.tensor([packed.vit_tokens], device=device),
    }
    spent["packing"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        apt_image_features(model, apt, grid)
    sync(device)
    spent["forward"] = time.perf_counter() - start
    return spent, packed.vit_tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1, help="vision blocks of the 32 (default 1)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = tower(args.blocks, args.device)
    ip = APTQwen2VLImageProcessor()
    print(f"Qwen2-VL-2B vision tower, {args.blocks} of 32 blocks, random weights, {args.device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} paired repeats")
    print(f"{'photo':<10} {'alpha':>5} {'ViT tokens':>12} {'retention':>9} {'stock s':>8} {'APT s':>7} "
          f"{'ratio':>6} {'goal':>5} {'sel+pack s':>10} {'32-block est.':>13}")
    misses = 0
    for name, img in photos():
        out = ip(images=[img], return_tensors="np")
        rows = out["pixel_values"]
        grid = torch.from_numpy(out["image_grid_thw"]).to(args.device)
        rgb, pixels = _resized(ip, img)
        if rgb.shape[0] * rgb.shape[1] != len(rows) * 14 * 14:
            raise SystemExit(f"{name}: aptviz's resize differs from the processor's")
        stock_x = torch.from_numpy(rows).to(args.device)

        def stock():
            with torch.no_grad():
                model.visual(stock_x, grid_thw=grid)

        for alpha in ALPHAS:
            record = {}

            def candidate(alpha=alpha, record=record):
                spent, tokens = apt_steps(model, rgb, pixels, rows, grid, alpha, args.device)
                record.setdefault("spent", []).append(spent)
                record["tokens"] = tokens

            base, cand, ratio = paired(stock, candidate, args.repeats, args.device)
            retention = record["tokens"] / len(rows)
            fixed = statistics.median(s["selection"] + s["packing"] for s in record["spent"][1:])
            forward = statistics.median(s["forward"] for s in record["spent"][1:])
            scale = 32 / args.blocks
            estimate = (fixed + forward * scale) / (base * scale)
            goal = retention + MARGIN
            misses += ratio > goal
            print(f"{name:<10} {alpha:>5} {record['tokens']:>5} / {len(rows):<5} {retention:>9.3f} {base:>8.2f} "
                  f"{cand:>7.2f} {ratio:>6.3f} {goal:>5.2f} {fixed:>10.3f} {estimate:>13.3f}")
    print("goal met" if not misses else f"goal missed in {misses} case(s)")
    return 1 if misses else 0


def _resized(ip: APTQwen2VLImageProcessor, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The resized uint8 image (H, W, 3) (aptviz's resize: the processor's pixels) and its normalized pixels."""
    rgb = np.asarray(resize_image(img))
    return rgb, normalize_pixels(rgb, mean=ip.image_mean, std=ip.image_std)


if __name__ == "__main__":
    sys.exit(main())
