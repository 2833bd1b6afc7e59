"""Benchmark: per-image cost of a large batch of tiny images, at 1,000 against 5,000 (and 10,000) images.

summary.csv/json grow with the batch; rewriting them in full every second made
the per-image cost grow with the number of images (27 ms an image at 1,000,
43 ms at 5,000).

Default (``--summary-only``): the summary alone, as the runner drives it --
one ``add`` and one throttled ``write`` per image, into a real folder -- with
each image's own work simulated as 27 ms on the summary's clock (real time
spent in the summary is added to it). It prints the summary's real time per
image; the baseline is the smallest count's in the same run. This isolates
the summary from the machine's load.

``--full``: ``aptviz FOLDER -m v2 -q -j 2`` once per count on that many
different 56 x 56 PNGs, wall time per image (needs an idle machine).

Target: every ratio <= 1.2 (flat, up to noise).

    python benchmarks/bench_summary.py [--images 1000,5000,10000] [--full] [--workers 2]
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


IMAGE_SECONDS = 0.027
"""Simulated work of one tiny image (what the issue measured at 1,000 images)."""


def _result(i: int):
    """The JobResult of image ``i``: one v2 selection, as a tiny image gives."""
    from aptviz.compute.params import Params
    from aptviz.compute.stats import ImageInfo, ImageStats, SelectionStats
    from aptviz.errors import Status
    from aptviz.runs.results import JobResult

    stats = ImageStats(
        aptviz_version="0",
        image=ImageInfo(f"in/img{i:05d}.png", (56, 56), (56, 56)),
        params=Params(),
        grid={14: (4, 4), 28: (2, 2), 56: (1, 1)},
        entropy={},
        selections=[SelectionStats("v2", 1.0, None, {14: 8, 28: 1, 56: 0}, 9, 16, 9 / 16, None)],
    )
    return JobResult(Path(stats.image.path), f"img{i:05d}", Status.done, stats=stats)


def summary_seconds(count: int, folder: Path) -> float:
    """Real seconds the summary spends per image over a run of ``count`` images (27 ms of work each)."""
    import aptviz.runs.summary as summary_mod

    results = [_result(i) for i in range(count)]
    spent = 0.0
    simulated = [0.0]
    real_clock = time.monotonic
    summary_mod.time.monotonic = lambda: simulated[0] + spent + (real_clock() - started)
    try:
        summary = summary_mod.Summary(folder, [14, 28, 56], order=[str(r.path) for r in results])
        for r in results:
            simulated[0] += IMAGE_SECONDS
            started = real_clock()
            summary.add(r)
            summary.write()
            spent += real_clock() - started
        started = real_clock()
        summary.write(force=True)
        spent += real_clock() - started
    finally:
        summary_mod.time.monotonic = real_clock
    return spent / count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="1000,5000,10000", help="comma-separated counts (smallest: the baseline)")
    ap.add_argument("--full", action="store_true", help="time whole aptviz runs instead of the summary alone")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    counts = sorted(int(c) for c in args.images.split(","))
    if not args.full:
        per_image = {}
        with tempfile.TemporaryDirectory() as tmp:
            for count in counts:
                (Path(tmp) / str(count)).mkdir()
                per_image[count] = summary_seconds(count, Path(tmp) / str(count))
        return report(counts, per_image, "summary time")
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
    return report(counts, per_image, "wall time")


def report(counts: list[int], per_image: dict, what: str) -> int:
    """Print per-image times and their ratios to the smallest count; 0 when every ratio meets the target."""
    base = per_image[counts[0]]
    ok = True
    for count in counts:
        ratio = per_image[count] / base
        good = ratio <= TARGET or count == counts[0]
        ok &= good
        print(f"{count:6d} images  {what} {per_image[count] * 1000:7.3f} ms an image  ratio {ratio:5.2f} "
              f"(target <= {TARGET}) {'PASS' if good else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
