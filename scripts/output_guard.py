"""Byte-for-byte guard over aptviz's outputs across a refactor.

Usage::

    python scripts/output_guard.py inputs DIR          # write the guard's made images into DIR
    python scripts/output_guard.py compare BEFORE AFTER  # compare two output trees

``compare`` lists files present on one side only, and every common file whose
bytes differ; for JSON files it names the keys that differ (with both values),
ignoring ``aptviz_version`` and the input identity (``mtime_ns``), which differ
between two checkouts by construction. In text files each tree's own absolute
path is read as ``OUTPUT``, since summaries name the output folders. The exit status is 1 when anything
differs, so a script can gate on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

IGNORED_KEYS = {"aptviz_version", "mtime_ns", "resolved_path"}
IGNORED_FILES = {".aptviz.lock"}  # holds the pid of the run
TEXT_SUFFIXES = {".json", ".csv", ".html"}


def make_inputs(folder: Path) -> None:
    """Small images that exercise the edges: tiny, a 4:1 panorama, odd sizes, alpha, 16-bit, gray."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:300, 0:1200]
    pano = np.stack([(x * 255 // 1199), (y * 255 // 299), ((x + y) % 64) * 4], -1).astype(np.uint8)
    pano[100:200, 500:700] = rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    Image.fromarray(pano).save(folder / "panorama.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "tiny.png")
    odd = np.zeros((333, 517, 3), np.uint8)
    odd[::7] = 255
    odd[:, ::11, 1] = 200
    Image.fromarray(odd).save(folder / "odd_size.png")
    rgba = np.dstack([rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), np.tile(np.arange(90, dtype=np.uint8), (120, 1))])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    deep = (np.add.outer(np.arange(200), np.arange(150)) * 200).astype(np.uint16)
    Image.fromarray(deep).save(folder / "sixteen_bit.png")
    Image.fromarray(np.full((64, 256), 128, np.uint8), "L").save(folder / "flat_gray.png")


def _json_diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in IGNORED_KEYS:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'after' if k in b else 'before'}")
            else:
                out.extend(_json_diff(a[k], b[k], f"{path}/{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def compare(before: Path, after: Path) -> int:
    """Print the differences between two output trees; return 1 if any."""
    left = {p.relative_to(before) for p in before.rglob("*") if p.is_file() and p.name not in IGNORED_FILES}
    right = {p.relative_to(after) for p in after.rglob("*") if p.is_file() and p.name not in IGNORED_FILES}
    problems = [f"only before: {p}" for p in sorted(left - right)] + [f"only after: {p}" for p in sorted(right - left)]
    same = 0
    for rel in sorted(left & right):
        a, b = (before / rel).read_bytes(), (after / rel).read_bytes()
        if rel.suffix in TEXT_SUFFIXES:
            a = a.replace(str(before.resolve()).encode(), b"OUTPUT")
            b = b.replace(str(after.resolve()).encode(), b"OUTPUT")
        if a == b:
            same += 1
            continue
        if rel.suffix == ".json":
            diffs = _json_diff(json.loads(a), json.loads(b))
            if not diffs:
                same += 1
                continue
            problems += [f"differs: {rel} {d}" for d in diffs[:20]]
        elif rel.suffix == ".csv":
            problems.append(f"differs: {rel} (csv: {len(a.splitlines())} -> {len(b.splitlines())} lines)")
        else:
            problems.append(f"differs: {rel} ({len(a)} -> {len(b)} bytes)")
    print(f"{same} of {len(left | right)} files identical")
    print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "inputs":
        make_inputs(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
