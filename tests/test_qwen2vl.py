"""aptviz.qwen2vl against transformers' own Qwen2-VL image processor, offline."""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

import aptviz  # noqa: E402
from aptviz.compute.entropy import compute_maps  # noqa: E402
from aptviz.compute.resize import resize_image  # noqa: E402
from aptviz.compute.selection import select_patches  # noqa: E402
from aptviz.compute.tokens import llm_tokens  # noqa: E402
from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor  # noqa: E402

SELECTIONS = [
    {"patch_selection_method": "budget", "alpha": 0.3},
    {"patch_selection_method": "v2", "alpha": 1.0},
    {"patch_selection_method": "v1", "thresholds": (6.0, 5.5)},  # the default 3,2 keeps 14 px almost everywhere
]


@pytest.fixture(scope="module")
def photos(sample_paths):
    return [aptviz.load_image(p) for p in sample_paths]


@pytest.fixture(scope="module")
def budget_out(photos):
    ip = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3)
    return ip, ip(photos)


def _normalized(img, ref: Qwen2VLImageProcessorPil) -> np.ndarray:
    """aptviz's resize, then transformers' own rescale and normalization: (C, H, W) float32."""
    chw = np.moveaxis(np.asarray(resize_image(img)), -1, 0)
    return ref.normalize(ref.rescale(chw, ref.rescale_factor), ref.image_mean, ref.image_std)


