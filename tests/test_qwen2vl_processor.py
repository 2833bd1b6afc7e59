"""APTQwen2VLProcessor: image pads per image (``apt_tokens``) and loading a checkpoint on public API."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

import aptviz  # noqa: E402
from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor  # noqa: E402

from test_qwen2vl import _tiny_tokenizer  # noqa: E402

BUDGET = {"patch_selection_method": "budget", "alpha": 0.3}
PROMPTS = [
    "<|vision_start|><|image_pad|><|vision_end|> describe this image",
    "user <|vision_start|><|image_pad|><|vision_end|> and <|vision_start|><|image_pad|><|vision_end|> describe",
]


@pytest.fixture(scope="module")
def photos(sample_paths):
    return [aptviz.load_image(p) for p in sample_paths]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Qwen2-VL checkpoint folder: tokenizer, the stock image-processor config, a chat template."""
    folder = tmp_path_factory.mktemp("checkpoint")
    tokenizer = _tiny_tokenizer()
    tokenizer.pad_token = "<|endoftext|>"  # as Qwen2-VL's tokenizer: a batch of texts pads
    tokenizer.save_pretrained(folder)
    config = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "min_pixels": 3136,
        "max_pixels": 150_000,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return folder


def _pads_per_image(out, proc) -> list[int]:
    """Image pads of each image, in order: runs of ``<|image_pad|>`` in the token ids."""
    runs = []
    for ids in np.asarray(out["input_ids"]):
        is_pad = np.concatenate([[0], (ids == proc.image_token_id).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(is_pad))
        runs += (edges[1::2] - edges[0::2]).tolist()
    return runs


def _stock_pads(images, max_pixels: int) -> list[int]:
    grid = Qwen2VLImageProcessorPil(max_pixels=max_pixels)(images)["image_grid_thw"]
    return (np.prod(grid, axis=1) // 4).tolist()


def test_apt_tokens_put_apt_llm_token_counts_pads_in_the_text_by_every_route(photos, checkpoint):
    images = [photos[0], photos[2], photos[1]]  # one text with an image, one with two: three sizes
    stock = _stock_pads(images, 150_000)
    grid = Qwen2VLImageProcessorPil(max_pixels=150_000)(images)["image_grid_thw"]
    default = APTQwen2VLProcessor.from_pretrained(checkpoint)
    routes = {
        "constructor": (APTQwen2VLProcessor(default.image_processor, default.tokenizer, apt_tokens=True), {}),
        "from_pretrained": (APTQwen2VLProcessor.from_pretrained(checkpoint, apt_tokens=True), {}),
        "images_kwargs": (default, {"images_kwargs": {**BUDGET, "apt_tokens": True}}),
        "keyword": (default, {"apt_tokens": True}),
    }
    counts = None
    for name, (proc, extra) in routes.items():
        kw = extra if "images_kwargs" in extra else {"images_kwargs": dict(BUDGET), **extra}
        out = proc(images=images, text=PROMPTS, padding=True, return_tensors="np", **kw)
        counts = out["apt_llm_token_counts"].tolist()
        assert _pads_per_image(out, proc) == counts, name
        assert int(out["mm_token_type_ids"].sum()) == sum(counts), name  # the model's image-token mask agrees
        assert np.array_equal(out["image_grid_thw"], grid)
    assert all(a < b for a, b in zip(counts, stock))  # budget 0.3 saves LLM tokens: the two counts differ
    # the default keeps the stock count, and a call's apt_tokens=False wins over the processor's True
    plain = default(images=images, text=PROMPTS, padding=True, images_kwargs=dict(BUDGET), return_tensors="np")
    assert _pads_per_image(plain, default) == stock
    proc = routes["constructor"][0]
    off = proc(images=images, text=PROMPTS, padding=True, images_kwargs={**BUDGET, "apt_tokens": False})
    assert _pads_per_image(off, proc) == stock


def test_all_finest_patches_give_the_stock_pad_count(photos):
    # budget alpha=1 keeps every P px patch: one LLM token per merge unit, exactly as stock
    proc = APTQwen2VLProcessor(APTQwen2VLImageProcessor(max_pixels=100_000), _tiny_tokenizer(), apt_tokens=True)
    out = proc(images=photos[1], text=PROMPTS[0], images_kwargs={"patch_selection_method": "budget", "alpha": 1.0})
    assert _pads_per_image(out, proc) == _stock_pads([photos[1]], 100_000)


def test_from_pretrained_returns_the_apt_image_processor_with_the_checkpoints_settings(checkpoint):
    proc = APTQwen2VLProcessor.from_pretrained(checkpoint, patch_selection_method="v2", alpha=0.5, padding_side="left")
    assert type(proc.image_processor) is APTQwen2VLImageProcessor
    assert proc.tokenizer.padding_side == "left"  # as transformers' own from_pretrained: for batched generation
    assert proc.image_processor.size["longest_edge"] == 150_000  # the checkpoint's max_pixels
    assert (proc.image_processor.patch_selection_method, proc.image_processor.alpha) == ("v2", 0.5)
    assert proc.chat_template == (checkpoint / "chat_template.jinja").read_text()
    assert proc.apt_tokens is False
    assert proc.tokenizer.convert_ids_to_tokens(proc.image_token_id) == "<|image_pad|>"


def test_save_and_load_keep_apt_tokens(photos, checkpoint, tmp_path):
    proc = APTQwen2VLProcessor.from_pretrained(checkpoint, apt_tokens=True, **BUDGET)
    proc.save_pretrained(tmp_path)
    loaded = APTQwen2VLProcessor.from_pretrained(tmp_path)
    assert loaded.apt_tokens is True and loaded.image_processor.patch_selection_method == "budget"
    assert APTQwen2VLProcessor.from_pretrained(tmp_path, apt_tokens=False).apt_tokens is False
    a, b = (p(images=photos[0], text=PROMPTS[0], return_tensors="np") for p in (proc, loaded))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_apt_tokens_refuses_a_non_bool_and_a_stock_image_processor(photos):
    with pytest.raises(TypeError, match="apt_tokens must be True or False"):
        APTQwen2VLProcessor(tokenizer=_tiny_tokenizer(), apt_tokens="yes")
    proc = APTQwen2VLProcessor(Qwen2VLImageProcessorPil(), _tiny_tokenizer(), apt_tokens=True)
    with pytest.raises(ValueError, match="apt_tokens=True needs an APTQwen2VLImageProcessor"):
        proc(images=photos[1], text=PROMPTS[0])


# ----------------------------------------------------------------------------- adversarial pass (issue 27)


def test_a_per_call_apt_tokens_that_is_not_a_bool_is_refused_like_the_constructors(photos):
    """images_kwargs={"apt_tokens": "false"} gave APT pads (a non-empty string is true); the constructor refuses it."""
    proc = APTQwen2VLProcessor(APTQwen2VLImageProcessor(max_pixels=100_000), _tiny_tokenizer())
    budget = {"patch_selection_method": "budget", "alpha": 0.3}
    for bad in ("false", "yes", 1):
        with pytest.raises(TypeError, match="apt_tokens must be True or False"):
            proc(images=photos[1], text=PROMPTS[0], images_kwargs={**budget, "apt_tokens": bad})
    out = proc(images=photos[1], text=PROMPTS[0], images_kwargs={**budget, "apt_tokens": False})
    assert _pads_per_image(out, proc) == _stock_pads([photos[1]], 100_000)
