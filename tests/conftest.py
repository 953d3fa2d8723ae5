"""Shared fixtures: small real image files the tests make themselves."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(min(2, torch.get_num_threads()))
if not torch.cuda.is_available():
    # Triton kernels are jitted when zoo.kernels is first imported (by any test): without a GPU they
    # must run under Triton's interpreter, so set it before anything imports zoo.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def synthetic_image(rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """A smooth colour gradient with a few filled discs: (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([a * xx + b * yy + c for a, b, c in rng.uniform(-0.5, 0.5, (3, 3)) + [0, 0, 0.5]], -1)
    for _ in range(3):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
        img[mask] = rng.uniform(0, 1, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_image_folder(root: Path, n: int, size: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ext = "png" if i % 2 == 0 else "jpg"
        Image.fromarray(synthetic_image(rng, size)).save(root / f"img_{i:03d}.{ext}")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """48 synthetic PNG/JPEG images of 80x80 pixels."""
    return make_image_folder(tmp_path_factory.mktemp("images"), 48)


@pytest.fixture(scope="session")
def nano():
    """A tiny TiTok (32x32 images, 16 tokens) for fast contract tests."""
    import zoo
    torch.manual_seed(0)
    return zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * math.log10(1.0 / float(((a - b) ** 2).mean())))
