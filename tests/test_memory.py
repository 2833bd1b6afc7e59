"""Memory (aptviz.runs.memory): big photos within their budget, options whose estimate exceeds --max-memory
refused, CUDA out of memory."""

import json
import resource
import subprocess
import sys

import pytest
import torch
from PIL import Image

from aptviz.compute.params import Params, expand_runs
from aptviz.errors import InputError

from conftest import ROOT, textured


@pytest.mark.slow
def test_24_megapixel_photo_under_2_gb(tmp_path):
    src = (
        Image.open(ROOT / "sample_images" / "coffee.png").convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC)
    )
    path = tmp_path / "big.jpg"
    src.save(path, quality=90)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    args = "--max-pixels 30000000 -m v1 -m budget -a 0.3 --save-maps -q".split()
    r = subprocess.run(
        [sys.executable, "-m", "aptviz", str(path), *args, "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert max(peak_kib, before) < 2 * 1024 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    stats = json.loads((tmp_path / "out" / "big" / "stats.json").read_text())
    assert stats["image"]["resized_size"] == [5992, 4004]
    assert stats["selections"][1]["budget_info"]["base_small_tokens"] == 428 * 286


def test_cuda_out_of_memory_says_retry_on_cpu(tmp_path, monkeypatch):
    import aptviz.pipeline as pl

    path = tmp_path / "x.png"
    Image.fromarray(textured(60, 60)).save(path)

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("aptviz.compute.analysis.compute_importance", oom)
    with pytest.raises(InputError, match="retry with --device cpu"):
        pl.compute(path, expand_runs(["v1"]), Params())


from conftest import PYTHON, SAMPLES, command  # noqa: E402


@pytest.mark.parametrize(
    "args",
    [
        ["--min-pixels", "400000000", "--max-pixels", "400000000"],
        ["--min-pixels", "10000000000", "--max-pixels", "10000000000"],
        ["--max-pixels", "200000000", "--workers", "8"],
    ],
)
def test_memory_heavy_options_are_refused_naming_the_estimate(tmp_path, args):
    r = command(SAMPLES / "chelsea.png", "-o", tmp_path / "out", "--max-memory", "3G", *args)  # in this process
    assert r.returncode == 2, r.stderr
    assert "need more memory than --max-memory 3.00 GB" in r.stderr and "estimated peak" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "chelsea").exists()


@pytest.mark.slow
def test_memory_heavy_options_that_fit_stay_under_3gb(tmp_path):
    """Small patches with many bins on a 12 MP photo: allowed within 3 GB, and measured below it."""
    photo = tmp_path / "photo.jpg"
    big = Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((4000, 3000))
    big.save(photo, quality=85)
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    sets = (["--patch-size", "1"], ["--patch-size", "2", "--bins", "4096", "--num-scales", "9"])
    for extra in sets:
        cmd = [*PYTHON, "-m", "aptviz", str(photo), "-o", str(tmp_path / "out"), "-j", "1", "--max-memory", "3G"]
        out = subprocess.run([*PYTHON, "-c", code, *cmd, *extra], capture_output=True, text=True, cwd=ROOT)
        rc, kib = out.stdout.split()
        assert rc == "0"
        assert int(kib) * 1024 < 3 << 30