def _reference_rows(pixels: np.ndarray, sel, patch=14, merge=2, temporal=2):
    """Kept patches one by one: area average of the crop, sorted by (unit row, unit col, row, col)."""
    items = []
    for ps, mask in sel.masks.items():
        r = ps // patch
        for gy, gx in zip(*np.nonzero(mask)):
            y, x = gy * r, gx * r  # top-left in P-cells
            crop = pixels[:, y * patch : y * patch + ps, x * patch : x * patch + ps].astype(np.float64)
            small = crop.reshape(3, patch, r, patch, r).mean(axis=(2, 4))
            key = (y // merge, x // merge, y % merge, x % merge)
            items.append((key, ps, (y, x), np.repeat(small[:, None], temporal, axis=1).ravel()))
    items.sort(key=lambda t: t[0])
    return (
        np.stack([t[3] for t in items]),
        np.array([t[1] for t in items]),
        np.array([t[2] for t in items]),
    )


def test_standard_outputs_equal_transformers(photos, budget_out):
    _, out = budget_out
    ref = Qwen2VLImageProcessorPil()(photos)
    assert np.array_equal(out["pixel_values"], ref["pixel_values"])
    assert np.array_equal(out["image_grid_thw"], ref["image_grid_thw"])
    small = {"size": {"shortest_edge": 3136, "longest_edge": 150_000}}
    ip = APTQwen2VLImageProcessor(**small)
    one = ip(photos[0], patch_selection_method="v2", alpha=0.8, return_tensors="pt")
    ref_one = Qwen2VLImageProcessorPil(**small)(photos[0], return_tensors="pt")
    assert one["pixel_values"].dtype == ref_one["pixel_values"].dtype
    assert (one["pixel_values"] == ref_one["pixel_values"]).all()
    assert (one["image_grid_thw"] == ref_one["image_grid_thw"]).all()


def test_the_processor_resizes_exactly_as_aptviz(photos):
    ip = APTQwen2VLImageProcessor()
    for img in photos:
        chw = ip.process_image(img, do_convert_rgb=True)
        resized = ip.resize(chw, size=ip.size, resample=ip.resample, factor=ip.patch_size * ip.merge_size)
        assert np.array_equal(np.moveaxis(resized, 0, -1), np.asarray(resize_image(img)))


def test_all_finest_patches_give_pixel_values_row_for_row(photos):
    out = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=1.0)(photos)
    assert np.array_equal(out["apt_pixel_values"], out["pixel_values"])
    assert set(out["apt_patch_sizes"].tolist()) == {14}
    assert out["apt_vit_token_counts"].tolist() == out["image_grid_thw"].prod(axis=1).tolist()
    assert out["apt_llm_token_counts"].tolist() == (out["image_grid_thw"].prod(axis=1) // 4).tolist()


@pytest.mark.parametrize("kwargs", SELECTIONS, ids=lambda k: k["patch_selection_method"])
def test_apt_rows_are_area_averages_in_token_order(photos, kwargs):
    ip = APTQwen2VLImageProcessor()
    out = ip(photos, **kwargs)
    ref = Qwen2VLImageProcessorPil()
    start = 0
    for img, sel, count in zip(photos, ip.last_selections, out["apt_vit_token_counts"]):
        rows, sizes, coords = _reference_rows(_normalized(img, ref), sel)
        stop = start + int(count)
        assert len(rows) == count
        assert np.array_equal(out["apt_patch_sizes"][start:stop], sizes)
        assert np.array_equal(out["apt_patch_coords"][start:stop], coords)
        assert np.abs(out["apt_pixel_values"][start:stop] - rows).max() <= 2e-5
        start = stop
    assert set(out["apt_patch_sizes"].tolist()) == {14, 28, 56}  # a real mix of patch sizes is checked
    assert start == len(out["apt_pixel_values"]) and out["apt_pixel_values"].dtype == np.float32


@pytest.mark.parametrize("kwargs", SELECTIONS, ids=lambda k: k["patch_selection_method"])
def test_token_counts_equal_select_patches(photos, kwargs):
    ip = APTQwen2VLImageProcessor(**kwargs)
    out = ip(photos)
    method = kwargs["patch_selection_method"]
    for i, img in enumerate(photos):
        maps = compute_maps(np.asarray(resize_image(img)))
        sel = select_patches(maps, method, alpha=kwargs.get("alpha", 1.0), thresholds=kwargs.get("thresholds", (3, 2)))
        assert out["apt_vit_token_counts"][i] == sel.tokens
        assert out["apt_llm_token_counts"][i] == llm_tokens(sel.tokens_by_scale)
        assert ip.last_budget_info[i] == (None if sel.budget_info is None else dict(sel.budget_info))
        assert ip.last_budget_info[i] is None or type(ip.last_budget_info[i]) is dict
        for ps in sel.masks:
            assert np.array_equal(ip.last_selections[i].masks[ps], sel.masks[ps])
        assert (out["apt_patch_sizes"] == 28).sum() == sum(s.tokens_by_scale[28] for s in ip.last_selections)


def test_three_ways_to_choose_the_selection(photos):
    img = photos[1]
    built = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3)
    budget = built(img)["apt_vit_token_counts"][0]
    assert built.last_budget_info[0]["budget"] == round(0.3 * 704)
    at_call = built(img, patch_selection_method="v2", alpha=1.0)
    assert at_call["apt_vit_token_counts"][0] != budget and built.last_budget_info == [None]
    assert built(img)["apt_vit_token_counts"][0] == budget  # the call-time choice did not stick
    built.patch_selection_method = "v1"
    built.thresholds = (4.0, 3.0)
    v1 = built(img)
    assert (
        v1["apt_vit_token_counts"][0]
        == select_patches(compute_maps(np.asarray(resize_image(img))), "v1", thresholds=(4.0, 3.0)).tokens
    )
    assert built.to_dict()["patch_selection_method"] == "v1"


