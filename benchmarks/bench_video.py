"""Video benchmark: one video end to end against decoding and resizing the same frames, in the same run.

The clip is a sample photo panned and zoomed, 640x360 at 30 fps, 30 s (900
frames, MPEG-4 part 2 as cv2 writes it). At the default 2 fps aptviz samples
60 frames (30 tubelets), each resized to 644x364 as qwen-vl-utils sizes them.

1. floor: ``decode_video`` -- decode every frame in order, keep and resize
   the 60 sampled ones (what any tool reading the video as Qwen2-VL does must do)
2. aptviz: ``process_image`` on the clip with ``budget:0.3`` and
   ``--static-threshold 2``: the same decoding, per-tubelet importance and
   selection, the static rule, stats.json, the timeline, contact sheet, GIF
   and card

Both are timed warm, alternately, and the median ratio printed.

    python benchmarks/bench_video.py [--repeats 3] [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aptviz.compute.params import Params, RunSpec  # noqa: E402
from aptviz.compute.video import decode_video  # noqa: E402
from aptviz.pipeline import process_image  # noqa: E402


def make_clip(path: Path, seconds: int, fps: int = 30, size=(640, 360)) -> Path:
    """A sample photo panned and zoomed over ``seconds`` s."""
    import cv2

    photo = Image.open(ROOT / "sample_images" / "astronaut.png").convert("RGB")
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = seconds * fps
    for k in range(n):
        z = 1.0 + 0.6 * k / n
        cw, ch = photo.width / z, photo.width / z * h / w
        x0 = (photo.width - cw) * k / n
        frame = photo.resize((w, h), Image.Resampling.BILINEAR, box=(x0, 0, x0 + cw, ch))
        out.write(np.asarray(frame)[..., ::-1].copy())
    out.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.seconds)
        params = Params(static_threshold=2.0)
        runs = [RunSpec("budget", 0.3)]
        floor, full = [], []
        for i in range(args.repeats + 1):  # the first round warms both up
            t0 = time.perf_counter()
            decoded = decode_video(clip, params)
            t1 = time.perf_counter()
            stats = process_image(clip, Path(tmp) / "out", runs, params)
            t2 = time.perf_counter()
            if i:
                floor.append(t1 - t0)
                full.append(t2 - t1)
        f, a = statistics.median(floor), statistics.median(full)
        n, shape = len(decoded.frame_indices), decoded.frames.shape
        print(f"clip: {args.seconds} s, {decoded.total_frames} frames; sampled {n} at {shape[2]}x{shape[1]} px, "
              f"{stats.time.tubelets} tubelets")
        print(f"decode + resize (floor): {f:.2f} s")
        print(f"aptviz (analysis, static rule, all outputs): {a:.2f} s")
        print(f"ratio: {a / f:.2f}x the floor")


if __name__ == "__main__":
    main()
