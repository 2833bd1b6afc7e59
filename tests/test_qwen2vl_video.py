"""Videos through the APT processor and models (docs/qwen2vl.md §7): per-tubelet APT fields, stock exactness.

The clips are made here (random texture, so budget alpha=1 keeps every
``P`` px patch); the models are the tiny random float64 ones of
``test_qwen2vl_model``. With every kept patch at ``P`` px the APT model's
logits must equal the stock model's, fed transformers' own
``pixel_values_videos`` layout.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from aptviz.qwen2vl import APTQwen2VLProcessor, enable_apt  # noqa: E402
from aptviz.qwen2vl.processor import video_rows  # noqa: E402

from test_qwen2vl import _tiny_tokenizer  # noqa: E402
from test_qwen2vl_model import END, FAMILIES, IMAGE, START, TOL, VIDEO, logits, processor, tiny_model  # noqa: E402


def unit(family: str) -> int:
    return 32 if family == "qwen3-vl" else 28


def clip(family: str, frames: int, h_units: int, w_units: int, seed: int) -> np.ndarray:
    """``frames`` random-texture frames ``(T, H, W, 3)`` whose sides are whole merge units (no resize)."""
    u = unit(family)
    return np.random.default_rng(seed).integers(0, 256, (frames, h_units * u, w_units * u, 3), dtype=np.uint8)


def videos_of(ip, clips, **call) -> dict:
    """The processor's video fields; small video pixel bounds so the tiny clips keep their size."""
    u = ip.patch_size * ip.merge_size
    return dict(ip.preprocess_videos(clips, return_tensors="pt", video_min_pixels=4 * u * u, **call))


def patchify_reference(frames: np.ndarray, patch_size: int, merge_size: int, temporal: int) -> np.ndarray:
    """transformers' ``Qwen2VLVideoProcessor`` patchify (5.x) transcribed with torch ops: ``(T, C, H, W)`` -> rows."""
    video = torch.from_numpy(frames)[None]  # (B, T, C, H, W), as the video processor batches it
    b, t, c, h, w = video.shape
    gt, gh, gw = t // temporal, h // patch_size, w // patch_size
    patches = video.view(b, gt, temporal, c, gh // merge_size, merge_size, patch_size, gw // merge_size,
                         merge_size, patch_size)  # fmt: skip
    patches = patches.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return patches.reshape(b * gt * gh * gw, c * temporal * patch_size * patch_size).numpy()


