"""Per-image reconstruction metrics: PSNR, SSIM (torchmetrics), and LPIPS when its backbone weights exist.

All functions take ``target`` and ``preds`` of shape (B, 3, H, W), float in [0, 1], and return (B,) tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from zoo.errors import InputError

log = logging.getLogger(__name__)

# Files torchvision fetches into ``torch.hub.get_dir()/checkpoints`` for each LPIPS backbone.
LPIPS_BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}


def _check_pair(target: torch.Tensor, preds: torch.Tensor) -> None:
    if target.shape != preds.shape or target.ndim != 4 or target.shape[1] != 3:
        raise InputError(f"image metrics need target and preds of one shape (B, 3, H, W), got "
                         f"{tuple(target.shape)} and {tuple(preds.shape)}")


def psnr(target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (data range 1): (B, 3, H, W) x2 -> (B,)."""
    _check_pair(target, preds)
    return peak_signal_noise_ratio(preds.float().clamp(0, 1), target.float(), data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))


def ssim(target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (Gaussian window 11, sigma 1.5, data range 1): -> (B,)."""
    _check_pair(target, preds)
    return structural_similarity_index_measure(preds.float().clamp(0, 1), target.float(), data_range=1.0,
                                               reduction="none")


class LPIPS(torch.nn.Module):
    """LPIPS distance per image (torchmetrics' networks, frozen): (B, 3, H, W) x2 in [0, 1] -> (B,)."""

    def __init__(self, metric: torch.nn.Module, net: str):
        super().__init__()
        self.net = metric.net.eval().requires_grad_(False)
        self.net_type = net

    @torch.no_grad()
    def forward(self, target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        _check_pair(target, preds)
        return self.net(preds.float().clamp(0, 1), target.float(), normalize=True).reshape(-1)


def load_lpips(net: str = "vgg", device: str | torch.device = "cpu") -> tuple[LPIPS | None, str]:
    """LPIPS with the ``net`` backbone loaded through torchvision's normal path.

    Returns ``(metric, note)``; the metric is None when the backbone's ImageNet weights cannot be
    loaded, and the note then says which file is missing and where it belongs.
    """
    if net not in LPIPS_BACKBONE_FILES:
        raise InputError(f"LPIPS backbone must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net!r}")
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net)
    except Exception as e:  # URLError / OSError / RuntimeError depending on how the download fails
        where = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
        note = (f"LPIPS not reported: the {net} backbone weights could not be loaded ({type(e).__name__}). "
                f"Put {where.name} at {where} to report it.")
        log.warning(note)
        return None, note
    return LPIPS(metric, net).to(device), f"LPIPS-{net} (torchmetrics)"
