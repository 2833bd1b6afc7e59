"""APT inference (SPEC 16): tiny random Qwen2-VL, Qwen2.5-VL and Qwen3-VL models run on APT's tokens.

The models are built from tiny configs with random weights (float64, so
"equal within 1e-5" tests the computation, not rounding); the images are made
here. Each test runs on the CPU and, where one is present, on a CUDA GPU
(the ``cuda`` cases are skipped without one).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from aptviz.qwen2vl import APTQwen2VLImageProcessor, enable_apt, feature_fidelity, is_apt_enabled  # noqa: E402
from aptviz.qwen2vl.modeling import apt_plan  # noqa: E402

VOCAB, IMAGE, VIDEO, START, END = 64, 60, 61, 62, 63
FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]
TOL = 1e-5


def _text(**extra) -> dict:
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **extra}
    return dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        rope_parameters=rope,
    )


def tiny_model(family: str, device: str = "cpu", seed: int = 0, ids: dict | None = None):
    """A random two-layer model of ``family`` (float64, eval mode)."""
    ids = ids or dict(image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=START, vision_end_token_id=END)
    torch.manual_seed(seed)
    if family == "qwen2-vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=_text(), vision_config=vision, **ids))
    elif family == "qwen2.5-vl":
        # 56 px windows (2 x 2 merge units): small images still span several windows
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                      window_size=56, fullatt_block_indexes=[1])
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=_text(), vision_config=vision, **ids))
    else:
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                      num_position_embeddings=64, deepstack_visual_indexes=[0])
        text = dict(_text(mrope_interleaved=True), head_dim=16)
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config=text, vision_config=vision, **ids))
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None
    return model.to(device=device, dtype=torch.float64).eval()


def processor(family: str, **kwargs) -> APTQwen2VLImageProcessor:
    return APTQwen2VLImageProcessor.from_preset(family, **kwargs)


def inputs(ip, images, apt_pads: bool = True, device: str = "cpu", seed: int = 0, **call) -> dict:
    """Image fields from ``ip`` and a left-padded text with one image each (pads: APT's count or stock)."""
    out = ip(images=images, return_tensors="pt", **call)
    merge = ip.merge_size
    stock = (out["image_grid_thw"].prod(-1) // merge**2).tolist()
    counts = out["apt_llm_token_counts"].tolist() if apt_pads else stock
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i, n in enumerate(counts):
        before = torch.randint(1, 50, (2 + 3 * i,), generator=gen).tolist()  # different lengths: left padding
        after = torch.randint(1, 50, (4,), generator=gen).tolist()
        rows.append(before + [START] + [IMAGE] * n + [END] + after)
    longest = max(map(len, rows))
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, longest - len(row) :] = torch.tensor(row)
        mask[b, longest - len(row) :] = 1
    batch = dict(out, input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == IMAGE).long())
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def stock_only(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("apt_")}


