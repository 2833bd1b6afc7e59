"""The APT image processor for the whole Qwen2-VL family: from_pretrained on the checkpoints' own
preprocessor_config.json (local copies in tests/data) and from_preset, against transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

import aptviz  # noqa: E402
from aptviz.compute.entropy import compute_maps  # noqa: E402
from aptviz.compute.presets import preset  # noqa: E402
from aptviz.compute.resize import resize_image  # noqa: E402
from aptviz.compute.selection import select_patches  # noqa: E402
from aptviz.compute.tokens import llm_tokens  # noqa: E402
from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor  # noqa: E402

from test_qwen2vl import SELECTIONS, _reference_rows, _tiny_tokenizer  # noqa: E402

DATA = Path(__file__).parent / "data"
MODELS = ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]


@pytest.fixture(scope="module")
def photos(sample_paths):
    return [aptviz.load_image(p) for p in sample_paths]


def _config(model: str) -> dict:
    return json.loads((DATA / model / "preprocessor_config.json").read_text())


def _bounds(ip) -> tuple[int, int, int]:
    return ip.patch_size * ip.merge_size, ip.size["shortest_edge"], ip.size["longest_edge"]


@pytest.mark.parametrize("model", MODELS)
def test_from_pretrained_reads_each_checkpoints_config(model):
    config = _config(model)
    ip = APTQwen2VLImageProcessor.from_pretrained(DATA / model)
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (config["patch_size"], 2, 2)
    assert list(ip.image_mean) == config["image_mean"] and list(ip.image_std) == config["image_std"]
    size = config.get("size") or {"shortest_edge": config["min_pixels"], "longest_edge": config["max_pixels"]}
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (size["shortest_edge"], size["longest_edge"])
    assert (size["shortest_edge"], size["longest_edge"]) == preset(model).checkpoint_pixels
    assert ip.patch_size == preset(model).patch_size and tuple(ip.image_mean) == preset(model).image_mean


@pytest.mark.parametrize("model", MODELS)
def test_both_routes_equal_transformers_and_select_patches(photos, model):
    ref = Qwen2VLImageProcessorPil.from_pretrained(DATA / model)
    expected = ref(photos)
    routes = {
        "from_pretrained": APTQwen2VLImageProcessor.from_pretrained(DATA / model),
        "from_preset": APTQwen2VLImageProcessor.from_preset(model, checkpoint_pixels=True),
    }
    p = preset(model).patch_size
    for name, ip in routes.items():
        for kw in SELECTIONS[:2]:
            out = ip(photos, **kw)
            assert np.array_equal(out["pixel_values"], expected["pixel_values"]), name
            assert np.array_equal(out["image_grid_thw"], expected["image_grid_thw"]), name
            start = 0
            for i, img in enumerate(photos):
                resized = np.asarray(resize_image(img, *_bounds(ip)))
                sel = select_patches(compute_maps(resized, p), kw["patch_selection_method"], alpha=kw["alpha"])
                assert set(sel.masks) == {p, 2 * p, 4 * p}
                assert out["apt_vit_token_counts"][i] == sel.tokens
                assert out["apt_llm_token_counts"][i] == llm_tokens(sel.tokens_by_scale, p, 2)
                for ps in sel.masks:
                    assert np.array_equal(ip.last_selections[i].masks[ps], sel.masks[ps])
                # SPEC 6 rows at P = the configured patch size, normalized with the config's mean/std
                chw = np.moveaxis(resized, -1, 0)
                pixels = ref.normalize(ref.rescale(chw, ref.rescale_factor), ref.image_mean, ref.image_std)
                rows, sizes, coords = _reference_rows(pixels, sel, patch=p)
                stop = start + len(rows)
                assert np.array_equal(out["apt_patch_sizes"][start:stop], sizes)
                assert np.array_equal(out["apt_patch_coords"][start:stop], coords)
                assert np.abs(out["apt_pixel_values"][start:stop] - rows).max() <= 2e-5
                start = stop
            assert set(out["apt_patch_sizes"].tolist()) == {p, 2 * p, 4 * p}
            assert out["apt_pixel_values"].shape[1] == 3 * 2 * p * p


def test_qwen3vl_budget_one_gives_pixel_values_row_for_row(photos):
    out = APTQwen2VLImageProcessor.from_preset("qwen3-vl", patch_selection_method="budget", alpha=1.0)(photos)
    assert np.array_equal(out["apt_pixel_values"], out["pixel_values"])
    assert set(out["apt_patch_sizes"].tolist()) == {16}
    assert out["apt_llm_token_counts"].tolist() == (out["image_grid_thw"].prod(axis=1) // 4).tolist()


@pytest.mark.parametrize("model", MODELS)
def test_from_preset_defaults_match_the_command_line(photos, model):
    ip = APTQwen2VLImageProcessor.from_preset(model, patch_selection_method="budget", alpha=0.3)
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (3136, 1003520)
    out = ip(photos[0])
    stats = aptviz.analyze("sample_images/" + "astronaut.png", ["budget:0.3"], model=model)
    sel = stats["selections"][0]
    assert out["image_grid_thw"][0].tolist()[1:] == [s // ip.patch_size for s in stats["image"]["resized_size"][::-1]]
    assert (out["apt_vit_token_counts"][0], out["apt_llm_token_counts"][0]) == (sel["vit_tokens"], sel["llm_tokens"])


def test_from_preset_overrides_win_and_bad_names_are_refused():
    ip = APTQwen2VLImageProcessor.from_preset("qwen3-vl", max_pixels=200_000, patch_selection_method="v2")
    assert (ip.size["longest_edge"], ip.patch_size, ip.patch_selection_method) == (200_000, 16, "v2")
    with pytest.raises(ValueError, match="unknown model 'qwen9'"):
        APTQwen2VLImageProcessor.from_preset("qwen9")


def test_image_pad_count_for_a_qwen3vl_checkpoint(photos, tmp_path):
    for name in ("preprocessor_config.json",):
        (tmp_path / name).write_text((DATA / "qwen3-vl" / name).read_text())
    _tiny_tokenizer().save_pretrained(tmp_path)
    proc = APTQwen2VLProcessor.from_pretrained(tmp_path)
    assert proc.image_processor.patch_size == 16
    prompt = "<|vision_start|><|image_pad|><|vision_end|> describe this image"
    plain = Qwen2VLImageProcessorPil.from_pretrained(DATA / "qwen3-vl")(photos[1])["image_grid_thw"]
    for kw in SELECTIONS:
        out = proc(images=photos[1], text=prompt, images_kwargs=dict(kw), return_tensors="np")
        assert int((out["input_ids"][0] == proc.image_token_id).sum()) == int(plain.prod()) // 4
        assert np.array_equal(out["image_grid_thw"], plain)
        assert set(out["apt_patch_sizes"].tolist()) <= {16, 32, 64}
    # the same through a processor built from the preset (no checkpoint folder at all)
    built = APTQwen2VLProcessor(
        image_processor=APTQwen2VLImageProcessor.from_preset("qwen3-vl", checkpoint_pixels=True),
        tokenizer=_tiny_tokenizer(),
    )
    again = built(images=photos[1], text=prompt, return_tensors="np")
    assert int((again["input_ids"][0] == built.image_token_id).sum()) == int(plain.prod()) // 4
