import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aptviz
from aptviz.compute.params import Params, expand_runs
from aptviz.compute.stats import ImageStats
from aptviz.output.atomic import write_bytes_atomic, write_json_atomic
from aptviz.pipeline import compute, process_image, write_outputs

from conftest import SAMPLES

SCHEMA_IMAGE = {"path", "original_size", "resized_size", "frames"}
SCHEMA_PARAMS = {
    "model",
    "patch_size",
    "merge_size",
    "temporal_patch_size",
    "num_scales",
    "min_pixels",
    "max_pixels",
    "bins",
    "device",
    "importance",
    "aggregate",
}
SCHEMA_SELECTION = {
    "method",
    "alpha",
    "thresholds",
    "tokens_by_scale",
    "tokens",
    "base_small_tokens",
    "retention",
    "target_retention",
    "importance",
    "aggregate",
    "vit_tokens",
    "llm_tokens",
    "llm_tokens_uniform",
    "llm_retention",
    "budget_info",
    "psnr_apt",
    "uniform_vit_tokens",
    "uniform_size",
    "psnr_uniform",
    "ssim_apt",
    "ssim_uniform",
    "llm_uniform_tokens",
    "llm_uniform_size",
    "psnr_uniform_llm",
    "ssim_uniform_llm",
    "files",
}


def test_analyze_returns_full_schema_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = os.path.join(os.path.dirname(__file__), "..", "sample_images", "coffee.png")
    stats = aptviz.analyze(path, methods=("v1", "v2", "budget"), alphas=(1.0, 0.3))
    assert list(tmp_path.iterdir()) == []
    assert stats["aptviz_version"] == aptviz.__version__
    assert SCHEMA_IMAGE <= set(stats["image"])
    assert stats["image"]["original_size"] == [600, 400] and stats["image"]["resized_size"] == [588, 392]
    assert set(stats["params"]) == SCHEMA_PARAMS
    assert stats["grid"] == {"14": [28, 42], "28": [14, 21], "56": [7, 11]}
    assert stats["entropy"]["56"]["pad_cells"] == 7 and stats["entropy"]["14"]["pad_cells"] == 0
    assert stats["params"]["importance"] == "entropy" and stats["params"]["aggregate"] is None
    assert stats["params"]["model"] == "qwen2-vl"
    assert stats["importance"] == stats["entropy"]  # the "importance" block, "entropy" its alias
    sels = stats["selections"]
    assert [(s["method"], s["alpha"]) for s in sels] == [
        ("v1", None),
        ("v2", 1.0),
        ("v2", 0.3),
        ("budget", 1.0),
        ("budget", 0.3),
    ]
    for s in sels:
        assert set(s) == SCHEMA_SELECTION
        assert s["tokens"] == sum(s["tokens_by_scale"].values())
        assert s["retention"] == s["tokens"] / s["base_small_tokens"] == s["tokens"] / (28 * 42)
        t14, t28, t56 = (s["tokens_by_scale"][k] for k in ("14", "28", "56"))
        assert s["vit_tokens"] == s["tokens"] and s["llm_tokens"] == t14 // 4 + t28 + t56 and t14 % 4 == 0
        assert s["llm_tokens_uniform"] == 28 * 42 // 4 and s["llm_retention"] == s["llm_tokens"] / (28 * 42 // 4)
    assert sels[0]["thresholds"] == [3.0, 2.0] and sels[0]["target_retention"] is None
    assert sels[4]["target_retention"] == 0.3 and sels[4]["budget_info"]["budget"] == round(0.3 * 1176)
    json.dumps(stats, allow_nan=False)


def test_process_image_writes_every_file(tmp_path, make_image):
    src = make_image("img.png", 150, 230)
    out = tmp_path / "out" / "img"
    stats = process_image(src, out, expand_runs(["budget"], [0.3]), Params(), save_maps=True)
    w, h = stats.image.resized_size
    for ps in (14, 28, 56):
        heat = Image.open(out / f"01_heatmaps/importance_map_scale_{ps}.png")
        assert heat.height == h and heat.width > w
    overlay = Image.open(out / "02_patches_grid/patches_visualization.jpg")
    assert overlay.size == (w, h)
    assert Image.open(out / "03_original_resized/original_image.jpg").size == (230, 150)
    assert Image.open(out / "03_original_resized/resized_image.jpg").size == (w, h)
    on_disk = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert on_disk == stats.to_dict()
    assert ImageStats.from_dict(on_disk) == stats  # typed round trip through the JSON edge
    assert on_disk["selections"][0]["files"] == {
        "overlay": "02_patches_grid/patches_visualization.jpg",
        "model_view": "04_model_view/model_view.jpg",
        "uniform": "04_model_view/uniform.jpg",
    }
    for rel in ("04_model_view/model_view.jpg", "04_model_view/uniform.jpg", "compare.png"):
        assert (out / rel).is_file()
    npz = np.load(out / "maps.npz")
    maps = aptviz.entropy_maps(np.asarray(Image.open(out / "03_original_resized/resized_image.jpg")))
    assert npz["entropy_14"].shape == tuple(maps[14].shape)
    assert int(sum(npz[f"mask_budget_alpha0.3_{ps}"].sum() for ps in (14, 28, 56))) == stats.selections[0].tokens
    assert not [p for p in out.rglob("*.tmp")]


