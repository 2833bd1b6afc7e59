"""Entropy-map benchmark on real photos of different texture: aptviz's kernel against a floor, warm.

What it measures: for each photo (the three sample photos and seven of
scikit-image's bundled images: a rocket, the Hubble deep field, a retina, a
stained tissue, grass, gravel, brick), smart-resized at its own size (never
enlarged), the time of ``compute_maps`` (the NumPy entropy kernel: every
scale's per-cell entropy map) against the floor, grayscale plus one
``numpy.bincount`` over the pixels -- the least any entropy computation must
do. The kernel does more than the floor by nature (a histogram per cell at
three scales and an entropy per cell), so the ratio says how close to that
lower bound it runs, not how it compares to other code. The kernel splits
the channels into contiguous planes before the gray products (same bits,
faster); so that the ratio does not flatter it, the same floor with the split
is timed too and its ratio printed below the main one.

Floor and kernel are timed the same way, warm: in each round, for each photo,
each runs ``--inner`` times back to back (after one warm-up call) and its
median counts; the per-photo time is the median over ``--rounds`` rounds.
Both run in one thread by default (``--threads``: aptviz's tiles, torch and
OpenCV's own pool, whose idle threads would otherwise spin on the other
cores and add CPU time the kernel does not need). On a shared machine the
load changes between rounds: the medians absorb most of it, the load average
is printed before and after; ``--clock cpu`` times the process's CPU time
instead of wall time, which leaves out the time spent waiting for a core
(though not the caches shared with other work). Prints each photo's ratio,
then the median and worst ratio (target: median <= 1.5x), and checks the maps bit for bit against
the milestone-4 kernel (tests/entropy_milestone4.py, timed in the same loop:
column ``m4``) and the kernel before issue 21 (tests/entropy_previous.py:
column ``before``), and against the one-hot method of the research code
(docs/pipeline.md §1.3) on one photo. Last, the minor page faults per warm
call, in this process and with the floor, the kernel and the milestone-4
kernel each alone in a fresh process (the state of the C allocator, which the
functions timed before shape, decides whether large temporaries cost a page
fault per 4 kB on every call; a command-line run is a fresh process).

    python benchmarks/bench_entropy.py [--rounds 7] [--inner 5] [--threads 1] [--bins 512] [--clock wall|cpu]
"""


from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aptviz  # noqa: E402
from aptviz.compute.entropy import PAD, compute_maps, set_num_threads  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import entropy_milestone4  # noqa: E402
import entropy_previous  # noqa: E402

TARGET_VS_FLOOR = 1.5


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]


def photos() -> dict[str, np.ndarray]:
    """Real photos of different texture, smart-resized at their own size (as the pipeline does; never enlarged)."""
    import skimage.data as data

    found = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted((ROOT / "sample_images").glob("*.png"))}
    for name in ("rocket", "hubble_deep_field", "retina", "immunohistochemistry", "grass", "gravel", "brick"):
        found[name] = _rgb(getattr(data, name)())
    out = {}
    for name, a in found.items():
        h, w = aptviz.smart_resize(a.shape[0], a.shape[1])
        out[name] = np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BICUBIC))
    return out


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


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def floor_split_baseline(img: np.ndarray, bins=512) -> np.ndarray:
    """The floor with the channels split into contiguous planes first, as the kernel does (same gray bits, faster)."""
    import cv2

    red, green, blue = cv2.split(img)
    gray = red * np.float32(0.2989)
    gray += green * np.float32(0.5870)
    gray += blue * np.float32(0.1140)
    return np.bincount((gray * np.float32(bins / 256)).astype(np.intp).ravel(), minlength=bins)


def warm_times(fn, inner: int, clock=time.perf_counter) -> list[float]:
    """``inner`` back-to-back calls after one warm-up call, in seconds of ``clock``."""
    fn()
    times = []
    for _ in range(inner):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


def warm_rounds(images: dict, fns: dict, rounds: int, inner: int, clock=time.perf_counter) -> tuple[dict, dict]:
    """``({photo: {name: median s}}, {photo: {name: fastest s}})``: every function timed warm the same way.

    The median is over the rounds' medians; the fastest call is the least
    disturbed by other load on a shared machine.
    """
    times = {photo: {name: [] for name in fns} for photo in images}
    fastest = {photo: {name: float("inf") for name in fns} for photo in images}
    for _ in range(rounds):
        for photo, img in images.items():
            for name, fn in fns.items():
                got = warm_times(lambda: fn(img), inner, clock)
                times[photo][name].append(statistics.median(got))
                fastest[photo][name] = min(fastest[photo][name], *got)
    medians = {photo: {name: statistics.median(v) for name, v in per.items()} for photo, per in times.items()}
    return medians, fastest


def faults_per_call(fn, calls: int = 10) -> float:
    """Minor page faults per warm call (Linux; NaN elsewhere)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return float("nan")
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


FRESH = """
import resource, sys, time
import numpy as np
sys.path[:0] = [{root!r}, {tests!r}]
from PIL import Image
import entropy_milestone4
import cv2
from aptviz.compute.entropy import compute_maps, set_num_threads
set_num_threads(1)
cv2.setNumThreads(1)
img = np.asarray(Image.open({path!r}).convert("RGB"))
def floor():
    gray = img[..., 0] * np.float32(0.2989)
    gray += img[..., 1] * np.float32(0.5870)
    gray += img[..., 2] * np.float32(0.1140)
    return np.bincount((gray * np.float32(2)).astype(np.intp).ravel(), minlength=512)
fns = {{"kernel": lambda: compute_maps(img), "m4": lambda: entropy_milestone4.compute_maps(img), "floor": floor}}
fn = fns[{name!r}]
for _ in range(3):
    fn()
f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
for _ in range(20):
    fn()
