"""Benchmark: per-image cost of a large batch of tiny images, at 1,000 against 5,000 (and 10,000) images.

summary.csv/json grow with the batch; rewriting them in full every second made
the per-image cost grow with the number of images (27 ms an image at 1,000,
43 ms at 5,000). Each count runs ``aptviz FOLDER -m v2 -q -j 2`` once on that
many different 56 x 56 PNGs (a fresh output folder) and prints the wall time
per image; the baseline is the smallest count's per-image time in the same
run. Target: every ratio <= 1.2 (flat, up to noise).

    python benchmarks/bench_summary.py [--images 1000,5000,10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cli import aptviz_cmd  # noqa: E402

TARGET = 1.2


def make_images(folder: Path, count: int) -> None:
    """``count`` different 56 x 56 PNGs (noise over a gradient)."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 200, 56, dtype=np.uint8)[None, :, None]
    for i in range(count):
        noise = np.random.default_rng(i).integers(0, 56, (56, 56, 3), dtype=np.uint8)
        Image.fromarray(ramp + noise).save(folder / f"img{i:05d}.png", compress_level=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="1000,5000", help="comma-separated image counts (smallest is the baseline)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    counts = sorted(int(c) for c in args.images.split(","))
    work = Path(tempfile.mkdtemp(prefix="aptviz-bench-summary-"))
    per_image = {}
    try:
        make_images(work / "in", counts[-1])
        names = sorted((work / "in").iterdir())
        for count in counts:
            folder = work / f"in{count}"
            folder.mkdir()
            for p in names[:count]:
                (folder / p.name).symlink_to(p)
            out = work / f"out{count}"
            t0 = time.perf_counter()
            cmd = [*aptviz_cmd(), str(folder), "-m", "v2", "-q", "-j", str(args.workers), "-o", str(out)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            per_image[count] = (time.perf_counter() - t0) / count
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = per_image[counts[0]]
    ok = True
    for count in counts:
        ratio = per_image[count] / base
        good = ratio <= TARGET or count == counts[0]
        ok &= good
        print(f"{count:6d} images  {per_image[count] * 1000:6.1f} ms an image  ratio {ratio:4.2f} "
              f"(target <= {TARGET}) {'PASS' if good else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
