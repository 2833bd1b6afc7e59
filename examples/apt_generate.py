"""Qwen2-VL (or Qwen2.5-VL, Qwen3-VL) generating on APT's tokens against the stock model.

Loads a local checkpoint (``--model-path DIR``; nothing is downloaded) or
builds a tiny random Qwen2-VL with a toy tokenizer (``--tiny``: the text is
gibberish, the mechanics are real), makes it APT-aware with
:func:`aptviz.qwen2vl.enable_apt` (same weights), and runs the same prompt
and image twice: stock (every 14 px patch) and APT (``--method``/``--alpha``,
budget 0.3 by default). Prints the tokens each side sends to the vision tower
(ViT) and to the language model (image pads), the vision tower's time, and
both answers.

    python examples/apt_generate.py --tiny
    python examples/apt_generate.py --model-path /models/Qwen2-VL-2B-Instruct photo.jpg --device cuda
    python examples/apt_generate.py --model-path DIR -m budget -a 0.5 --prompt "What is in the picture?"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor, enable_apt

ROOT = Path(__file__).resolve().parents[1]
CHAT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
TINY_CHAT = "<|im_start|> user <|vision_start|><|image_pad|><|vision_end|> {prompt} <|im_end|>"


def tiny(device: str):
    """A random two-layer Qwen2-VL and a word-level toy tokenizer (offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    words = ["[UNK]", "user", "assistant", "describe", "this", "image", "a", "cat", "on", "the", "mat"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", additional_special_tokens=specials)
    text = dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2)
    ids = {name: vocab[token] for name, token in [("image_token_id", "<|image_pad|>"),
                                                  ("video_token_id", "<|video_pad|>"),
                                                  ("vision_start_token_id", "<|vision_start|>"),
                                                  ("vision_end_token_id", "<|vision_end|>")]}
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **ids))
    model.generation_config.pad_token_id = vocab["<|endoftext|>"]
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    proc = APTQwen2VLProcessor(image_processor=APTQwen2VLImageProcessor(), tokenizer=tok)
    return model.to(device).eval(), proc, TINY_CHAT


def checkpoint(path: Path, device: str):
    """The model class for the checkpoint's ``model_type``, and its APT processor."""
    import transformers
    from transformers import AutoConfig

    classes = {
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
    }
    kind = AutoConfig.from_pretrained(path).model_type
    if kind not in classes:
        raise SystemExit(f"{path}: model_type {kind!r} is not one of {', '.join(classes)}")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = getattr(transformers, classes[kind]).from_pretrained(path, dtype=dtype)
    return model.to(device).eval(), APTQwen2VLProcessor.from_pretrained(path), CHAT


def timed_tower(model, batch: dict, apt: bool) -> float:
    """Seconds of one vision-tower pass (the stock rows, or APT's)."""
    inner = model.model
    grid = batch["image_grid_thw"]
    with torch.no_grad():
        if inner.visual.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if apt:
            inner.get_apt_image_features(grid, **{k: v for k, v in batch.items() if k.startswith("apt_")})
        else:
            inner.get_image_features(batch["pixel_values"], grid)
        if inner.visual.device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-path", type=Path, help="a local Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint folder")
    source.add_argument("--tiny", action="store_true", help="a tiny random Qwen2-VL (offline, seconds)")
    ap.add_argument("image", nargs="?", type=Path, default=ROOT / "sample_images" / "chelsea.png")
    ap.add_argument("--prompt", default="describe this image")
    ap.add_argument("-m", "--method", default="budget", help="v1, v2 or budget (default budget)")
    ap.add_argument("-a", "--alpha", type=float, default=0.3, help="v2 multiplier / budget retention (default 0.3)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    model, proc, chat = tiny(args.device) if args.tiny else checkpoint(args.model_path, args.device)
    enable_apt(model)  # same weights; without apt_* inputs it is the stock model
    image = Image.open(args.image).convert("RGB")
    text = chat.format(prompt=args.prompt)
    selection = {"patch_selection_method": args.method, "alpha": args.alpha}
    runs = {
        "stock": proc(images=image, text=text, images_kwargs=selection, return_tensors="pt"),
        "APT": proc(images=image, text=text, images_kwargs={**selection, "apt_tokens": True}, return_tensors="pt"),
    }
    pad = model.config.image_token_id
    print(f"{args.image.name}: APT {args.method} alpha={args.alpha:g}")
    for name, batch in runs.items():
        batch = batch.to(args.device)
        apt = name == "APT"
        if not apt:  # the stock model's own inputs
            batch = {k: v for k, v in batch.items() if not k.startswith("apt_")}
        vit = int(batch["apt_vit_token_counts"].sum()) if apt else len(batch["pixel_values"])
        timed_tower(model, batch, apt)  # warm-up
        seconds = timed_tower(model, batch, apt)
        out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False)
        answer = proc.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        print(f"  {name:<5}  ViT tokens {vit:>6}  LLM image tokens {int((batch['input_ids'] == pad).sum()):>5}  "
              f"vision tower {seconds * 1000:8.1f} ms")
        print(f"         {answer.strip()!r}")


if __name__ == "__main__":
    main()