f1, t1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
print(f"  {{{name!r}:7s}} {{(t1 - t0) / 20 * 1e3:6.2f}} ms CPU, {{(f1 - f0) / 20:6.0f}} page faults a call")
"""


def fresh_process_report(img: np.ndarray) -> str:
    """Kernel, milestone-4 kernel and floor, each alone in a fresh process (no torch, nothing run before), one photo.

    The C allocator's state depends on what ran before: in a fresh process
    (as in a command-line run) large temporaries freed tile after tile can
    cost a page fault per 4 kB each time they are taken again.
    """
    import subprocess
    import tempfile

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "photo.png")
        Image.fromarray(img).save(path)
        for name in ("floor", "kernel", "m4"):
            code = FRESH.format(root=str(ROOT), tests=str(ROOT / "tests"), path=path, name=name)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
            lines.append(done.stdout.rstrip() or done.stderr.strip()[-300:])
    return "\n".join(lines)


def peak_mb(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bins", type=int, default=512)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or the process's CPU time (steadier on a shared machine: time spent waiting for "
                         "a core is left out; all threads' time counts)")  # fmt: skip
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    bins = args.bins
    images = photos()
    print(f"{len(images)} photos, {args.threads} thread(s), {bins} bins, "
          f"{args.rounds} rounds x {args.inner} warm calls, {args.clock} clock")  # fmt: skip
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")
    fns = {
        "floor": lambda img: floor_baseline(img, bins),
        "floor_split": lambda img: floor_split_baseline(img, bins),
        "kernel": lambda img: compute_maps(img, bins=bins),
        "m4": lambda img: entropy_milestone4.compute_maps(img, bins=bins, threads=args.threads),
        "before": lambda img: entropy_previous.compute_maps(img, bins=bins, threads=args.threads),
    }
    med, fast = warm_rounds(images, fns, args.rounds, args.inner, CLOCKS[args.clock])
    print("load average after:  " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\n{'photo':22s} {'size':>9s} {'floor':>8s} {'kernel':>8s} {'ratio':>6s} {'fastest':>8s} "
          f"{'m4':>6s} {'before':>7s}")  # fmt: skip
    ratios, best = {}, {}
    for photo, t in med.items():
        h, w = images[photo].shape[:2]
        ratios[photo] = t["kernel"] / t["floor"]
        best[photo] = fast[photo]["kernel"] / fast[photo]["floor"]
        print(f"{photo:22s} {w:4d}x{h:<4d} {t['floor'] * 1e3:6.2f}ms {t['kernel'] * 1e3:6.2f}ms "
              f"{ratios[photo]:5.2f}x {best[photo]:7.2f}x {t['m4'] / t['floor']:5.2f}x "
              f"{t['before'] / t['floor']:6.2f}x")  # fmt: skip
    median, worst = statistics.median(ratios.values()), max(ratios.values())
    verdict = "PASS" if median <= TARGET_VS_FLOOR else "FAIL"
    print(f"\nkernel / floor (medians): median {median:.2f}x (target <= {TARGET_VS_FLOOR}x: {verdict}), "
          f"worst {worst:.2f}x ({max(ratios, key=ratios.get)})")  # fmt: skip
    print(f"kernel / floor (fastest calls): median {statistics.median(best.values()):.2f}x, "
          f"worst {max(best.values()):.2f}x ({max(best, key=best.get)})")  # fmt: skip
    split = {p: med[p]["kernel"] / med[p]["floor_split"] for p in med}
    floors = statistics.median(med[p]["floor_split"] / med[p]["floor"] for p in med)
    print(f"kernel / floor with the channels split first (that floor: {floors:.2f}x the floor's time): median "
          f"{statistics.median(split.values()):.2f}x, worst {max(split.values()):.2f}x ({max(split, key=split.get)})")
    m4 = statistics.median(med[p]["m4"] / med[p]["floor"] for p in med)
    before = statistics.median(med[p]["before"] / med[p]["floor"] for p in med)
    speedup = statistics.median(med[p]["m4"] / med[p]["kernel"] for p in med)
    print(f"milestone-4 kernel / floor (medians): median {m4:.2f}x; milestone-4 / kernel: median {speedup:.2f}x")
    print(f"kernel before issue 21 / floor (medians): median {before:.2f}x")

    identical = all(
        np.array_equal(old.compute_maps(img, bins=bins)[ps].view(np.uint32), m.view(np.uint32))
        for img in images.values()
        for ps, m in compute_maps(img, bins=bins).items()
        for old in (entropy_milestone4, entropy_previous)
    )
    one = images["astronaut"]
    a, b = aptviz.entropy_maps(one), onehot_entropy_maps(one)
    off = max(float((a[ps].double() - b[ps].double()).abs().max()) for ps in a)
    print(f"maps bit-identical to the milestone-4 and the pre-issue-21 kernels on every photo: {identical}")
    print(f"max |aptviz - one-hot| over the astronaut's cells: {off:.2e} bits")
    faults = {
        name: statistics.median(faults_per_call(lambda: f(img)) for img in images.values()) for name, f in fns.items()
    }
    print("minor page faults per warm call in this process (median over the photos): "
          + ", ".join(f"{name} {n:.0f}" for name, n in faults.items()))  # fmt: skip
    size = f"{images['astronaut'].shape[1]}x{images['astronaut'].shape[0]}"
    print(f"astronaut ({size}), each alone in a fresh process, 20 warm calls:")
    print(fresh_process_report(images["astronaut"]))
    peak = peak_mb(lambda: aptviz.entropy_maps(images["retina"]))
    print(f"peak memory added on the retina ({images['retina'].shape[1]}x{images['retina'].shape[0]}): {peak:.1f} MB")
    return 0 if identical and off < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
