from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


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
