"""Whole-command benchmark: the aptviz command against baselines measured in the same run.

1. one image with all outputs  vs  python -c "import torch"         (target <= 1.6)
2. aptviz --help               vs  python -c "import typer, rich"   (target <= 1.3;
   the two are timed in turn, 3x the repeats, so that load hits both alike)
3. a 12-image sweep, 2 workers: time per image  vs  Pillow decoding +
   bicubic resizing + JPEG-encoding the same image                   (target <= 6)

The images are the three sample photos enlarged to 1600x1200 JPEGs (a
typical camera-sized input), four copies each.

On a shared machine the wall times swing with the load; the sweep is also
timed in CPU seconds (its processes' user + system time per image, against the
Pillow floor's CPU time): that ratio divided by the 2 workers is what the wall
ratio comes to on an idle 2-core machine, less the run's serial part.

    python benchmarks/bench_cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import compileall
import io
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aptviz.compute.resize import smart_resize  # noqa: E402

TARGETS = {"single": 1.6, "help": 1.3, "sweep": 6.0}


def aptviz_cmd() -> list[str]:
    script = Path(sys.executable).with_name("aptviz")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aptviz"]


def wall(cmd: list[str], repeats: int, cwd=None) -> float:
    """Median wall time of a command (after one warm-up run)."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(cmds: list[list[str]], repeats: int) -> list[float]:
    """Median wall time of each command, run in turn ``repeats`` times (after one warm-up round)."""
    times: list[list[float]] = [[] for _ in cmds]
    for i in range(repeats + 1):
        for cmd, out in zip(cmds, times):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if i:
                out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def make_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        img = (
            Image.open(ROOT / "sample_images" / f"{name}.png")
            .convert("RGB")
            .resize((1600, 1200), Image.Resampling.BICUBIC)
        )
        for i in range(4):
            p = folder / f"{name}_{i}.jpg"
            img.save(p, quality=92)
            paths.append(p)
    return paths


def pillow_baseline(paths: list[Path]) -> float:
    """Seconds per image: decode, bicubic resize to the smart_resize size, JPEG-encode."""
    t0 = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        h, w = smart_resize(rgb.height, rgb.width)
        small = rgb.resize((w, h), Image.Resampling.BICUBIC)
        small.save(io.BytesIO(), format="JPEG", quality=95)
    return (time.perf_counter() - t0) / len(paths)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    cmd = aptviz_cmd()
    # bytecode as an install has it: with PYTHONDONTWRITEBYTECODE set, a source edited since the last
    # compile would otherwise be compiled again on every start (~20 ms of --help)
    compileall.compile_dir(ROOT / "aptviz", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="aptviz-bench-"))
    try:
        inputs = make_inputs(work / "in")
        py = sys.executable

        single_cmd = cmd + [
            str(inputs[0]),
            "-m",
            "v1",
            "-m",
            "v2",
            "-m",
            "budget",
            "-a",
            "0.3",
            "--save-maps",
            "--overwrite",
            "-q",
            "-o",
            str(work / "single"),
        ]
        t_single = wall(single_cmd, args.repeats)
        t_torch = wall([py, "-c", "import torch"], args.repeats)

        t_help, t_typer = interleaved([cmd + ["--help"], [py, "-c", "import typer, rich"]], 3 * args.repeats)

        sweep_cmd = cmd + [str(work / "in"), "--workers", "2", "--overwrite", "-q", "-o", str(work / "sweep")]
        cpu0 = _children_cpu()
        t_sweep = wall(sweep_cmd, max(1, args.repeats // 2)) / len(inputs)
        cpu_sweep = (_children_cpu() - cpu0) / (max(1, args.repeats // 2) + 1) / len(inputs)
        t_pillow = statistics.median(pillow_baseline(inputs) for _ in range(args.repeats))
        cpu_pillow = statistics.median(_cpu(lambda: pillow_baseline(inputs)) for _ in range(args.repeats)) / len(inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("single", "one image, all outputs (3 methods, --save-maps)", t_single, 'python -c "import torch"', t_torch),
        ("help", "aptviz --help", t_help, 'python -c "import typer, rich"', t_typer),
        ("sweep", "12-image sweep, 2 workers, per image", t_sweep, "Pillow decode+resize+JPEG, per image", t_pillow),
    ]
    print(f"{'measurement':50s} {'time':>8s}   {'baseline':38s} {'time':>8s} {'ratio':>6s} {'target':>7s}")
    ok = True
    for key, name, t, base_name, base in rows:
        ratio = t / base
        passed = ratio <= TARGETS[key]
        ok &= passed
        print(
            f"{name:50s} {t:7.3f}s   {base_name:38s} {base:7.3f}s {ratio:6.2f} {'<= ' + str(TARGETS[key]):>7s} "
            f"{'PASS' if passed else 'FAIL'}"
        )
    ratio = cpu_sweep / cpu_pillow
    print(f"sweep CPU time per image {cpu_sweep:.3f}s (mean of every run) vs Pillow floor {cpu_pillow:.4f}s: "
          f"{ratio:.2f}, / 2 workers: {ratio / 2:.2f} (target {TARGETS['sweep']})")  # fmt: skip
    return 0 if ok else 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(fn) -> float:
    """CPU seconds of this process for one call of ``fn`` (its own return value is unused)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


if __name__ == "__main__":
    sys.exit(main())