def textured(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def two_images(family: str) -> list[np.ndarray]:
    unit = 32 if family == "qwen3-vl" else 28
    return [textured(2 * unit, 3 * unit, 1), textured(4 * unit, 5 * unit, 2)]


def constant(family: str) -> np.ndarray:
    unit = 32 if family == "qwen3-vl" else 28
    return np.broadcast_to(np.array([200, 30, 90], np.uint8), (4 * unit, 6 * unit, 3)).copy()


def logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# --- without apt_* inputs: the stock model ------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_enable_apt_keeps_the_stock_computation_and_adds_no_weights(family):
    model = tiny_model(family)
    batch = stock_only(inputs(processor(family), two_images(family), apt_pads=False))
    before = logits(model, batch)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    stock_class = type(model)
    assert not is_apt_enabled(model)
    assert enable_apt(model) is model and is_apt_enabled(model)
    assert isinstance(model, stock_class) and type(model).__name__ == stock_class.__name__  # save_pretrained
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert torch.equal(logits(model, batch), before)


# --- exactness: every kept patch at P px (budget alpha=1) ----------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow
def test_alpha_one_gives_the_stock_logits_and_greedy_tokens(family, device):
    model = tiny_model(family, device)
    ip = processor(family, patch_selection_method="budget", alpha=1.0)
    batch = inputs(ip, two_images(family), device=device)
    assert batch["attention_mask"][0, 0] == 0  # left padding
    stock = stock_only(batch)
    expected = logits(model, stock)
    want = model.generate(**stock, max_new_tokens=6, do_sample=False)
    enable_apt(model)
    spy = _rows_seen(model)
    got = logits(model, batch)
    assert spy == [int(batch["apt_vit_token_counts"].sum())]  # the tower ran on the APT rows
    assert (got - expected).abs().max().item() < TOL
    assert torch.equal(model.generate(**batch, max_new_tokens=6, do_sample=False), want)


def _rows_seen(model) -> list[int]:
    """Rows entering the patch embedding, recorded per call."""
    seen: list[int] = []
    model.model.visual.patch_embed.register_forward_hook(lambda mod, args, out: seen.append(int(args[0].shape[0])))
    return seen


# --- exactness on a constant colour: merge-unit patches and larger ------------------------------------


def _flat_model(family: str, device: str):
    model = tiny_model(family, device)
    if family == "qwen3-vl":  # its learned position embedding makes equal patches differ: off for these two
        with torch.no_grad():
            model.model.visual.pos_embed.weight.zero_()
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
def test_constant_colour_unit_patches_give_the_stock_logits(family, device):
    model = _flat_model(family, device)
    ip = processor(family)
    # v1 with a negative top threshold: no 4P patch passes, every 2P (one merge unit) patch does
    batch = inputs(ip, [constant(family)], device=device, patch_selection_method="v1", thresholds=[3.0, -1.0])
    unit = 2 * ip.patch_size
    assert set(batch["apt_patch_sizes"].tolist()) == {unit}
    assert int(batch["apt_llm_token_counts"][0]) == int(batch["image_grid_thw"][0].prod()) // 4
    expected = logits(model, stock_only(batch))
    enable_apt(model)
    assert (logits(model, batch) - expected).abs().max().item() < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
def test_constant_colour_large_patches_equal_the_stock_features_of_their_units(family, device):
    model = _flat_model(family, device)
    ip = processor(family)
    batch = inputs(ip, [constant(family)], device=device, patch_selection_method="v1")
    big = 4 * ip.patch_size
    assert set(batch["apt_patch_sizes"].tolist()) == {big}
    grid = batch["image_grid_thw"]
    with torch.no_grad():
        stock = model.model.get_image_features(batch["pixel_values"], grid).pooler_output[0]
        enable_apt(model)
        apt = {k: v for k, v in batch.items() if k.startswith("apt_")}
        mine = model.model.get_apt_image_features(grid, **apt).pooler_output[0]
    assert mine.shape[0] == len(batch["apt_patch_sizes"]) == stock.shape[0] // 4
    assert (mine[:, None, :] - stock[None, :, :]).abs().max().item() < TOL


# --- budget 0.3: fewer tokens, generate works -----------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
def test_generate_at_budget_0_3_with_the_apt_pad_count(family, device):
    model = enable_apt(tiny_model(family, device))
    ip = processor(family, patch_selection_method="budget", alpha=0.3)
    batch = inputs(ip, two_images(family), device=device)
    stock_pads = (batch["image_grid_thw"].prod(-1) // 4).sum()
    pads = (batch["input_ids"] == IMAGE).sum()
    assert pads == batch["apt_llm_token_counts"].sum() < stock_pads
    spy = _rows_seen(model)
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    assert spy[0] == int(batch["apt_vit_token_counts"].sum()) < int(batch["image_grid_thw"].prod(-1).sum())
    assert all(n == 1 for n in spy[1:])  # decode steps: the vision tower does not run again
    assert not bool((out[:, batch["input_ids"].shape[1] :] == IMAGE).all())


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_pads_with_apt_features_name_apt_tokens(family):
    model = enable_apt(tiny_model(family))
    ip = processor(family, patch_selection_method="budget", alpha=0.3)
    batch = inputs(ip, two_images(family), apt_pads=False)
    with pytest.raises(ValueError, match=r"apt_tokens=True"):
        logits(model, batch)
    with pytest.raises(ValueError, match=r"apt_tokens=True"):
        model.generate(**batch, max_new_tokens=2)


def test_apt_features_of_a_model_not_enabled_name_enable_apt():
    from aptviz.qwen2vl.modeling import apt_image_features

    model = tiny_model("qwen2-vl")
    batch = inputs(processor("qwen2-vl", patch_selection_method="budget", alpha=0.3), two_images("qwen2-vl"))
    apt = {k: v for k, v in batch.items() if k.startswith("apt_")}
    with pytest.raises(ValueError, match="enable_apt"):
        apt_image_features(model.model, apt, batch["image_grid_thw"])


def test_the_inner_model_takes_apt_inputs_too():
    outer = tiny_model("qwen2-vl")
    ip = processor("qwen2-vl", patch_selection_method="budget", alpha=0.3)
    batch = inputs(ip, two_images("qwen2-vl"))
    inner = enable_apt(outer.model)
    assert is_apt_enabled(inner) and is_apt_enabled(outer)
    with torch.no_grad():
        hidden = inner(**batch).last_hidden_state
    assert hidden.shape[:2] == batch["input_ids"].shape


# --- positions and merger slots -------------------------------------------------------------------------


def test_large_patches_sit_at_their_centre_or_top_left_and_fill_their_merger_slots():
    # a 4 x 6 cell image: a 56 px patch, four 14 px patches in unit (0, 2), a 28 px patch = unit (1, 2)
    sizes = torch.tensor([56, 14, 14, 14, 14, 28])
    coords = torch.tensor([[0, 0], [0, 4], [0, 5], [1, 4], [1, 5], [2, 4]])
    grid = torch.tensor([[1, 4, 6]])
    centre = apt_plan(sizes, coords, torch.tensor([6]), grid, 14, 2, llm_token_counts=torch.tensor([3]))
    corner = apt_plan(sizes, coords, torch.tensor([6]), grid, 14, 2, position="top-left")
    assert centre.position_ids.tolist() == [[1.5, 1.5], [0, 4], [0, 5], [1, 4], [1, 5], [2.5, 4.5]]
    assert corner.position_ids.tolist() == coords.float().tolist()
    assert centre.slots.tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 5, 5, 5]]
    assert centre.token_units.tolist() == [0, 2, 5] and centre.token_spans.tolist() == [2, 1, 1]
    assert centre.cu_seqlens.tolist() == [0, 6] and centre.llm_counts == [3]