def test_several_selections_get_their_own_overlays(tmp_path, make_image):
    src = make_image("img.png", 100, 100)
    out = tmp_path / "img"
    runs = expand_runs(["v1", "v2", "budget"], [0.5, 1.0])
    stats = process_image(src, out, runs, Params())
    names = sorted(p.name for p in (out / "02_patches_grid").iterdir())
    assert names == [
        "patches_budget_alpha0.5.jpg",
        "patches_budget_alpha1.jpg",
        "patches_v1.jpg",
        "patches_v2_alpha0.5.jpg",
        "patches_v2_alpha1.jpg",
    ]
    assert len(stats.selections) == 5
    # a later run with one selection replaces the stale overlays
    process_image(src, out, expand_runs(["v1"]), Params())
    assert [p.name for p in (out / "02_patches_grid").iterdir()] == ["patches_visualization.jpg"]


def test_compute_once_for_many_selections(make_image, monkeypatch):
    import aptviz.compute.analysis as an

    calls = []
    real = an.compute_importance
    monkeypatch.setattr(an, "compute_importance", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = compute(make_image("x.png"), expand_runs(["v1", "v2", "budget"], [0.2, 0.4, 0.6]), Params())
    assert len(calls) == 1 and len(result.selections) == 7


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "stats.json"
    write_json_atomic(target, {"old": True})

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(target, b'{"new": tr')
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_write_outputs_writes_stats_last(tmp_path, make_image, monkeypatch):
    """If rendering fails half way, no stats.json claims the image is complete."""
    import aptviz.render.image_pictures as ex

    result = compute(make_image("x.png"), expand_runs(["v1"]), Params())
    monkeypatch.setattr(ex, "overlay_picture", lambda *a: (_ for _ in ()).throw(RuntimeError("disk gone")))
    with pytest.raises(RuntimeError):
        write_outputs(result, tmp_path / "x")
    assert not (tmp_path / "x" / "stats.json").exists()


def test_library_is_silent_and_cli_verbose_logs(capfd, make_image):
    import subprocess
    import sys

    path = make_image("quiet.png")
    aptviz.analyze(path)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(path), "-v", "-q", "-o", str(path.parent / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(path), "-v", "-o", str(path.parent / "o"), "--overwrite"],
        capture_output=True,
        text=True,
    )
    assert "DEBUG" in r.stderr and "quiet.png" in r.stderr


def test_analyze_has_the_importance_histogram_of_stats_json(tmp_path):
    """Issue 16 bug: analyze() lacked the importance_histogram that stats.json has (it was
    computed only while writing); now the numbers are the same, whether files are written or not."""
    path = SAMPLES / "coffee.png"
    numbers = aptviz.analyze(path, methods=["v1", "budget"], alphas=[0.3])
    written = process_image(path, tmp_path / "coffee", expand_runs(["v1", "budget"], [0.3]), Params()).to_dict()
    on_disk = json.loads((tmp_path / "coffee" / "stats.json").read_text())
    assert numbers["importance_histogram"] == on_disk["importance_histogram"] == written["importance_histogram"]
    assert sorted(numbers["importance_histogram"]) == ["14", "28", "56"]
    for ps, hist in numbers["importance_histogram"].items():  # every non-PAD cell counted once
        grid = on_disk["grid"][ps]
        assert sum(hist["counts"]) == grid[0] * grid[1] - on_disk["importance"][ps]["pad_cells"]
    on_disk.pop("files")
    for sel in on_disk["selections"]:
        sel["files"] = {}
    assert numbers == on_disk


