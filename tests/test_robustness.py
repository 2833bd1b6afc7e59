"""Issue 5: bad inputs refused clearly, awkward inputs right, nothing lost."""

import json
import os
import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import aptviz
from aptviz.cli.command import app
from aptviz.compute.loading import open_image
from aptviz.compute.params import Params, expand_runs
from aptviz.compute.selection import coverage
from aptviz.errors import InputError
from aptviz.pipeline import process_image

from conftest import textured



def png_bomb(path: Path, width=30000, height=30000) -> Path:
    """A tiny PNG whose header declares 900 megapixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def truncated_jpeg(path: Path) -> Path:
    Image.fromarray(textured(200, 300)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_decompression_bomb_is_refused_fast_with_low_memory(tmp_path):
    path = png_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="decompression bomb"):
        open_image(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize(
    "maker,reason",
    [
        (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
        (lambda p: p.write_text("hello, I am text"), "not a recognised image format"),
        (truncated_jpeg, "truncated"),
    ],
)
def test_bad_files_raise_input_error(tmp_path, maker, reason):
    path = tmp_path / "bad.jpg"
    maker(path)
    with pytest.raises(InputError, match=reason):
        open_image(path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(textured(20, 20)).save(path)
    if os.geteuid() != 0:  # root reads anything: simulate the OS refusing instead
        path.chmod(0)
    else:
        import aptviz.compute.loading as loading

        def deny(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(loading.Image, "open", deny)
    with pytest.raises(InputError, match="permission denied"):
        open_image(path)


def test_any_other_decoder_exception_is_an_input_error(tmp_path, monkeypatch):
    import aptviz.compute.loading as loading

    path = tmp_path / "x.png"
    Image.fromarray(textured(20, 20)).save(path)

    def explode(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(loading.ImageOps, "exif_transpose", explode)
    with pytest.raises(InputError, match="RuntimeError: decoder exploded"):
        open_image(path)


def test_aspect_ratio_over_200(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (602, 3), (9, 9, 9)).save(path)
    with pytest.raises(InputError, match="aspect ratio must be smaller than 200"):
        aptviz.analyze(path)


def test_small_and_thin_images_follow_smart_resize(tmp_path):
    Image.fromarray(textured(10, 10)).save(tmp_path / "tiny.png")
    Image.fromarray(textured(1, 150)).save(tmp_path / "thin.png")
    assert aptviz.analyze(tmp_path / "tiny.png")["image"]["resized_size"] == [56, 56]
    assert aptviz.analyze(tmp_path / "thin.png")["image"]["resized_size"] == [700, 28]


def test_single_colour_image_is_zero_entropy_and_budget_deterministic(tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (12, 200, 77)).save(path)
    a = aptviz.analyze(path, methods=["budget", "v1"], alphas=[0.37])
    b = aptviz.analyze(path, methods=["budget", "v1"], alphas=[0.37])
    assert a == b
    for s in a["entropy"].values():
        assert s["min"] == s["max"] == 0.0
    budget = a["selections"][0]
    info = budget["budget_info"]
    n = budget["base_small_tokens"]
    assert info["budget"] == round(0.37 * n) and info["tokens"] == info["base_tokens"] + 3 * info["k"]
    assert abs(budget["retention"] - 0.37) <= 3 / n
    assert a["selections"][1]["tokens_by_scale"]["14"] < n  # v1 merges flat areas


def _write_awkward(folder: Path) -> dict[str, str]:
    """Valid but awkward inputs -> the expected resized size as 'WxH'."""
    folder.mkdir(parents=True, exist_ok=True)
    exp = {}
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(folder / "deep16.png")
    exp["deep16.png"] = "56x56"
    Image.fromarray(textured(120, 90)).convert("CMYK").save(folder / "cmyk.jpg")
    exp["cmyk.jpg"] = "84x112"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(textured(90, 120)).save(folder / "rotated.jpg", exif=exif)
    exp["rotated.jpg"] = "84x112"  # rotated by EXIF: portrait
    pal = Image.fromarray(textured(60, 80)).convert("P")
    pal.save(folder / "palette.png", transparency=0)
    exp["palette.png"] = "84x56"
    Image.fromarray(np.dstack([textured(60, 60)[..., 0], np.full((60, 60), 128, np.uint8)]), mode="LA").save(
        folder / "gray_alpha.png"
    )
    exp["gray_alpha.png"] = "56x56"
    frames = [Image.fromarray(textured(70, 70, seed=i)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    exp["anim.gif"] = "56x56"  # 70 / 28 = 2.5 rounds to 2 (Python round)
    frames[0].save(folder / "pages.tiff", save_all=True, append_images=frames[1:2])
    exp["pages.tiff"] = "56x56"
    Image.fromarray(textured(100, 150)).save(folder / "pic.webp")
    exp["pic.webp"] = "140x112"
    Image.fromarray(textured(100, 150)).save(folder / "pic.bmp")
    exp["pic.bmp"] = "140x112"
    Image.fromarray(textured(10, 10)).save(folder / "ten.png")
    exp["ten.png"] = "56x56"
    Image.fromarray(textured(1, 150)).save(folder / "line.png")
    exp["line.png"] = "700x28"
    Image.fromarray(textured(70, 90)).save(folder / "with space ü 猫.png")
    exp["with space ü 猫.png"] = "84x56"
    Image.new("RGB", (200, 100), (30, 60, 90)).save(folder / "flat.png")
    exp["flat.png"] = "196x112"
    return exp


def _write_broken(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.png").write_bytes(b"")
    truncated_jpeg(folder / "cut.jpg")
    (folder / "text.jpg").write_text("definitely not a jpeg")
    png_bomb(folder / "bomb.png")
    Image.new("RGB", (900, 4)).save(folder / "strip.png")
    return {
        "zero.png": "empty file",
        "cut.jpg": "truncated",
        "text.jpg": "not a recognised image format",
        "bomb.png": "decompression bomb",
        "strip.png": "aspect ratio",
    }


def test_mixed_folder_run(tmp_path):
    src = tmp_path / "in"
    ok = _write_awkward(src)
    bad = _write_broken(src)
    (src / "readme.txt").write_text("skipped quietly")
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [str(src), str(tmp_path / "missing.png"), "-o", str(out), "-m", "v1", "-m", "v2", "-m", "budget", "-a", "0.3"],
    )
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    rows = json.loads((out / "summary.json").read_text())
    by_name = {}
    for row in rows:
        by_name.setdefault(Path(row["image"]).name, []).append(row)
    for name, size in ok.items():
        got = by_name[name]
        assert [g["status"] for g in got] == ["ok"] * 3, (name, got)
        assert f"{got[0]['resized_width']}x{got[0]['resized_height']}" == size, name
    for name, reason in bad.items():
        (row,) = by_name[name]
        assert row["status"] == "failed" and reason in row["error"], (name, row)
        assert sum(name in line for line in r.stderr.splitlines() if line.startswith("aptviz: error")) == 1
    assert by_name["missing.png"][0]["error"] == "file not found"
    assert "readme.txt" not in by_name
    anim = json.loads((out / "anim" / "stats.json").read_text())
    assert anim["image"]["frames"] == 3 and anim["image"]["first_frame_only"] is True
    assert json.loads((out / "pages" / "stats.json").read_text())["image"]["frames"] == 2
    assert (out / "with space ü 猫" / "stats.json").is_file()


def test_folder_without_images_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, [str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no images found in folder" in r.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 400),
    ratio=st.floats(0.02, 50),
    seed=st.integers(0, 10**6),
    kind=st.sampled_from(["noise", "flat", "textured", "levels"]),
    alpha=st.floats(0, 1),
)
def test_whole_pipeline_property(tmp_path_factory, h, ratio, seed, kind, alpha):
    w = max(1, min(4000, int(round(h * ratio))))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "flat":
        arr = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    elif kind == "levels":
        arr = (rng.integers(0, 3, (h, w, 3)) * 120).astype(np.uint8)
    else:
        arr = textured(h, w, seed)
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "img.png"
    Image.fromarray(arr).save(path)
    runs = expand_runs(["v1", "v2", "budget"], [alpha])
    stats = process_image(path, folder / "out", runs, Params()).to_dict()
    assert json.loads((folder / "out" / "stats.json").read_text(encoding="utf-8")) == stats
    maps = aptviz.entropy_maps(np.asarray(Image.open(folder / "out" / "03_original_resized" / "resized_image.jpg")))
    assert stats["grid"] == {str(ps): list(m.shape) for ps, m in maps.items()}
    for sel_stats, method in zip(stats["selections"], ["v1", "v2", "budget"]):
        assert sel_stats["method"] == method
    from aptviz.pipeline import compute

    result = compute(path, runs, Params())
    for sel in (s.selection for s in result.selections):
        assert bool((coverage(sel.masks) == 1).all())
    assert [s["tokens"] for s in stats["selections"]] == [s.selection.tokens for s in result.selections]