@pytest.mark.parametrize(
    ("kwargs", "cli_args", "message"),
    [
        (
            {"patch_selection_method": "budget", "alpha": 1.5},
            ["-m", "budget", "-a", "1.5"],
            "budget alpha must be in [0, 1], got 1.5",
        ),
        (
            {"patch_selection_method": "v2", "alpha": -0.5},
            ["-m", "v2", "-a", "-0.5"],
            "v2 alpha must be >= 0, got -0.5",
        ),
        (
            {"patch_selection_method": "v1", "thresholds": (3.0,)},
            ["--thresholds", "3"],
            "--thresholds needs 2 value(s)",
        ),
        ({"patch_selection_method": "budgte"}, ["-m", "budgte"], "unknown method 'budgte' (did you mean 'budget'?)"),
    ],
)
def test_bad_values_raise_the_command_lines_message(photos, tmp_path, kwargs, cli_args, message):
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    with pytest.raises(ValueError) as built:
        APTQwen2VLImageProcessor(**kwargs)
    with pytest.raises(ValueError) as called:
        APTQwen2VLImageProcessor()(photos[1], **kwargs)
    cli = CliRunner().invoke(app, ["sample_images/chelsea.png", "-o", str(tmp_path), *cli_args])
    assert cli.exit_code == 2
    assert message in str(built.value) and str(built.value) == str(called.value)
    assert str(built.value) in " ".join(cli.output.split())


def test_a_bad_attribute_is_refused_at_call_time(photos):
    ip = APTQwen2VLImageProcessor()
    ip.patch_selection_method = "v3"
    with pytest.raises(ValueError, match="unknown method 'v3'"):
        ip(photos[1])


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    words = ["[UNK]", "user", "assistant", "describe", "this", "image"]
    model = models.WordLevel({t: i for i, t in enumerate(specials + words)}, unk_token="[UNK]")
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", additional_special_tokens=specials)


def test_processor_routes_images_kwargs_and_keeps_the_image_pad_count(photos):
    tok = _tiny_tokenizer()
    proc = APTQwen2VLProcessor(image_processor=APTQwen2VLImageProcessor(), tokenizer=tok)
    prompt = "<|im_start|> user <|vision_start|><|image_pad|><|vision_end|> describe this image <|im_end|>"
    pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
    plain = Qwen2VLImageProcessorPil()(photos[1])["image_grid_thw"][0]
    expected_pads = int(np.prod(plain)) // 4
    counts = {}
    for kw in [{}, SELECTIONS[0], SELECTIONS[1]]:
        out = proc(images=photos[1], text=prompt, images_kwargs=dict(kw), return_tensors="np")
        assert int((out["input_ids"][0] == pad_id).sum()) == expected_pads
        assert np.array_equal(out["pixel_values"], Qwen2VLImageProcessorPil()(photos[1])["pixel_values"])
        counts[kw.get("patch_selection_method", "v1")] = int(out["apt_vit_token_counts"][0])
        assert len(out["apt_pixel_values"]) == counts[kw.get("patch_selection_method", "v1")]
    assert len(set(counts.values())) == 3  # each route gave its own selection
    assert proc.image_processor.last_budget_info == [None]  # v2 was the last call
    proc(images=photos[1], text=prompt, images_kwargs=SELECTIONS[0])
    assert proc.image_processor.last_budget_info[0]["alpha"] == 0.3
    assert proc.image_processor.patch_selection_method == "v1"  # call-time only
    with pytest.raises(ValueError, match=r"budget alpha must be in \[0, 1\]"):
        proc(images=photos[1], text=prompt, images_kwargs={"patch_selection_method": "budget", "alpha": 2.0})


