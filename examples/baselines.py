"""APT against uniform Qwen2-VL at equal ViT tokens and at equal LLM tokens, per selection and overall.

For every image and selection it reads aptviz's stats (``aptviz.analyze``: no
file written) and counts where APT's model view beats each uniform baseline in
SSIM and in PSNR, with the median difference (APT minus uniform), per method
and alpha and per image. The numbers of docs/analysis.md come from it.

    python examples/baselines.py                                 # the sample photos
    python examples/baselines.py photos/*.jpg --importance entropy,laplacian
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from statistics import median

import aptviz

ROOT = Path(__file__).resolve().parents[1]
SELECTIONS = ("budget:0.2,0.3,0.5", "v2:0.8,1,1.3")


def _rows(paths, importance: str) -> list[dict]:
    rows = []
    for path in paths:
        stats = aptviz.analyze(path, methods=SELECTIONS, importance=importance)
        for s in stats["selections"]:
            rows.append(dict(s, image=Path(path).name, measure=s.get("importance") or importance))
    return rows


def _compare(rows: list[dict], key: str, other: str) -> str:
    """``wins/total, median difference`` of APT's ``key`` against the baseline's (lossless views left out)."""
    pairs = [(r[f"{key}_apt"], r[f"{key}_{other}"]) for r in rows
             if r[f"{key}_apt"] is not None and r[f"{key}_{other}"] is not None]  # fmt: skip
    if not pairs:
        return "-"
    wins = sum(a > b for a, b in pairs)
    diff = median(a - b for a, b in pairs)
    return f"{wins}/{len(pairs)} ({diff:+.3f})" if key == "ssim" else f"{wins}/{len(pairs)} ({diff:+.2f} dB)"


def _table(title: str, groups: dict[str, list[dict]]) -> None:
    print(f"\n{title}")
    print(f"{'':28} {'SSIM, equal ViT':>20} {'SSIM, equal LLM':>20} {'PSNR, equal ViT':>22} {'PSNR, equal LLM':>22}")
    for name, rows in groups.items():
        print(f"{name:28} {_compare(rows, 'ssim', 'uniform'):>20} {_compare(rows, 'ssim', 'uniform_llm'):>20} "
              f"{_compare(rows, 'psnr', 'uniform'):>22} {_compare(rows, 'psnr', 'uniform_llm'):>22}")  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path, default=sorted((ROOT / "sample_images").glob("*.png")))
    ap.add_argument("--importance", default="entropy,laplacian", help="measures (default entropy,laplacian)")
    args = ap.parse_args(argv)
    rows = _rows(args.images, args.importance)
    print(f"{len(rows)} selections on {len(args.images)} image(s): APT wins / compared (median APT - uniform)")
    _table("all", {"all": rows})
    by_sel: dict[str, list[dict]] = defaultdict(list)
    by_image: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_sel[f"{r['measure']} {r['method']} {r['alpha']:g}"].append(r)
        by_image[r["image"]].append(r)
    _table("per selection", dict(sorted(by_sel.items())))
    _table("per image", dict(sorted(by_image.items())))


if __name__ == "__main__":
    main()
