"""APT image processor against transformers' own Qwen2-VL image processor, same images, same run.

Both processors get the same PIL images (the three sample photos at their own
size, and the same photos enlarged to 1600x1200, which Qwen2-VL resizes to
about one megapixel) and return NumPy arrays. Each pass of the APT processor
(budget 0.3, the recommended setting; v2 and v1 are timed too) is timed right
after a pass of transformers' ``Qwen2VLImageProcessorPil``; the ratio reported
is the median of these paired ratios (robust on a shared machine), with the
median wall and CPU times beside it. APT's entropy runs on one thread by
default, as transformers' processor does, so both get the same resources.
Target: APT costs at most 2.0x transformers' processor.

Also prints where the APT processor's extra time goes (entropy maps,
selection, packing the rows) for one 1 MP image.

    python benchmarks/bench_qwen2vl.py [--repeats 15] [--threads 1]
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

from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

from aptviz.compute.entropy import compute_maps, get_num_threads, set_num_threads  # noqa: E402
from aptviz.compute.packing import normalize_pixels, pack_selection  # noqa: E402
from aptviz.compute.resize import resize_image  # noqa: E402
from aptviz.compute.selection import select_patches  # noqa: E402
from aptviz.qwen2vl import APTQwen2VLImageProcessor  # noqa: E402

TARGET = 2.0
NAMES = ("astronaut", "chelsea", "coffee")


def photos(size: tuple[int, int] | None) -> list[Image.Image]:
    out = []
    for name in NAMES:
        img = Image.open(ROOT / "sample_images" / f"{name}.png").convert("RGB")
        out.append(img if size is None else img.resize(size, Image.Resampling.BICUBIC))
    return out


def paired(baseline, candidate, repeats: int) -> dict[str, float]:
    """Two callables timed alternately (after one warm-up each): median wall and CPU seconds, median ratio."""
    wall = {"base": [], "cand": []}
    cpu = {"base": [], "cand": []}
    for i in range(repeats + 1):
        for key, fn in (("base", baseline), ("cand", candidate)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if i:
                wall[key].append(time.perf_counter() - w0)
                cpu[key].append(time.process_time() - c0)
    ratios = [c / b for b, c in zip(wall["base"], wall["cand"])]
    cpu_ratios = [c / b for b, c in zip(cpu["base"], cpu["cand"])]
    return {
        "base": statistics.median(wall["base"]),
        "cand": statistics.median(wall["cand"]),
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
    }


def stages(img: Image.Image, repeats: int) -> dict[str, float]:
    """Median ms of each APT step on one image (outside the processor)."""
    rgb = np.asarray(resize_image(img))
    pixels = normalize_pixels(rgb)
    maps = compute_maps(rgb)
    sel = select_patches(maps, "budget", alpha=0.3)
    steps = {
        "entropy maps": lambda: compute_maps(rgb),
        "selection (budget 0.3)": lambda: select_patches(maps, "budget", alpha=0.3),
        "packing the rows": lambda: pack_selection(pixels, sel.masks),
    }
    out = {}
    for name, fn in steps.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * statistics.median(times)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="entropy threads (default 1, as transformers' processor)")
    args = ap.parse_args(argv)
    set_num_threads(args.threads)
    ref = Qwen2VLImageProcessorPil()
    apt = {
        "budget 0.3": APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3),
        "v2 1.0": APTQwen2VLImageProcessor(patch_selection_method="v2", alpha=1.0),
        "v1 3,2": APTQwen2VLImageProcessor(patch_selection_method="v1"),
    }
    print(f"entropy threads: {get_num_threads()}")
    print(f"{'images':<28} {'selection':<11} {'transformers':>13} {'APT':>10} {'ratio':>6} {'CPU ratio':>9}")
    worst = 0.0
    for label, size in (("3 sample photos (own size)", None), ("3 photos 1600x1200 (~1 MP)", (1600, 1200))):
        imgs = photos(size)
        for name, proc in apt.items():
            t = paired(lambda imgs=imgs: ref(imgs), lambda p=proc, imgs=imgs: p(imgs), args.repeats)
            worst = max(worst, t["ratio"])
            print(
                f"{label:<28} {name:<11} {1e3 * t['base']:>10.1f} ms {1e3 * t['cand']:>7.1f} ms"
                f" {t['ratio']:>6.2f} {t['cpu_ratio']:>9.2f}"
            )
    print("\nAPT's own steps on one ~1 MP photo (median ms):")
    for name, ms in stages(photos((1600, 1200))[0], args.repeats).items():
        print(f"  {name:<24} {ms:7.1f}")
    verdict = "OK" if worst <= TARGET else "OVER TARGET"
    print(f"\nworst ratio (every selection and size): {worst:.2f}x  (target <= {TARGET}x)  {verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
