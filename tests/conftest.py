from __future__ import annotations

import os
import sys
from pathlib import Path


def _write_bytecode() -> None:
    """Let this process and the ones it starts cache what they compile (``__pycache__``), as Python does by default.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (some CI images and containers), every interpreter the tests start
    (xdist workers, ``python -m aptviz``, Ray workers) compiled aptviz and whatever pip had not byte-compiled
    from source again: with a venv installed ``--no-compile`` that was 7 of the 11 s each worker spent
    collecting, and seconds per Ray worker."""
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


_write_bytecode()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def invoke(*args, catch_exceptions: bool = True):
    """The ``aptviz`` command in this process (Typer's CliRunner): ``exit_code``, ``stdout``, ``stderr``, ``output``."""
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=catch_exceptions)


def copies(folder: Path, count: int, sample: str = "chelsea.png", stem: str = "img") -> Path:
    """``count`` copies of a sample photo in a new folder (``img0.png`` ..., two digits from 10 copies on)."""
    import shutil

    folder.mkdir(parents=True)
    for i in range(count):
        shutil.copy(SAMPLES / sample, folder / (f"{stem}{i:02d}.png" if count > 9 else f"{stem}{i}.png"))
    return folder


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    return sorted(SAMPLES.glob("*.png"))


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An RGB test image with flat areas, gradients and noise (varied entropy)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), dtype=np.float64)
    img[..., 0] = xx * 255.0 / max(w - 1, 1)
    img[..., 1] = yy * 255.0 / max(h - 1, 1)
    img[..., 2] = 128
    noisy = (xx > w // 2) & (yy > h // 3)
    img[noisy] = rng.integers(0, 256, (int(noisy.sum()), 3))
    img[(xx < w // 4) & (yy < h // 2)] = 40
    return img.astype(np.uint8)


@pytest.fixture
def make_image(tmp_path):
    """Write a generated image file and return its path."""
    from PIL import Image

    def _make(name: str, h: int = 96, w: int = 128, seed: int = 0, **save) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(textured(h, w, seed)).save(path, **save)
        return path

    return _make


# -- real processes: the command in a fresh interpreter, its workers, signals -------------------------
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]  # -S: as this interpreter was started
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

#: Generous deadlines for tests that wait on other processes: the suite must pass on a loaded 2-core
#: machine, so waits poll until something happens and give up only after this long.
DEADLINE = 120.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "timing: waits on other processes, signals or the clock (sleep/kill/SIGTERM); polls with generous "
        "deadlines (conftest.DEADLINE) instead of fixed sleeps. Deselect with -m 'not timing'.",
    )


def aptviz(*args, **kw) -> subprocess.CompletedProcess:
    """The real command in a fresh process."""
    kw.setdefault("timeout", DEADLINE)
    return subprocess.run([*PYTHON, "-m", "aptviz", *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw)


def start(*args) -> subprocess.Popen:
    """The real command, started in its own session (signals reach it alone)."""
    return subprocess.Popen(
        [*PYTHON, "-m", "aptviz", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def small_images(folder: Path, count: int, size=(112, 140), seed: int = 0) -> Path:
    """``count`` generated PNGs ``img00.png`` ... in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(textured(*size, seed=seed + i)).save(folder / f"img{i:02d}.png")
    return folder


def summary_rows(out: Path) -> list[dict]:
    """The rows of OUTPUT/summary.json."""
    return json.loads((out / "summary.json").read_text())


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds: float = DEADLINE, every: float = 0.02):
    """Poll ``condition()`` until it returns something true (returned) or ``seconds`` pass (None)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return None


def gone_within(pids: list[int], seconds: float = 10.0) -> bool:
    """Whether every process of ``pids`` has exited within ``seconds``."""
    return wait_for(lambda: not [p for p in pids if alive(p)], seconds) is not None


def workers_of(proc: subprocess.Popen, count: int = 2) -> list[int]:
    """The worker processes of a started command, once ``count`` run (an empty list if it ended first)."""

    def check():
        found = children(proc.pid)
        return (found,) if len(found) >= count or proc.poll() is not None else None

    return (wait_for(check) or ([],))[0]


def _read(path: Path) -> str:
    """A file's text, or "" when a running writer has just removed it."""
    try:
        return path.read_text()
    except OSError:
        return ""


def assert_no_torn_folder(out: Path) -> None:
    """Every folder with a stats.json holds exactly what it lists, nothing written after it."""
    for stats_path in out.rglob("stats.json"):
        folder = stats_path.parent
        stats = json.loads(stats_path.read_text())
        written = stats_path.stat().st_mtime_ns
        files = stats["files"]
        listed = list(files["heatmaps"].values()) + [files["original"], files["resized"]]
        listed += [s["files"]["overlay"] for s in stats["selections"]]
        for rel in listed:
            assert (folder / rel).stat().st_mtime_ns <= written, f"{folder / rel} is newer than its stats.json"
        overlays = {Path(s["files"]["overlay"]).name for s in stats["selections"]}
        assert {p.name for p in (folder / "02_patches_grid").iterdir()} == overlays


import struct  # noqa: E402
import zlib  # noqa: E402

from PIL import Image  # noqa: E402


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


# -- shared session fixtures: one sample batch, one Chromium ------------------------------------------
import shutil  # noqa: E402

CHROMIUM = os.environ.get("APTVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="session")
def sample_batch(tmp_path_factory) -> Path:
    """One batch over sample_images (``-m v2:1,1.2 -m budget:0.3``): its output folder, for every test that
    reads a real batch's files (report.html, explorer.js, stats.json). Read it, never change it."""
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    out = tmp_path_factory.mktemp("sample_batch")
    args = [str(SAMPLES), "-m", "v2:1,1.2", "-m", "budget:0.3", "-q", "-o", str(out)]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium (Playwright) for every browser test; skipped, with the reason, without either."""
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# -- the command in this process, read like a finished one ---------------------------------------------
from typing import NamedTuple  # noqa: E402


class Done(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def command(*args) -> Done:
    """``aptviz ARGS`` in this process, dispatched as ``aptviz`` does (a subcommand's app or the main one),
    read like :func:`aptviz`'s finished process. For tests whose point is not the process (signals, imports,
    the environment, a hang ended by a timeout): a fresh interpreter costs about half a second of CPU. An
    exception the command does not handle itself propagates (a fresh process would print a traceback). Only
    this process's streams are captured: where stderr must hold nothing else, run with ``-j 1`` or use
    :func:`aptviz` (a worker process writes to its own stderr). The output lock (``fcntl.lockf``) does not
    exclude its own process: lock tests need :func:`aptviz` or :func:`start`."""
    from typer.testing import CliRunner

    from aptviz.cli.command import _dispatch

    target, prog, rest = _dispatch([str(a) for a in args])
    r = CliRunner().invoke(target, rest, prog_name=prog, catch_exceptions=False)
    return Done(r.exit_code, r.stdout, r.stderr)
