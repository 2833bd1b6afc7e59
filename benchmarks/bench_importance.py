"""Importance-measure benchmark: every measure and aggregate against one floor, same run.

The floor is bench_entropy.py's: grayscale conversion plus one numpy.bincount
over the pixels (the least any per-pixel measure must do). Each measure runs
on the CPU path the command line uses (NumPy + OpenCV, no torch), on the same
1-megapixel photo. Each round times the floor and every measure in turn, so a
ratio compares times taken under the same load (the machine may be shared);
prints median times and the median of each measure's per-round ratio to the
floor (target: within 4x), and optionally the torch path (what --device cuda runs,
here on the CPU) for comparison.

    python benchmarks/bench_importance.py [--repeats 15] [--threads 2] [--torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_entropy import floor_baseline, photo  # noqa: E402

from aptviz.compute.entropy import set_num_threads  # noqa: E402
from aptviz.compute.importance import compute_importance  # noqa: E402

TARGET_VS_FLOOR = 4.0
CASES = [
    ("entropy", None),
    ("laplacian", "mean"),
    ("laplacian", "max"),
    ("laplacian", "std"),
    ("upsample-mse", "mean"),
    ("upsample-mse", "max"),
    ("upsample-mse", "std"),
]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Times of every function, run in turn in each round, so that all see the same load."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", action="store_true", help="also time the torch path on the CPU")
    args = ap.parse_args(argv)
    set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)

    img = photo(1.0)
    h, w = img.shape[:2]
    print(f"image: astronaut enlarged and smart-resized to {w}x{h} ({w * h / 1e6:.2f} MP), {args.threads} threads")
    fns = {"floor": lambda: floor_baseline(img)}
    for measure, aggregate in CASES:
        name = measure if aggregate is None else f"{measure} ({aggregate})"
        fns[name] = lambda m=measure, a=aggregate: compute_importance(img, m, a or "mean")
    times = interleaved(fns, args.repeats)
    floor = statistics.median(times["floor"])
    print("(each round times the floor and every measure in turn; ratio = median over rounds of time / floor)")
    print(f"\n{'measure':26s} {'median':>10s} {'vs floor':>9s} {'target':>8s}")
    print(f"{'floor: gray + bincount':26s} {floor * 1000:8.1f}ms {'1.00x':>9s}")
    verdicts = []
    for name in list(fns)[1:]:
        ratio = statistics.median(t / f for t, f in zip(times[name], times["floor"]))
        verdict = "PASS" if ratio <= TARGET_VS_FLOOR else "FAIL"
        verdicts.append(verdict)
        print(f"{name:26s} {statistics.median(times[name]) * 1000:8.1f}ms {ratio:8.2f}x {'<= 4x':>8s} {verdict}")
    if args.torch:
        import torch

        torch.set_num_threads(args.threads)
        print("\ntorch path on the CPU (what --device cuda runs), for comparison:")
        for measure, aggregate in CASES[1:]:
            t = median_time(
                lambda m=measure, a=aggregate: compute_importance(img, m, a, backend="torch"), max(3, args.repeats // 3)
            )
            print(f"{measure + ' (' + aggregate + ')':26s} {t * 1000:8.1f}ms {t / floor:8.2f}x")
    return 0 if all(v == "PASS" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