def test_analysis_is_immutable_numpy_keyed_by_measure_method_alpha(make_image):
    from dataclasses import FrozenInstanceError

    a = compute(make_image("x.png"), expand_runs(["v1", "v2", "budget"], [0.4, 0.6]), Params(importance="entropy"))
    assert a.keys == [
        ("entropy", "v1", None), ("entropy", "v2", 0.4), ("entropy", "v2", 0.6),
        ("entropy", "budget", 0.4), ("entropy", "budget", 0.6),
    ]  # fmt: skip
    assert a.selection("budget", 0.6).selection.alpha == 0.6 and a.selection("v1").spec.method.value == "v1"
    with pytest.raises(KeyError):
        a.selection("budget", 0.6, measure="laplacian")
    arrays = [*a.maps.values(), *(m for s in a.selections for m in s.selection.masks.values())]
    arrays += [x for s in a.selections for x in (s.view.apt, s.view.uniform.image)]
    assert all(isinstance(x, np.ndarray) and not x.flags.writeable for x in arrays)
    with pytest.raises(FrozenInstanceError):
        a.params = Params()
    with pytest.raises(TypeError):
        a.maps[14] = a.maps[28]
    assert a.stats().to_dict() == a.stats().to_dict()  # pure: the same numbers every time


def test_torch_maps_are_converted_once_inside_compute(tmp_path, make_image, monkeypatch):
    """On the torch backend the analysis holds NumPy arrays; nothing after it touches a tensor."""
    torch = pytest.importorskip("torch")
    import aptviz.compute.analysis as an
    from aptviz.compute.importance import compute_importance

    def on_torch(*args, **kwargs):
        return compute_importance(*args, **{**kwargs, "backend": "torch"})

    path = make_image("x.png")
    runs = expand_runs(["v1", "budget"], [0.3])
    plain = process_image(path, tmp_path / "numpy", runs, Params()).to_dict()
    monkeypatch.setattr(an, "compute_importance", on_torch)
    analysis = compute(path, runs, Params())
    assert all(isinstance(m, np.ndarray) for m in analysis.maps.values())

    def no_more(*a, **k):
        raise AssertionError("a tensor was converted after compute")

    monkeypatch.setattr(torch.Tensor, "cpu", no_more)
    monkeypatch.setattr(torch.Tensor, "numpy", no_more)
    stats = write_outputs(analysis, tmp_path / "torch").to_dict()
    assert stats == plain


def test_writer_writes_what_it_is_given_and_stats_last(tmp_path, make_image, monkeypatch):
    """The writer computes nothing: the files are the pictures given, stats.json is the stats given, last."""
    import aptviz.output.writer as wr
    from aptviz.pipeline import complete_stats
    from aptviz.compute.heatmaps import heat_scales
    from aptviz.render.image_pictures import RenderOptions, render_pictures

    analysis = compute(make_image("x.png"), expand_runs(["v1", "budget"], [0.3]), Params())
    stats = complete_stats(analysis, RenderOptions())
    pictures = render_pictures(analysis, stats, heat_scales(analysis, stats))
    listed = [*stats.files["heatmaps"].values(), *(stats.files[k] for k in ("original", "resized", "blend", "compare"))]
    listed += [sel.files[k] for sel in stats.selections for k in ("overlay", "model_view", "uniform")]
    assert sorted(pictures) == sorted(listed)
    order = []
    real = wr.write_bytes_atomic
    monkeypatch.setattr(wr, "write_bytes_atomic", lambda p, d: order.append(p.name) or real(p, d))
    monkeypatch.setattr(wr, "write_json_atomic", lambda p, d: order.append(p.name) or real(p, json.dumps(d).encode()))
    out = tmp_path / "x"
    wr.write_image_folder(out, stats, pictures.items())
    assert order[-1] == "stats.json" and len(order) == len(listed) + 1
    assert json.loads((out / "stats.json").read_text()) == stats.to_dict()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*") if p.name != "stats.json") == sorted(listed)


# ---- one image's walk through the modules (docs/layout.md "One image, start to end") ----------------------

#: the flow's stages, in order; pipeline.py drives them and every package may use the top-level leaves
STAGES = {"compute": 0, "render": 1, "output": 2}
LEAVES = {"errors.py", "_log.py", "_text.py", "_version.py"}