def text_batch(family: str, video_tokens: list[list[int]], image_tokens: list[int | None], seed: int = 0) -> dict:
    """Left-padded rows: row b holds an optional image and one video whose tubelets carry ``video_tokens[b]`` pads.

    Qwen2-VL and Qwen2.5-VL put a video's pads in one run; Qwen3-VL puts each
    tubelet in its own run after a timestamp (two text tokens here), as its
    processor does.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b, (tubelets, image) in enumerate(zip(video_tokens, image_tokens)):
        row = torch.randint(1, 50, (2 + 3 * b,), generator=gen).tolist()
        if image is not None:
            row += [START] + [IMAGE] * image + [END] + torch.randint(1, 50, (2,), generator=gen).tolist()
        if family == "qwen3-vl":
            for n in tubelets:
                row += torch.randint(1, 50, (2,), generator=gen).tolist() + [START] + [VIDEO] * n + [END]
        else:
            row += [START] + [VIDEO] * sum(tubelets) + [END]
        rows.append(row + torch.randint(1, 50, (4,), generator=gen).tolist())
    longest = max(map(len, rows))
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, longest - len(row) :] = torch.tensor(row)
        mask[b, longest - len(row) :] = 1
    types = (ids == IMAGE).long() + 2 * (ids == VIDEO).long()
    return dict(input_ids=ids, attention_mask=mask, mm_token_type_ids=types)


def per_tubelet(counts: torch.Tensor, grid: torch.Tensor) -> list[list[int]]:
    """Counts per tubelet grouped by video."""
    return [list(map(int, c)) for c in torch.split(counts, grid[:, 0].tolist())]


def stock_counts(grid: torch.Tensor, merge: int) -> list[list[int]]:
    return [[int(g[1] * g[2]) // merge**2] * int(g[0]) for g in grid]


def stock_only(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("apt_")}


def batch_for(family: str, ip, apt_pads: bool, second_per_grid_ts=None, **call) -> dict:
    """Two rows: a 4-frame clip (2 tubelets); an image and a 6-frame clip (3 tubelets) of another size."""
    vids = videos_of(ip, [clip(family, 4, 2, 3, 1), clip(family, 6, 3, 2, 2)], **call)
    image = np.random.default_rng(3).integers(0, 256, (2 * unit(family), 2 * unit(family), 3), dtype=np.uint8)
    imgs = dict(ip(images=[image], return_tensors="pt", **call))
    grid = vids["video_grid_thw"]
    pads = per_tubelet(vids["apt_video_llm_token_counts"], grid) if apt_pads else stock_counts(grid, ip.merge_size)
    image_pads = int(imgs["apt_llm_token_counts"][0]) if apt_pads else int(imgs["image_grid_thw"][0].prod()) // 4
    batch = {**text_batch(family, pads, [None, image_pads]), **vids, **imgs}
    if second_per_grid_ts is not None:
        batch["second_per_grid_ts"] = torch.tensor(second_per_grid_ts, dtype=torch.float64)
    return batch


# --- the processor ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_video_rows_are_transformers_layout_and_alpha_one_rows_equal_them(family):
    ip = processor(family, patch_selection_method="budget", alpha=1.0)
    frames = clip(family, 5, 2, 3, 0)  # odd: the last frame is repeated, as transformers pads
    out = videos_of(ip, [frames])
    padded = np.concatenate([frames, frames[-1:]])
    from aptviz.compute.packing import normalize_pixels

    normalized = np.stack([normalize_pixels(f, ip.rescale_factor, ip.image_mean, ip.image_std) for f in padded])
    p, m = ip.patch_size, ip.merge_size
    reference = patchify_reference(normalized, p, m, ip.temporal_patch_size)
    assert np.array_equal(video_rows(normalized, p, m, ip.temporal_patch_size), reference)
    assert np.array_equal(out["pixel_values_videos"].numpy(), reference)
    assert out["video_grid_thw"].tolist() == [[3, 2 * unit(family) // p, 3 * unit(family) // p]]
    assert torch.equal(out["apt_video_pixel_values"], out["pixel_values_videos"])
    assert out["apt_video_vit_token_counts"].tolist() == [2 * 3 * m * m] * 3
    assert out["apt_video_llm_token_counts"].tolist() == [2 * 3] * 3


def test_each_tubelet_is_selected_like_the_command_line_does_it(tmp_path):
    from aptviz.compute.params import Params, RunSpec
    from aptviz.compute.video import analyse_video
    from test_video import moving_square_frames, write_clip

    path = write_clip(tmp_path / "sq.mkv", moving_square_frames(8))
    ip = processor("qwen2-vl", patch_selection_method="budget", alpha=0.3)
    out = ip.preprocess_videos(str(path), nframes=8, return_tensors="np")
    va = analyse_video(path, [RunSpec("budget", 0.3)], Params(nframes=8))
    assert out["video_grid_thw"].tolist() == [[4, *(s // 14 for s in va.clip.frames.shape[1:3])]]
    assert len(ip.last_video_selections) == len(va.tubelets) == 4
    for mine, theirs in zip(ip.last_video_selections, va.tubelets):
        assert all(np.array_equal(mine.masks[s], theirs.selections[0].selection.masks[s]) for s in (14, 28, 56))
    stats = va.stats().selections[0]
    assert out["apt_video_vit_token_counts"].tolist() == stats.tubelet_vit_tokens
    assert out["apt_video_llm_token_counts"].tolist() == stats.tubelet_llm_tokens


@pytest.mark.parametrize("apt_tokens", [False, True])
def test_processor_takes_videos_and_puts_the_apt_count_of_video_pads(apt_tokens):
    tok = _tiny_tokenizer()
    tok.pad_token = "<|endoftext|>"
    proc = APTQwen2VLProcessor(processor("qwen2-vl"), tok, apt_tokens=apt_tokens)
    frames = [clip("qwen2-vl", 4, 3, 4, 5), clip("qwen2-vl", 2, 3, 3, 6)]
    video = "<|vision_start|><|video_pad|><|vision_end|>"
    prompt = [f"describe {video} this", video]
    out = proc(videos=frames, text=prompt, return_tensors="pt", padding=True,
               videos_kwargs={"patch_selection_method": "budget", "alpha": 0.3, "video_min_pixels": 4 * 28 * 28})
    grid = out["video_grid_thw"]
    assert grid.tolist() == [[2, 6, 8], [1, 6, 6]]
    per_video = [sum(c) for c in per_tubelet(out["apt_video_llm_token_counts"], grid)]
    stock = [int(g.prod()) // 4 for g in grid]
    pads = (out["input_ids"] == proc.video_token_id).sum(-1).tolist()
    assert pads == (per_video if apt_tokens else stock)
    assert all(a < b for a, b in zip(per_video, stock))
    assert (out["mm_token_type_ids"] == 2).sum(-1).tolist() == pads
    with pytest.raises(ValueError, match="video"):
        proc(videos=frames, text="<|video_pad|>", videos_kwargs={"video_min_pixels": 4 * 28 * 28})


# --- the models -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_one_video_gives_the_stock_logits_and_greedy_tokens(family):
    model = tiny_model(family)
    ip = processor(family, patch_selection_method="budget", alpha=1.0)
    spgt = [0.5, 2.0] if family == "qwen2.5-vl" else None  # the t positions scale with it, as stock
    batch = batch_for(family, ip, apt_pads=True, second_per_grid_ts=spgt)
    assert batch["attention_mask"][0, 0] == 0  # left padding
    stock = stock_only(batch)
    expected = logits(model, stock)
    want = model.generate(**stock, max_new_tokens=4, do_sample=False)
    enable_apt(model)
    got = logits(model, batch)
    assert (got - expected).abs().max().item() < TOL
    assert torch.equal(model.generate(**batch, max_new_tokens=4, do_sample=False), want)
    # the stock model (no apt_* inputs) is unchanged
    assert (logits(model, stock) - expected).abs().max().item() < TOL


def test_second_per_grid_ts_moves_the_video_positions_as_stock():
    model = enable_apt(tiny_model("qwen2.5-vl"))
    ip = processor("qwen2.5-vl", patch_selection_method="budget", alpha=0.3)
    batch = batch_for("qwen2.5-vl", ip, apt_pads=True, second_per_grid_ts=[0.5, 2.0])
    slow = dict(batch, second_per_grid_ts=torch.tensor([1.0, 4.0], dtype=torch.float64))
    rope = {k: v for k, v in batch.items() if k != "pixel_values" and k != "pixel_values_videos"}
    fast_pos, _ = model.model.get_rope_index(**rope)
    slow_pos, _ = model.model.get_rope_index(**{**rope, "second_per_grid_ts": slow["second_per_grid_ts"]})
    video = batch["input_ids"] == VIDEO
    for b, tubelets in enumerate(per_tubelet(batch["apt_video_llm_token_counts"], batch["video_grid_thw"])):
        t_fast, t_slow = fast_pos[0, b][video[b]], slow_pos[0, b][video[b]]
        index = torch.repeat_interleave(torch.arange(len(tubelets)), torch.tensor(tubelets))  # each token's tubelet
        step = int(t_fast[index == 1][0] - t_fast[0])
        assert step > 0 and torch.equal(t_fast - t_fast[0], index * step)  # t per tubelet, the stock interval
        assert torch.equal(t_slow - t_slow[0], 2 * (t_fast - t_fast[0]))  # twice the seconds per tubelet
    assert torch.equal(fast_pos[1:][:, video], slow_pos[1:][:, video])  # h, w as before


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_at_budget_0_3_with_the_apt_video_pad_count(family):
    model = enable_apt(tiny_model(family))
    ip = processor(family, patch_selection_method="budget", alpha=0.3)
    batch = batch_for(family, ip, apt_pads=True)
    pads = int((batch["input_ids"] == VIDEO).sum())
    stock = int((batch["video_grid_thw"].prod(-1) // ip.merge_size**2).sum())
    assert pads == int(batch["apt_video_llm_token_counts"].sum()) < stock
    seen: list[int] = []
    model.model.visual.patch_embed.register_forward_hook(lambda mod, args, out: seen.append(int(args[0].shape[0])))
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
    rows = sorted(seen[:2])
    assert rows == sorted([int(batch["apt_vit_token_counts"].sum()), int(batch["apt_video_vit_token_counts"].sum())])
    assert all(n == 1 for n in seen[2:])  # decode steps: the tower does not run again
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_stock_video_pads_with_apt_video_features_name_apt_tokens():
    model = enable_apt(tiny_model("qwen2-vl"))
    ip = processor("qwen2-vl", patch_selection_method="budget", alpha=0.3)
    batch = batch_for("qwen2-vl", ip, apt_pads=False)
    batch = {k: v for k, v in batch.items() if not k.startswith("apt_") or k.startswith("apt_video_")}
    with pytest.raises(ValueError, match="apt_tokens=True"):
        logits(model, batch)


def test_a_video_file_is_decoded_and_sampled_and_a_bad_one_is_one_clear_error(tmp_path):
    from test_video import moving_square_frames, write_clip

    path = write_clip(tmp_path / "sq.mkv", moving_square_frames(12))
    proc = APTQwen2VLProcessor(processor("qwen2-vl"), _tiny_tokenizer(), apt_tokens=True)
    out = proc(videos=str(path), text="<|vision_start|><|video_pad|><|vision_end|>", nframes=4,
               videos_kwargs={"patch_selection_method": "budget", "alpha": 0.5})  # fmt: skip
    assert out["video_grid_thw"][0][0] == 2  # 4 sampled frames
    assert len(out["input_ids"][0]) == 2 + sum(out["apt_video_llm_token_counts"])
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match=r"bad\.mp4: not a video"):
        proc(videos=str(tmp_path / "bad.mp4"), text="<|video_pad|>")


@pytest.mark.parametrize("family", FAMILIES)
def test_the_processors_text_runs_on_each_family_as_its_own_processor_writes_it(family):
    tok = _tiny_tokenizer()
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (("image_token_id", "<|image_pad|>"),
           ("video_token_id", "<|video_pad|>"), ("vision_start_token_id", "<|vision_start|>"),
           ("vision_end_token_id", "<|vision_end|>"))}  # fmt: skip
    model = tiny_model(family, ids=ids)
    ip = processor(family, patch_selection_method="budget", alpha=1.0)
    proc = APTQwen2VLProcessor(ip, tok, apt_tokens=True, video_style=family)
    u = unit(family)
    call = dict(videos=[clip(family, 4, 2, 3, 7)], text="describe <|vision_start|><|video_pad|><|vision_end|> this",
                return_tensors="pt", videos_kwargs={"video_min_pixels": 4 * u * u, "fps": 4.0})  # fmt: skip
    batch = dict(proc(**call))
    start = (batch["input_ids"] == ids["vision_start_token_id"]).sum()
    assert start == (2 if family == "qwen3-vl" else 1)  # Qwen3-VL: one vision block per tubelet
    if family == "qwen3-vl":
        # frames at 4 fps: tubelets at (0 + 0.25) / 2 and (0.5 + 0.75) / 2 s, written <0.1 seconds>, <0.6 seconds>
        assert ip.last_video_metadata[0]["tubelet_seconds"] == [0.125, 0.625]
    if family == "qwen2.5-vl":
        assert batch["second_per_grid_ts"].tolist() == [0.5]  # temporal patch size 2 over 4 fps
    else:
        assert "second_per_grid_ts" not in batch
    expected = logits(model, stock_only(batch))  # every patch kept at P px: the stock count of pads too
    enable_apt(model)
    assert (logits(model, batch) - expected).abs().max().item() < TOL
    fewer = dict(proc(**call, patch_selection_method="budget", alpha=0.3))
    pads = int((fewer["input_ids"] == ids["video_token_id"]).sum())
    assert pads == int(fewer["apt_video_llm_token_counts"].sum()) < int(batch["apt_video_llm_token_counts"].sum())
    assert model.generate(**fewer, max_new_tokens=2, do_sample=False).shape[1] == fewer["input_ids"].shape[1] + 2


@pytest.mark.parametrize(("processor_class", "style"), [("Qwen2VLProcessor", "qwen2-vl"),
                         ("Qwen2_5_VLProcessor", "qwen2.5-vl"), ("Qwen3VLProcessor", "qwen3-vl")])  # fmt: skip
def test_from_pretrained_takes_the_video_style_from_the_checkpoint_and_a_saved_processor_keeps_it(
    tmp_path, processor_class, style
):
    import json

    _tiny_tokenizer().save_pretrained(tmp_path)
    config = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": processor_class, "patch_size": 14}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    proc = APTQwen2VLProcessor.from_pretrained(tmp_path)
    assert proc.video_style == style
    proc.save_pretrained(tmp_path / "saved")
    assert APTQwen2VLProcessor.from_pretrained(tmp_path / "saved").video_style == style
    assert APTQwen2VLProcessor.from_pretrained(tmp_path, video_style="qwen2-vl").video_style == "qwen2-vl"
    with pytest.raises(ValueError, match="video_style"):
        APTQwen2VLProcessor(tokenizer=_tiny_tokenizer(), video_style="qwen4")


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen3-vl"])
def test_apt_video_beside_a_stock_image_gives_the_stock_logits_at_alpha_one(family):
    model = tiny_model(family)
    ip = processor(family, patch_selection_method="budget", alpha=1.0)
    batch = batch_for(family, ip, apt_pads=True)
    expected = logits(model, stock_only(batch))
    enable_apt(model)
    video_only = {k: v for k, v in batch.items() if not k.startswith("apt_") or k.startswith("apt_video_")}
    assert (logits(model, video_only) - expected).abs().max().item() < TOL


def test_one_attention_segment_per_tubelet():
    model = enable_apt(tiny_model("qwen2-vl"))
    ip = processor("qwen2-vl", patch_selection_method="budget", alpha=0.3)
    vids = videos_of(ip, [clip("qwen2-vl", 4, 2, 3, 1), clip("qwen2-vl", 6, 3, 2, 2)])
    apt = {k.replace("apt_video_", "apt_"): v for k, v in vids.items() if k.startswith("apt_video_")}
    with torch.no_grad():
        out = model.model.get_apt_video_features(vids["video_grid_thw"], **apt)
    counts = vids["apt_video_vit_token_counts"]
    assert len(counts) == 5  # 2 + 3 tubelets
    assert out.apt_plan.cu_seqlens.tolist() == [0, *counts.cumsum(0).tolist()]
    per_video = [sum(c) for c in per_tubelet(vids["apt_video_llm_token_counts"], vids["video_grid_thw"])]
    assert [len(f) for f in out.pooler_output] == per_video