def test_sizes_that_do_not_nest_into_merge_units_raise():
    # merge size 3: a 28 px patch straddles two 42 px units
    sizes = torch.tensor([28] * 9)
    coords = torch.tensor([[r, c] for r in range(0, 6, 2) for c in range(0, 6, 2)])
    with pytest.raises(ValueError, match="do not nest"):
        apt_plan(sizes, coords, torch.tensor([9]), torch.tensor([[1, 6, 6]]), 14, 3)


def test_rows_that_do_not_tile_the_image_raise():
    with pytest.raises(ValueError, match="tile"):
        apt_plan(torch.tensor([14, 14]), torch.tensor([[0, 0], [0, 1]]), torch.tensor([2]), torch.tensor([[1, 2, 2]]),
                 14, 2)


# --- what the model loses -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen3-vl"])
def test_feature_fidelity_is_one_without_large_patches_and_less_with_them(family):
    model = tiny_model(family)
    ip = processor(family)
    image = two_images(family)[1]
    scores = feature_fidelity(model, ip, image, ["budget:1", {"patch_selection_method": "budget", "alpha": 0.3}])
    assert list(scores) == ["budget_alpha1", "budget_alpha0.3"]
    assert scores["budget_alpha1"] == pytest.approx(1.0, abs=1e-9)
    assert -1.0 <= scores["budget_alpha0.3"] < 1.0 - 1e-6