def module_walk(run) -> list[tuple[str, str]]:
    """The walk of ``run()`` through aptviz's modules: its ``(caller, callee)`` module pairs, first seen first.

    Every call event is traced (``sys.setprofile``; a generator resumed is a call too), named by
    the module of the called code and by the module of the nearest aptviz frame below it. Left out:
    calls inside one module, calls between two computing modules (computing's own helpers), the
    top-level leaves, and methods and properties of classes (reading a dataclass, a type's own behaviour).
    """
    import sys

    root = str(Path(aptviz.__file__).parent) + os.sep

    def module(frame):
        name = frame.f_code.co_filename
        if not name.startswith(root) or name[len(root):] in LEAVES:
            return None
        return name[len(root):]

    def is_type_member(frame) -> bool:
        qual = frame.f_code.co_qualname
        return "." in qual and "<locals>" not in qual.split(".")[0]

    pairs: dict[tuple[str, str], None] = {}

    def profile(frame, event, arg):
        if event != "call" or (callee := module(frame)) is None:
            return
        below = frame.f_back
        while below is not None and module(below) is None:
            below = below.f_back
        caller = module(below) if below is not None else None
        if caller is None or caller == callee or (caller.startswith("compute/") and callee.startswith("compute/")):
            return
        if is_type_member(frame):
            return
        pairs[(caller, callee)] = None

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return list(pairs)


def walk_summary(pairs: list[tuple[str, str]]) -> tuple[dict[str, list[str]], list[str]]:
    """``({module: the modules of other packages it is entered from}, [the climbs back])``.

    A climb back is a pair that leaves its stage from anywhere but pipeline.py (render or output
    calling back into computing, output pulling render's pictures, computing calling up), or a
    second way into a module from outside its package (a package's modules share their helpers).
    """
    stage = lambda m: STAGES.get(m.split("/")[0])  # noqa: E731
    package = lambda m: m.split("/")[0]  # noqa: E731
    entered: dict[str, list[str]] = {}
    for caller, callee in pairs:
        if package(caller) != package(callee):
            entered.setdefault(callee, []).append(caller)
    climbs = [f"{a} -> {b}" for a, b in pairs if a != "pipeline.py" and stage(a) != stage(b)]
    climbs += [f"{b} re-entered from {a}" for b, callers in entered.items() for a in callers[1:]]
    return entered, climbs


def test_one_image_walk_climbs_back_at_most_10_times(tmp_path):
    """process_image of a real photo (three methods, the batch's explorer data): computing first, then
    drawing from plain data, then the writer. The walk is described in docs/layout.md."""
    src = SAMPLES / "chelsea.png"
    runs = expand_runs(["v1", "v2", "budget"], [0.5])
    process_image(src, tmp_path / "warm", runs, Params(device="cpu"))  # lazy imports and caches out of the walk
    pairs = module_walk(lambda: process_image(src, tmp_path / "chelsea", runs, Params(device="cpu")))
    entered, climbs = walk_summary(pairs)
    walk = "\n".join(f"{a} -> {b}" for a, b in pairs)
    report = f"{len(climbs)} climbs back:\n" + "\n".join(climbs) + "\nwalk:\n" + walk
    assert (tmp_path / "chelsea" / "stats.json").is_file() and (tmp_path / "chelsea" / "explorer.js").is_file()
    assert len(climbs) <= 10, report
    assert all(len(callers) == 1 for callers in entered.values()), report


def test_an_images_files_are_the_one_list_of_layout(tmp_path):
    """What process_image writes is exactly layout.listed_files (+ stats.json), with several measures and maps."""
    from aptviz.output.layout import listed_files
    from aptviz.render.image_pictures import RenderOptions

    from aptviz.compute.params import build_runs

    runs = build_runs(["v1", "budget:0.3"], thresholds=(0.05, 0.05), measure="laplacian,upsample-mse")
    out = tmp_path / "cat"
    stats = process_image(SAMPLES / "chelsea.png", out, runs, Params(importance="laplacian"), save_maps=True,
                          render=RenderOptions())  # fmt: skip
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*") if p.name != "stats.json")
    assert written == sorted(listed_files(stats))
    assert len(stats.files["heatmaps_by_measure"]) == 2 and stats.files.get("maps")


def test_the_uniform_sweep_is_left_out_of_a_run_of_one_selection(tmp_path):
    """fidelity_vs_tokens.png needs 2+ selections: a run of one skips the uniform size sweep (about 0.4 s CPU per
    1 MP image); with two it is in stats.json and equal to what aptviz.analyze gives."""
    src = SAMPLES / "chelsea.png"
    one = process_image(src, tmp_path / "one", expand_runs(["budget"], [0.3]), Params())
    assert one.uniform_sweep is None
    assert "uniform_sweep" not in json.loads((tmp_path / "one" / "stats.json").read_text())
    assert "uniform_sweep" not in aptviz.analyze(src, "budget:0.3")  # the command and the library agree
    two = process_image(src, tmp_path / "two", expand_runs(["v2", "budget"], [0.3]), Params())
    assert two.uniform_sweep and two.uniform_sweep == aptviz.analyze(src, ["v2:0.3", "budget:0.3"])["uniform_sweep"]
    assert [p["retention"] for p in two.uniform_sweep][-1] == 1.0
