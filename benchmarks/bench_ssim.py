"""SSIM benchmark: what ``ssim_apt`` and ``ssim_uniform`` add to an image, against the PSNR path, same run.

The baseline is the path that already gives ``psnr_apt`` and ``psnr_uniform``
for each selection (aptviz.compute.views.compare_views without SSIM): the model
view, the uniform baseline (Pillow BICUBIC down from the original, NEAREST
back up) and two PSNRs. SSIM adds what aptviz.compute.views.all_views does:
one banded pass over the image that filters the reference once and scores
both views of every selection. Each round times the baseline and the SSIM work in turn, so
the ratio compares times taken under the same load (the machine may be
shared). Target: SSIM adds less than 1.5x the PSNR path.

Cases: the sample photos as they are (small originals), and a 1 MP resized
image from a 1 MP and from a 12 MP original (the original's size only changes
the baseline's BICUBIC resize), each with the selections budget 0.3 and v2 1.0.

    python benchmarks/bench_ssim.py [--repeats 9] [--threads 2] [--cpu-time]

``--cpu-time`` times with the process's CPU time instead of the wall clock
(use it with ``--threads 1`` on a shared machine: other processes' load then
counts less).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aptviz.compute.importance import compute_importance  # noqa: E402
from aptviz.compute.loading import load_image  # noqa: E402
from aptviz.compute.params import RunSpec  # noqa: E402
from aptviz.compute.resize import resize_image  # noqa: E402
from aptviz.compute.selection import select  # noqa: E402
from aptviz.compute.ssim import SsimReference  # noqa: E402
from aptviz.compute.views import compare_views  # noqa: E402

TARGET = 1.5
RUNS = [RunSpec("budget", 0.3), RunSpec("v2", 1.0)]


def cases() -> dict[str, Image.Image]:
    """Original images by name: the sample photos, and the astronaut enlarged to 1 MP and 12 MP."""
    out = {p.stem: load_image(p) for p in sorted((ROOT / "sample_images").glob("*.png"))}
    astronaut = out["astronaut"]
    out["astronaut 1 MP"] = astronaut.resize((1000, 1000), Image.Resampling.BICUBIC)
    out["astronaut 12 MP"] = astronaut.resize((4000, 3000), Image.Resampling.BICUBIC)
    return out


def prepare(original: Image.Image):
    """The resized image and every selection's (masks, tokens): what both paths start from."""
    resized = np.asarray(resize_image(original))
    maps = compute_importance(resized, "entropy", "mean")
    sels = [select(maps, spec, "entropy") for spec in RUNS]
    return resized, [(s.masks, s.tokens) for s in sels]


def psnr_path(original, resized, selections) -> list:
    return [compare_views(original, resized, masks, tokens, with_ssim=False) for masks, tokens in selections]


def ssim_work(resized, views) -> list[float]:
    return SsimReference(resized).scores([image for v in views for image in (v.apt, v.uniform.image)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-time", action="store_true", help="time with process CPU time, not the wall clock")
    args = ap.parse_args(argv)
    clock = time.process_time if args.cpu_time else time.perf_counter
    import cv2

    cv2.setNumThreads(args.threads)
    what = "CPU time" if args.cpu_time else "wall clock"
    print(f"selections per image: {', '.join(s.label for s in RUNS)}; {args.threads} OpenCV threads; {what}")
    print("(each round times the PSNR path, then the SSIM work on its views; ratio = median of per-round ratios)")
    print(f"\n{'image':18s} {'resized':>10s} {'PSNR path':>10s} {'SSIM adds':>10s} {'ratio':>7s} {'target':>7s}")
    verdicts = []
    for name, original in cases().items():
        resized, selections = prepare(original)
        views = psnr_path(original, resized, selections)  # warm-up, and the views SSIM scores
        ssim_work(resized, views)
        base, extra = [], []
        for _ in range(args.repeats):
            t0 = clock()
            psnr_path(original, resized, selections)
            t1 = clock()
            ssim_work(resized, views)
            t2 = clock()
            base.append(t1 - t0)
            extra.append(t2 - t1)
        ratio = statistics.median(e / b for e, b in zip(extra, base))
        verdict = "PASS" if ratio < TARGET else "FAIL"
        verdicts.append(verdict)
        size = f"{resized.shape[1]}x{resized.shape[0]}"
        b_ms, e_ms = statistics.median(base) * 1000, statistics.median(extra) * 1000
        print(f"{name:18s} {size:>10s} {b_ms:8.1f}ms {e_ms:8.1f}ms {ratio:6.2f}x {'< 1.5x':>7s} {verdict}")
    return 0 if all(v == "PASS" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