def test_pixel_values_run_through_a_tiny_qwen2vl_vision_tower(photos):
    torch = pytest.importorskip("torch")
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    torch.manual_seed(0)
    config = Qwen2VLVisionConfig(depth=1, embed_dim=32, hidden_size=48, num_heads=2, mlp_ratio=2)
    tower = Qwen2VisionTransformerPretrainedModel(config).eval()
    out = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3)(photos[1:], return_tensors="pt")
    with torch.no_grad():
        merged = tower(out["pixel_values"], grid_thw=out["image_grid_thw"]).pooler_output
        apt_embedded = tower.patch_embed(out["apt_pixel_values"])
    assert merged.shape == (int(out["image_grid_thw"].prod(dim=1).sum()) // 4, 48)
    assert torch.isfinite(merged).all()
    # APT rows have pixel_values' row layout: the same patch embedding takes them
    assert apt_embedded.shape == (len(out["apt_pixel_values"]), 32)


@pytest.mark.slow
def test_export_tokens_equal_the_processor(photos, sample_paths, tmp_path):
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    args = [str(p) for p in sample_paths] + ["-m", "budget:0.3", "-m", "v2:1", "-o", str(tmp_path), "-q"]
    r = CliRunner().invoke(app, [*args, "--export-tokens"])
    assert r.exit_code == 0, r.output
    ip = APTQwen2VLImageProcessor()
    for path, img in zip(sample_paths, photos):
        with np.load(tmp_path / path.stem / "tokens.npz") as z:
            for label, kw in [("budget_alpha0.3", SELECTIONS[0]), ("v2_alpha1", SELECTIONS[1])]:
                out = ip(img, **kw)
                assert np.array_equal(z["image_grid_thw"], out["image_grid_thw"])
                for field in (
                    "apt_pixel_values",
                    "apt_patch_sizes",
                    "apt_patch_coords",
                    "apt_vit_token_counts",
                    "apt_llm_token_counts",
                ):
                    assert np.array_equal(z[f"{field}_{label}"], out[field]), (path.name, label, field)


def test_example_prints_vit_and_llm_tokens_against_uniform(capsys):
    import runpy

    from conftest import ROOT

    module = runpy.run_path(str(ROOT / "examples" / "qwen2vl_tokens.py"))
    module["main"]([str(ROOT / "sample_images" / "chelsea.png"), "-m", "budget", "-a", "0.3"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("chelsea.png"))
    # 209 of 704 ViT tokens, 98 of 176 LLM tokens (148/4 + 35 + 26), as select_patches and llm_tokens give
    sel = select_patches(
        compute_maps(np.asarray(resize_image(aptviz.load_image(ROOT / "sample_images/chelsea.png")))),
        "budget",
        alpha=0.3,
    )
    assert f"{sel.tokens} /   704" in line and f"{llm_tokens(sel.tokens_by_scale)} /  176" in line


def test_save_and_load_keep_the_apt_options_offline(photos, tmp_path):
    ip = APTQwen2VLImageProcessor(patch_selection_method="budget", alpha=0.3, max_pixels=200_000)
    ip(photos[1])  # the last call's results are not configuration
    ip.save_pretrained(tmp_path)
    loaded = APTQwen2VLImageProcessor.from_pretrained(tmp_path)
    assert (loaded.patch_selection_method, loaded.alpha, tuple(loaded.thresholds)) == ("budget", 0.3, (3.0, 2.0))
    assert loaded.last_budget_info == []
    a, b = ip(photos[0]), loaded(photos[0])
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_processor_from_a_qwen2vl_checkpoint_folder(photos, tmp_path):
    # a checkpoint folder as Qwen2-VL ships it: its tokenizer and transformers' own image-processor config
    _tiny_tokenizer().save_pretrained(tmp_path)
    config = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "min_pixels": 3136,
        "max_pixels": 100_000,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    proc = APTQwen2VLProcessor.from_pretrained(tmp_path)
    assert type(proc.image_processor) is APTQwen2VLImageProcessor
    prompt = "<|vision_start|><|image_pad|><|vision_end|> describe this image"
    out = proc(images=photos[0], text=prompt, images_kwargs=SELECTIONS[0], return_tensors="np")
    plain = Qwen2VLImageProcessorPil(max_pixels=100_000)(photos[0])
    assert np.array_equal(out["image_grid_thw"], plain["image_grid_thw"])  # the checkpoint's max_pixels
    assert int((out["input_ids"][0] == proc.image_token_id).sum()) == int(plain["image_grid_thw"].prod()) // 4
    assert proc.image_processor.last_budget_info[0]["alpha"] == 0.3


import subprocess  # noqa: E402
import sys  # noqa: E402

from conftest import ROOT  # noqa: E402


def test_qwen2vl_without_transformers_is_one_import_error():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'transformers':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import aptviz.qwen2vl\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ImportError ") and "aptviz[qwen]" in r.stdout and "CPU build of torch" in r.stdout
    assert "Traceback" not in r.stderr
