"""Losses for training image tokenizers: perceptual (LPIPS) and adversarial (PatchGAN, hinge)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError

log = logging.getLogger(__name__)

# File names torchvision's loaders fetch into ``torch.hub.get_dir()/checkpoints``.
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}


class PerceptualWeightsMissing(ZooError, RuntimeError):
    """The perceptual network's pretrained weights cannot be loaded (e.g. no internet)."""


class PerceptualLoss(nn.Module):
    """LPIPS distance (torchmetrics' implementation, frozen). images in [0, 1]: (B, 3, H, W) x2 -> scalar.

    The backbone weights load through torchvision's normal path (the torch hub cache); when that
    fails :class:`PerceptualWeightsMissing` names the file and where to put it.
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        try:
            metric = LearnedPerceptualImagePatchSimilarity(net_type=net)
        except Exception as e:  # torchvision raises URLError/OSError/RuntimeError depending on the failure
            where = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES.get(net, f"<{net} weights>")
            raise PerceptualWeightsMissing(
                f"LPIPS-{net} needs the ImageNet weights of its backbone, which could not be loaded ({e}). "
                f"Put the file {where.name} at {where} (torchvision's cache), or set "
                "perceptual_weight: 0 / perceptual_on_missing: skip in the recipe to train without it") from None
        self.net = metric.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.net.eval()  # always frozen
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x.clamp(0, 1), y.clamp(0, 1), normalize=True).mean()


def make_perceptual(net: str, on_missing: str) -> PerceptualLoss | None:
    """Build the perceptual loss; if its weights are missing either raise (``on_missing="error"``)
    or log a clear warning and return None (``"skip"``)."""
    if on_missing not in ("error", "skip"):
        raise ValueError(f"perceptual_on_missing must be 'error' or 'skip', got {on_missing!r}")
    try:
        return PerceptualLoss(net)
    except PerceptualWeightsMissing as e:
        if on_missing == "error":
            raise
        log.warning("training WITHOUT the perceptual loss: %s", e)
        return None


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al.): (B, 3, H, W) -> (B, 1, h, w) real/fake logits per patch."""

    def __init__(self, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
