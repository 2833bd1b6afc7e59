"""Entropy-map benchmark: aptviz.entropy_maps against three baselines, same run.

(a) the one-hot method of the original research code (docs/pipeline.md §1.3): unfold each
    scale into cells, build a (cells x pixels-per-cell x bins) one-hot tensor
    and sum it into histograms;
(b) the floor: grayscale conversion plus one numpy.bincount over the pixels
    (target: entropy_maps <= 1.5x the floor);
(c) "before": the previous NumPy kernel (tests/entropy_previous.py, kept
    frozen), with the same threads.

aptviz, the floor and "before" are timed in interleaved rounds (so that load
from elsewhere on a shared machine hits them alike); the medians count, and
the same rounds are also timed in CPU seconds with one thread (steadier on a
loaded machine). Prints the load average, the ratios with their targets, and
the peak memory that entropy_maps adds at several sizes (target: < 64 MB at
1 MP, linear growth).

    python benchmarks/bench_entropy.py [--repeats 15] [--onehot-repeats 3] [--bins 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aptviz  # noqa: E402
from aptviz.compute.entropy import PAD, compute_maps, set_num_threads  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import entropy_previous  # noqa: E402

TARGET_VS_ONEHOT = 100.0
TARGET_VS_FLOOR = 1.5
TARGET_MEMORY_MB = 64.0


def photo(megapixels: float) -> np.ndarray:
    """A real photo (astronaut) enlarged and smart-resized to about `megapixels`."""
    src = Image.open(ROOT / "sample_images" / "astronaut.png").convert("RGB")
    side = int(round((megapixels * 1e6) ** 0.5))
    big = src.resize((side, side), Image.Resampling.BICUBIC)
    max_pixels = max(28 * 28 * 1280, int(megapixels * 1e6 * 1.05))
    h, w = aptviz.smart_resize(side, side, max_pixels=max_pixels)
    return np.asarray(big.resize((w, h), Image.Resampling.BICUBIC))


def onehot_entropy_maps(img: np.ndarray, patch_size=14, num_scales=3, bins=512) -> dict[int, torch.Tensor]:
    """The original research code's method, re-expressed: one-hot histograms per cell."""
    t = torch.from_numpy(np.array(img)).to(torch.float32)
    gray = t[..., 0] * 0.2989 + t[..., 1] * 0.5870 + t[..., 2] * 0.1140
    h, w = gray.shape
    out = {}
    for i in range(num_scales):
        ps = patch_size * 2**i
        rows, cols = -(-h // ps), -(-w // ps)
        padded = F.pad(gray, (0, cols * ps - w, 0, rows * ps - h), value=0.0)
        cells = padded.unfold(0, ps, ps).unfold(1, ps, ps).reshape(rows * cols, ps * ps)
        idx = torch.clamp((cells * bins / 256).floor().long(), max=bins - 1)
        onehot = torch.zeros(rows * cols, ps * ps, bins, dtype=torch.float32)
        onehot.scatter_(2, idx.unsqueeze(-1), 1.0)
        hist = onehot.sum(dim=1)
        del onehot
        p = hist / (ps * ps)
        ent = -(p * torch.log2(p + 1e-10)).sum(dim=1).reshape(rows, cols)
        if rows * ps > h:
            ent[-1, :] = PAD
        if cols * ps > w:
            ent[:, -1] = PAD
        out[ps] = ent
    return out


def floor_baseline(img: np.ndarray, bins=512) -> np.ndarray:
    """Grayscale plus one bincount: the least any entropy computation must do."""
    gray = img[..., 0] * np.float32(0.2989)
    gray += img[..., 1] * np.float32(0.5870)
    gray += img[..., 2] * np.float32(0.1140)
    return np.bincount((gray * np.float32(bins / 256)).astype(np.intp).ravel(), minlength=bins)


def interleaved(fns: dict, repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Median time of every function, timed in ``repeats`` rounds that run each once (after a warm-up)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_mb(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--onehot-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bins", type=int, default=512, help="bin count of the aptviz/before/floor comparison")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)

    img = photo(1.0)
    h, w = img.shape[:2]
    bins, threads = args.bins, args.threads
    print(f"image: astronaut enlarged and smart-resized to {w}x{h} ({w * h / 1e6:.2f} MP), {threads} threads, {bins} bins")
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")

    fns = {
        "ours": lambda: aptviz.entropy_maps(img, bins=bins),
        "floor": lambda: floor_baseline(img, bins),
        "before": lambda: entropy_previous.compute_maps(img, bins=bins, threads=threads),
    }
    wall = interleaved(fns, args.repeats)
    set_num_threads(1)
    fns["before"] = lambda: entropy_previous.compute_maps(img, bins=bins, threads=1)
    cpu = interleaved(fns, args.repeats, clock=time.process_time)
    set_num_threads(threads)
    ours, floor = wall["ours"], wall["floor"]
    onehot = median_time(lambda: onehot_entropy_maps(img), args.onehot_repeats)
    print("load average after:  " + " ".join(f"{x:.2f}" for x in os.getloadavg()))

    a, b = aptviz.entropy_maps(img), onehot_entropy_maps(img)
    worst = max(float((a[ps].double() - b[ps].double()).abs().max()) for ps in a)
    before = entropy_previous.compute_maps(img, bins=bins)
    now = compute_maps(img, bins=bins)
    identical = all(np.array_equal(before[ps].view(np.uint32), now[ps].view(np.uint32)) for ps in now)

    rows = [
        ("aptviz.entropy_maps", ours, "-", "-", ""),
        (
            "(a) one-hot (research code)",
            onehot,
            f"{onehot / ours:.0f}x slower",
            f">= {TARGET_VS_ONEHOT:.0f}x",
            "PASS" if onehot / ours >= TARGET_VS_ONEHOT else "FAIL",
        ),
        (
            "(b) floor: gray + bincount",
            floor,
            f"{ours / floor:.2f}x of floor",
            f"<= {TARGET_VS_FLOOR}x",
            "PASS" if ours / floor <= TARGET_VS_FLOOR else "FAIL",
        ),
        ("(c) before (previous kernel)", wall["before"], f"{wall['before'] / floor:.2f}x of floor", "", ""),
    ]
    print(f"\n{'method':30s} {'median':>10s} {'ratio':>18s} {'target':>9s}")
    for name, t, ratio, target, verdict in rows:
        print(f"{name:30s} {t * 1000:8.1f}ms {ratio:>18s} {target:>9s} {verdict}")
    print(
        f"wall, {threads} threads:  before {wall['before'] / floor:.2f}x of floor -> after {ours / floor:.2f}x "
        f"({wall['before'] / ours:.2f}x faster)"
    )
    print(
        f"CPU time, 1 thread: floor {cpu['floor'] * 1000:.1f} ms, before {cpu['before'] * 1000:.1f} ms "
        f"({cpu['before'] / cpu['floor']:.2f}x), after {cpu['ours'] * 1000:.1f} ms ({cpu['ours'] / cpu['floor']:.2f}x)"
    )
    print(f"maps bit-identical to the previous kernel: {identical}")
    print(f"max |aptviz - one-hot| over all cells: {worst:.2e} bits")

    print(f"\n{'size':>8s} {'pixels':>10s} {'peak added':>11s} {'MB per MP':>10s}")
    verdicts = [r[4] for r in rows if r[4]] + ["PASS" if identical else "FAIL"]
    for mp in (0.25, 1.0, 4.0):
        im = photo(mp)
        peak = peak_mb(lambda im=im: aptviz.entropy_maps(im))
        px = im.shape[0] * im.shape[1]
        note = ""
        if mp == 1.0:
            note = f"target < {TARGET_MEMORY_MB:.0f} MB: {'PASS' if peak < TARGET_MEMORY_MB else 'FAIL'}"
            verdicts.append("PASS" if peak < TARGET_MEMORY_MB else "FAIL")
        print(f"{mp:6.2f}MP {px:10d} {peak:9.1f}MB {peak / (px / 1e6):10.1f} {note}")
    return 0 if all(v == "PASS" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
