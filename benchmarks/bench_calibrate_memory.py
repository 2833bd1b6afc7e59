"""Memory benchmark: peak of ``aptviz calibrate`` over 1,200 and 10,000 images against its estimate.

Each count runs ``aptviz calibrate FOLDER --max-pixels 50176 -j 1`` as a
separate process on synthetic 224 x 224 JPEGs (textured, each different) and
reads its peak resident memory from ``getrusage(RUSAGE_CHILDREN)``. The
baseline is the estimate of :func:`aptviz.runs.memory.calibrate_bytes` for
that many images, with a decode of exactly those files: measured / estimate
must stay <= 1. The per-image growth (peak at the largest count minus peak at
the smallest, over the extra images) is printed beside it; before the curve
was evaluated step by step it grew with images x steps (3 GB at 1,200 images,
then a MemoryError).

    python benchmarks/bench_calibrate_memory.py [--images 1200,10000] [--statistic median]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_memory import aptviz_cmd, measure  # noqa: E402

from aptviz.compute.params import Params  # noqa: E402
from aptviz.runs.memory import calibrate_bytes, format_bytes  # noqa: E402

SIDE = 224


def make_images(folder: Path, count: int) -> None:
    """``count`` different textured 224 x 224 JPEGs (gradients, flat areas and noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    for i in range(count):
        rng = np.random.default_rng(i)
        img = np.stack([xx * (i % 7 + 1) % 256, yy * (i % 5 + 1) % 256, np.full_like(xx, i % 256)], axis=-1)
        box = rng.integers(0, SIDE - 64, 2)
        img[box[0] : box[0] + 64, box[1] : box[1] + 64] = rng.integers(0, 256, (64, 64, 3))
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img{i:05d}.jpg", quality=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="1200,10000", help="comma-separated image counts")
    ap.add_argument("--statistic", default="median", choices=["mean", "median"])
    args = ap.parse_args(argv)
    counts = sorted(int(c) for c in args.images.split(","))
    params = Params(max_pixels=SIDE * SIDE)
    ok = True
    peaks = []
    print(f"{'images':>8} {'measured':>10} {'estimate':>10} {'ratio':>6}  target")
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            folder = Path(tmp) / f"in{count}"
            make_images(folder, count)
            cmd = [*aptviz_cmd(), "calibrate", str(folder), "--max-pixels", str(SIDE * SIDE), "-j", "1",
                   "--statistic", args.statistic, "--target", "0.3", "-q", "-o", str(Path(tmp) / f"out{count}")]  # fmt: skip
            peak = measure(cmd)
            estimate = sum(calibrate_bytes(params, count, 1, SIDE * SIDE).values())
            good = peak <= estimate
            ok &= good
            peaks.append(peak)
            print(f"{count:8d} {format_bytes(peak):>10} {format_bytes(estimate):>10} {peak / estimate:6.2f}  <= 1 "
                  f"{'PASS' if good else 'FAIL'}")  # fmt: skip
    if len(counts) > 1:
        grow = (peaks[-1] - peaks[0]) / (counts[-1] - counts[0])
        print(f"growth {grow / 1024:.1f} KB an image between {counts[0]} and {counts[-1]} images")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
