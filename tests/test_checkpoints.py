"""The checkpoints shipped in checkpoints/ load by name and do their job on photos they never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from zoo.data import to_tensor

from conftest import psnr

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "titok_nano_32"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="checkpoint not in this checkout")
def test_shipped_nano_reconstructs_held_out_photo():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    model = zoo.from_pretrained("titok_nano_32")
    assert model.name == "titok_nano_32" and model.num_tokens == 32 and model.input_size == 64
    photo = Image.fromarray(skimage_data.astronaut())  # 512x512, held out from the checkpoint's training crops
    g = torch.Generator().manual_seed(0)
    crops = []
    for side in (64, 96, 128, 192, 256, 384):
        for _ in range(3):
            x, y = (int(v) for v in torch.randint(0, 512 - side + 1, (2,), generator=g))
            crops.append(to_tensor(photo.crop((x, y, x + side, y + side)), 64))
    crops = torch.stack(crops)
    ids = model.encode(crops)
    assert torch.equal(ids, model.encode(crops))
    assert ids.unique().numel() > 150  # the codebook is used, not collapsed
    recon = model.decode(ids)
    mean_colour = crops.mean(dim=(2, 3), keepdim=True).expand_as(crops)
    assert psnr(recon, crops) > psnr(mean_colour, crops) + 1.0