def test_qwen3_learned_position_embedding_is_the_mean_over_the_cells_a_patch_covers():
    from aptviz.qwen2vl.modeling import _vision_plan

    model = enable_apt(tiny_model("qwen3-vl"))
    visual = model.model.visual
    ip = processor("qwen3-vl", patch_selection_method="budget", alpha=0.3)
    batch = inputs(ip, [two_images("qwen3-vl")[1]])
    assert batch["apt_patch_sizes"].max() > ip.patch_size
    apt = {k: v for k, v in batch.items() if k.startswith("apt_")}
    plan = _vision_plan(model.model, apt, batch["image_grid_thw"])
    with torch.no_grad():
        got = (visual.pos_embed(plan.extra["interp_indices"]) * plan.extra["interp_weights"][..., None]).sum(1)
        # the stock embedding of each cell: the learned grid resized to the image's by bilinear interpolation
        side, (_, gh, gw) = visual.num_grid_per_side, batch["image_grid_thw"][0].tolist()
        table = visual.pos_embed.weight.T.reshape(1, -1, side, side)
        cells = torch.nn.functional.interpolate(table, size=(gh, gw), mode="bilinear", align_corners=True)[0]
    for row, (size, (r, c)) in enumerate(zip(batch["apt_patch_sizes"].tolist(), batch["apt_patch_coords"].tolist())):
        k = size // ip.patch_size
        assert torch.allclose(got[row], cells[:, r : r + k, c : c + k].mean((1, 2)), atol=1e-7)  # float32 taps


def test_the_processors_apt_tokens_output_goes_straight_into_generate(sample_paths):
    from PIL import Image

    from aptviz.qwen2vl import APTQwen2VLImageProcessorKwargs, APTQwen2VLProcessor

    if "apt_tokens" not in getattr(APTQwen2VLImageProcessorKwargs, "__annotations__", {}):
        pytest.skip("this processor has no apt_tokens option")
    from test_qwen2vl import _tiny_tokenizer

    tok = _tiny_tokenizer()
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    model = enable_apt(tiny_model("qwen2-vl", ids=ids))
    proc = APTQwen2VLProcessor(image_processor=processor("qwen2-vl", max_pixels=200_000), tokenizer=tok)
    image = Image.open(sample_paths[0]).convert("RGB")
    prompt = "<|im_start|> user <|vision_start|><|image_pad|><|vision_end|> describe this image <|im_end|>"
    budget = {"patch_selection_method": "budget", "alpha": 0.3}
    stock = proc(images=image, text=prompt, images_kwargs=budget, return_tensors="pt")
    with pytest.raises(ValueError, match=r"apt_tokens=True"):
        model.generate(**stock, max_new_tokens=2)
    batch = proc(images=image, text=prompt, images_kwargs={**budget, "apt_tokens": True}, return_tensors="pt")
    assert (batch["input_ids"] == ids["image_token_id"]).sum() == batch["apt_llm_token_counts"].sum()
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, batch["input_ids"].shape[1] + 3)


