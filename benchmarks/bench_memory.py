"""Memory benchmark: the estimate of aptviz.runs.memory against the measured peak of real runs.

Each option set runs ``aptviz PHOTO -o TMP -j 1 ...`` as a separate process
on a 12-megapixel photo (the sample photos enlarged, with noise, written as
PNG; the 48 MP case as JPEG) and reads its peak resident memory from
``getrusage(RUSAGE_CHILDREN)``. The baseline is the same command's estimate
for a decode of exactly that photo (``aptviz.runs.memory.worker_bytes``); the
ratio measured/estimate must stay <= 1 (the estimate is an upper bound) and
should not be far below (a useless bound refuses good options). The worst-case
estimate -- what ``--max-memory`` is checked against, with the decode of the
largest file the run accepts -- is printed beside it.

    python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aptviz.compute.params import Params  # noqa: E402
from aptviz.runs.memory import format_bytes, plan, worker_bytes  # noqa: E402

CASES = [
    ("defaults, 12 MP PNG", "p12.png", []),
    ("defaults, 12 MP 16-bit gray PNG", "g12.png", []),
    ("--patch-size 1", "p12.png", ["--patch-size", "1"]),
    ("--patch-size 2 --bins 4096", "p12.png", ["--patch-size", "2", "--bins", "4096"]),
    ("--min/max-pixels 24000000", "p12.png", ["--min-pixels", "24000000", "--max-pixels", "24000000"]),
    ("48 MP JPEG, 3 methods, --save-maps", "p48.jpg", ["-m", "v1", "-m", "v2", "-m", "budget:0.3", "--save-maps"]),
    (
        "--importance upsample-mse, 12 MP resized",
        "p12.png",
        ["--importance", "upsample-mse", "-m", "budget:0.3", "--min-pixels", "12000000", "--max-pixels", "12000000"],
    ),
]
QUICK = {0, 2, 3}


def aptviz_cmd() -> list[str]:
    script = Path(sys.executable).with_name("aptviz")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aptviz"]


def make_photo(path: Path, height: int, width: int) -> Path:
    """A sample photo enlarged to ``height x width`` with noise (so PNG/JPEG do real work)."""
    base = Image.open(ROOT / "sample_images" / "astronaut.png").convert("RGB").resize((width, height))
    if path.name.startswith("g"):  # 16-bit gray: scaled to 8 bits while loading
        arr16 = np.random.default_rng(0).integers(0, 65536, (height, width)).astype(np.uint16)
        Image.fromarray(arr16).save(path)
        return path
    noise = np.random.default_rng(0).integers(0, 40, (height, width, 3), dtype=np.uint8)
    arr = (np.asarray(base) // 2 + noise).astype(np.uint8)
    if path.suffix == ".png":
        Image.fromarray(arr).save(path, compress_level=1)
    else:
        Image.fromarray(arr).save(path, quality=90)
    return path


def params_of(args: list[str]) -> Params:
    names = {"--patch-size": "patch_size", "--bins": "bins", "--min-pixels": "min_pixels", "--max-pixels": "max_pixels"}
    values = {names[a]: int(b) for a, b in zip(args, args[1:]) if a in names}
    for a, b in zip(args, args[1:]):
        if a == "--importance":
            values["importance"] = b
    return Params(**values)


def measure(cmd: list[str]) -> int:
    """Peak RSS in bytes of one finished child (run alone: RUSAGE_CHILDREN's max is this child's)."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True).stdout
    rc, kib = out.split()
    if rc != "0":
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}")
    return int(kib) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the three 12 MP option sets")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = {"p12.png": (3000, 4000), "g12.png": (3000, 4000), "p48.jpg": (6000, 8000)}
        print(f"{'option set':38} {'measured':>10} {'estimate':>10} {'ratio':>6} {'worst case':>11}  target")
        for i, (label, photo, extra) in enumerate(CASES):
            if args.quick and i not in QUICK:
                continue
            path = tmp / photo
            if not path.exists():
                make_photo(path, *photos[photo])
            params = params_of(extra)
            pixels = photos[photo][0] * photos[photo][1]
            estimate = sum(worker_bytes(params, pixels, threads, "--save-maps" in extra).values())
            worst = plan(params, workers=1, max_memory=1 << 50, jobs=1, save_maps="--save-maps" in extra).total
            peak = measure([*aptviz_cmd(), str(path), "-o", str(tmp / f"out{i}"), "-j", "1", "-q", *extra])
            ratio = peak / estimate
            good = ratio <= 1.0
            ok &= good
            print(
                f"{label:38} {format_bytes(peak):>10} {format_bytes(estimate):>10} {ratio:6.2f} "
                f"{format_bytes(worst):>11}  <= 1 {'PASS' if good else 'FAIL'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
