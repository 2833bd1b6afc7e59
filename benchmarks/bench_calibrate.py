"""Benchmark: ``aptviz calibrate`` against one plain v2 run over the same folder (target <= 1.5).

Both commands run on the 12 camera-sized JPEGs of bench_cli.py with the same
number of workers; calibrate computes the maps once per image and evaluates
the retention step function exactly.

    python benchmarks/bench_calibrate.py [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cli import aptviz_cmd, make_inputs, wall  # noqa: E402

TARGET = 1.5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    cmd = aptviz_cmd()
    work = Path(tempfile.mkdtemp(prefix="aptviz-bench-cal-"))
    try:
        folder = work / "in"
        make_inputs(folder)
        j = ["--workers", str(args.workers)]
        plain = cmd + [str(folder), "-m", "v2", "-a", "1.0", "--overwrite", "-q", "-o", str(work / "plain")] + j
        cal = cmd + ["calibrate", str(folder), "-m", "v2", "--target", "0.3", "-q", "-o", str(work / "cal")] + j
        t_plain = wall(plain, args.repeats)
        t_cal = wall(cal, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = t_cal / t_plain
    ok = ratio <= TARGET
    print(f"{'aptviz calibrate -m v2 --target 0.3 (12 images)':52s} {t_cal:7.3f}s")
    print(f"{'aptviz -m v2 -a 1.0 (same folder, all outputs)':52s} {t_plain:7.3f}s")
    print(f"ratio {ratio:.2f} (target <= {TARGET}) {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
