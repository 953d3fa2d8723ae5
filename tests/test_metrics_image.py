"""PSNR, SSIM, LPIPS (present / missing backbone weights) and codebook statistics."""

from __future__ import annotations

import math
import urllib.error

import pytest
import torch

from zoo.errors import InputError
from zoo.metrics.codebook import CodeUsage, bits_per_image
from zoo.metrics.image import load_lpips, psnr, ssim


def test_psnr_known_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g) * 0.8
    y = x.clone()
    y[0] += 0.1                      # mse 0.01 -> 20 dB
    y[1] += 0.01                     # mse 1e-4 -> 40 dB
    y[2] += torch.randn(3, 16, 16, generator=g) * 0.05
    got = psnr(x, y)
    assert got.shape == (3,)
    assert got[0].item() == pytest.approx(20.0, abs=1e-3)
    assert got[1].item() == pytest.approx(40.0, abs=1e-2)
    mse = ((x[2] - y[2].clamp(0, 1)) ** 2).mean()
    assert got[2].item() == pytest.approx(10 * math.log10(1 / mse.item()), abs=1e-4)


def test_ssim_identity_and_order():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    light = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    heavy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s_light, s_heavy = ssim(x, light), ssim(x, heavy)
    assert (s_light < 1).all() and (s_heavy < s_light).all()
    with pytest.raises(InputError, match="one shape"):
        ssim(x, x[:, :, :16])


def test_lpips_missing_weights_is_reported_not_fatal(tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    metric, note = load_lpips("vgg")
    assert metric is None
    assert "vgg16-397923af.pth" in note and str(tmp_path / "checkpoints") in note


def test_lpips_with_backbone_weights_present(tmp_path):
    """Backbone weights in the hub cache (a SqueezeNet of our own making) -> LPIPS is computed."""
    import torchvision

    old = torch.hub.get_dir()
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(),
               tmp_path / "checkpoints" / "squeezenet1_1-b8a52dc0.pth")
    torch.hub.set_dir(str(tmp_path))
    try:
        metric, note = load_lpips("squeeze")
    finally:
        torch.hub.set_dir(old)
    assert metric is not None, note
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    assert torch.allclose(metric(x, x), torch.zeros(2), atol=1e-6)
    near, far = metric(x, (x + 0.02).clamp(0, 1)), metric(x, torch.rand(2, 3, 64, 64, generator=g))
    assert (near > 0).all() and (far > near).all()


def test_codebook_usage_and_perplexity():
    u = CodeUsage(8)
    u.update(torch.tensor([[0, 1], [2, 3]]))
    u.update(torch.tensor([[0, 1], [2, 3]]))
    assert u.usage() == pytest.approx(0.5)
    assert u.perplexity() == pytest.approx(4.0)  # uniform over 4 codes
    skew = CodeUsage(4)
    skew.update(torch.tensor([[0, 0, 0, 1]]))
    p = torch.tensor([0.75, 0.25])
    assert skew.perplexity() == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    levels = CodeUsage(4)
    levels.update(torch.tensor([[[0, 0], [1, 0]]]))  # (B, N, L): level 0 uses 2 codes, level 1 one
    assert levels.usage() == pytest.approx((0.5 + 0.25) / 2)
    with pytest.raises(InputError, match=r"\[0, 8\)"):
        u.update(torch.tensor([[8]]))
    assert bits_per_image(32, 4096) == 384.0
    assert bits_per_image(128, 1000) == pytest.approx(128 * math.log2(1000))
