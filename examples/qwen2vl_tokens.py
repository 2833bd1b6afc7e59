"""APT's tokens for Qwen2-VL, per image, against plain Qwen2-VL.

Runs :class:`aptviz.qwen2vl.APTQwen2VLImageProcessor` (``pip install
'aptviz[qwen]'``; works offline) and prints, for every image, the tokens the
vision tower (ViT) and the language model (LLM, after the 2x2 merger) get
with APT and with plain Qwen2-VL.

    python examples/qwen2vl_tokens.py                          # the sample photos, budget 0.3
    python examples/qwen2vl_tokens.py photo.jpg -m v2 -a 1.0
    python examples/qwen2vl_tokens.py --model qwen3-vl         # 16 px patches, 32 px merge units
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aptviz
from aptviz.qwen2vl import APTQwen2VLImageProcessor

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path, default=sorted((ROOT / "sample_images").glob("*.png")))
    ap.add_argument("-m", "--method", default="budget", help="v1, v2 or budget (default budget)")
    ap.add_argument("-a", "--alpha", type=float, default=0.3, help="v2 multiplier / budget retention (default 0.3)")
    ap.add_argument("--model", default="qwen2-vl", help="qwen2-vl, qwen2.5-vl or qwen3-vl (default qwen2-vl)")
    args = ap.parse_args(argv)

    processor = APTQwen2VLImageProcessor.from_preset(args.model, patch_selection_method=args.method, alpha=args.alpha)
    images = [aptviz.load_image(p) for p in args.images]
    out = processor(images)  # one call for the batch; every field is concatenated over the images

    merge = processor.merge_size
    uniform_vit = out["image_grid_thw"].prod(axis=1)  # plain Qwen2-VL: one ViT token per P px patch
    uniform_llm = uniform_vit // merge**2  # ... and one LLM token per 2x2 group of them
    print(f"APT {args.method}" + ("" if args.method == "v1" else f" alpha={args.alpha:g}"))
    scales = [processor.patch_size * 2**i for i in range(processor.num_scales)]
    head = f"{'image':<16} {'resized':>9}  {'ViT tokens':>13} {'ViT ret.':>8}  {'LLM tokens':>12} {'LLM ret.':>8}"
    print(head)
    print("-" * len(head))
    start = 0
    for i, path in enumerate(args.images):
        vit, llm = int(out["apt_vit_token_counts"][i]), int(out["apt_llm_token_counts"][i])
        sizes = out["apt_patch_sizes"][start : start + vit]
        start += vit
        _, gh, gw = out["image_grid_thw"][i]
        mix = "/".join(str(int((sizes == s).sum())) for s in scales)
        u_vit, u_llm = int(uniform_vit[i]), int(uniform_llm[i])
        print(
            f"{path.name:<16} {gw * processor.patch_size:>4}x{gh * processor.patch_size:<4}  {vit:>5} / {u_vit:>5}  {vit / u_vit:>8.4f}"
            f"  {llm:>5} / {u_llm:>4}  {llm / u_llm:>8.4f}   ({'/'.join(map(str, scales))} px: {mix})"
        )
    total_vit, total_llm = out["apt_vit_token_counts"].sum(), out["apt_llm_token_counts"].sum()
    print(
        f"{'all':<16} {'':>9}  {total_vit:>5} / {uniform_vit.sum():>5}  {total_vit / uniform_vit.sum():>8.4f}"
        f"  {total_llm:>5} / {uniform_llm.sum():>4}  {total_llm / uniform_llm.sum():>8.4f}"
    )
    print(f"\napt_pixel_values {out['apt_pixel_values'].shape} vs pixel_values {out['pixel_values'].shape}")
    if processor.last_budget_info[0] is not None:
        print("budget_info of the first image:", processor.last_budget_info[0])


if __name__ == "__main__":
    main()