def test_the_generate_example_prints_stock_and_apt_tokens(capsys):
    import re
    import runpy

    from PIL import Image

    from aptviz.qwen2vl import APTQwen2VLImageProcessorKwargs
    from conftest import ROOT

    if "apt_tokens" not in getattr(APTQwen2VLImageProcessorKwargs, "__annotations__", {}):
        pytest.skip("this processor has no apt_tokens option")
    module = runpy.run_path(str(ROOT / "examples" / "apt_generate.py"))
    module["main"](["--tiny", "--max-new-tokens", "2", "--device", "cpu", str(ROOT / "sample_images" / "chelsea.png")])
    lines = capsys.readouterr().out.splitlines()
    pattern = re.compile(r"(stock|APT)\s+ViT tokens\s+(\d+)\s+LLM image tokens\s+(\d+)")
    found = {m[1]: (int(m[2]), int(m[3])) for m in map(pattern.search, lines) if m}
    image = Image.open(ROOT / "sample_images" / "chelsea.png").convert("RGB")
    out = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3)(images=[image])
    cells = int(out["image_grid_thw"][0].prod())
    assert found["stock"] == (cells, cells // 4)
    assert found["APT"] == (int(out["apt_vit_token_counts"][0]), int(out["apt_llm_token_counts"][0]))


def test_qwen2_5_windows_group_rows_by_the_window_of_their_top_left_cell():
    from aptviz.qwen2vl.modeling import _windowed

    ip = processor("qwen2.5-vl", patch_selection_method="budget", alpha=0.3)
    out = ip(images=two_images("qwen2.5-vl"), return_tensors="pt")
    sizes, coords, counts, grid = (out[k] for k in ("apt_patch_sizes", "apt_patch_coords", "apt_vit_token_counts",
                                                     "image_grid_thw"))
    assert sizes.max() > 28
    plan = _windowed(apt_plan(sizes, coords, counts, grid, 14, 2), coords, counts, grid, 2, window_units=2)
    # naive: (image, window row, window col) of each row's top-left cell, windows of 2 x 2 merge units
    image = torch.repeat_interleave(torch.arange(len(counts)), counts)
    window = [(int(i), int(r) // 4, int(c) // 4) for i, (r, c) in zip(image, coords)]
    ordered = [window[i] for i in plan.row_perm.tolist()]
    assert ordered == sorted(window)  # grouped window by window, images first, windows in raster order
    assert plan.row_perm.tolist() == sorted(range(len(window)), key=lambda i: window[i])  # stable inside a window
    sizes_by_window = [ordered.count(w) for w in sorted(set(window))]
    assert plan.extra["cu_window_seqlens"].tolist() == np.cumsum([0, *sizes_by_window]).tolist()
    # the merger reads the permuted rows; argsort(window_index) puts its tokens back in order
    rows = torch.randn(len(sizes), 3)
    merged = rows[plan.row_perm][plan.merger_slots][torch.argsort(plan.extra["window_index"])]
    assert torch.equal(merged, rows[plan.slots])


# --- adversarial pass (issue 27): careless apt_* inputs get a ValueError that says what is wrong ----------


@pytest.mark.parametrize("family", FAMILIES)
def test_apt_pixel_rows_of_the_wrong_shape_are_one_value_error(family):
    """A row short (or a row too narrow) reached the tower: a bare RuntimeError about tensor sizes."""
    model = enable_apt(tiny_model(family))
    batch = inputs(processor(family, patch_selection_method="budget", alpha=0.3), two_images(family))
    rows = batch["apt_pixel_values"]
    for bad in (rows[:-1], rows[:, :-1], rows.reshape(-1)):
        with pytest.raises(ValueError, match=r"apt_pixel_values must be \(\d+, \d+\).* got"):
            logits(model, dict(batch, apt_pixel_values=bad))


def test_apt_rows_outside_their_image_name_the_row_not_the_merge_size():
    """Counts swapped between two images (or coords off the grid) said 'patches of [14, 28, 56] px do not nest
    into the model's 28 px merge units', which they do."""
    model = enable_apt(tiny_model("qwen2-vl"))
    batch = inputs(processor("qwen2-vl", patch_selection_method="budget", alpha=0.3), two_images("qwen2-vl"))
    for key, bad in (("apt_vit_token_counts", batch["apt_vit_token_counts"].flip(0)),
                     ("apt_patch_coords", batch["apt_patch_coords"] - 100)):
        with pytest.raises(ValueError, match=r"APT row \d+ .* lies outside its image") as err:
            logits(model, dict(batch, **{key: bad}))
        assert "nest" not in str(err.value)


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen3-vl"])
def test_generate_with_apt_inputs_but_no_pixel_values_is_refused_not_run_as_text(family):
    """Dropping pixel_values ("APT replaces them") made generate skip the vision tower: transformers pops the
    apt_* fields with the encoder's arguments but encodes only given pixel_values, so the image pads were read
    as text tokens. (forward alone runs the APT rows and is kept.)"""
    model = enable_apt(tiny_model(family))
    batch = inputs(processor(family, patch_selection_method="budget", alpha=0.3), two_images(family))
    no_pixels = {k: v for k, v in batch.items() if k != "pixel_values"}
    spy = _rows_seen(model)
    with pytest.raises(ValueError, match="needs the processor's pixel_values"):
        model.generate(**no_pixels, max_new_tokens=2, do_sample=False)
    assert spy == []
    assert torch.equal(logits(model, no_pixels), logits(model, batch))
    assert spy == [int(batch["apt_vit_token_counts"].sum())] * 2


def test_feature_fidelity_with_another_familys_processor_names_the_sizes():
    """A Qwen3-VL processor (16 px) with a Qwen2-VL model (14 px) failed deep in the tower: RuntimeError
    "shape '[-1, 3, 2, 14, 14]' is invalid for input of size 36864"."""
    for model_family, processor_family in (("qwen2-vl", "qwen3-vl"), ("qwen3-vl", "qwen2-vl")):
        model = tiny_model(model_family)
        with pytest.raises(ValueError, match=r"processor cuts patch, merge and temporal sizes .* model's vision tower"):
            feature_fidelity(model, processor(processor_family), two_images(processor_family)[0], ["budget:0.3"])
