"""Swappable quantizer layers: their forward can be replaced by a Hub kernel with ``kernels.kernelize``.

Every quantizer owns stateless instances of these (no parameters, no buffers, so state dicts are
unchanged). By default they run :mod:`zoo.kernels.dispatch` (Triton on CUDA, PyTorch elsewhere).
``kernelize_quantizers`` swaps in the forwards of a kernel pulled from the Hub (or a local
directory) so a newer kernel can be used without upgrading the zoo. The layer names are
``ZooNearestCode``, ``ZooFSQRound``, ``ZooLFQSign`` and ``ZooRFSQRound``; a Hub kernel provides them in
its ``layers`` module as ``NearestCode``, ``FSQRound``, ``LFQSign`` and ``RFSQRound``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

try:
    from kernels import use_kernel_forward_from_hub
except ImportError:  # kernels is optional: without it the layers just are not swappable
    def use_kernel_forward_from_hub(layer_name):
        def decorator(cls):
            cls.kernel_layer_name = layer_name
            return cls
        return decorator

#: Hub repository that scripts/push_kernels.py uploads to by default
DEFAULT_KERNEL_REPO = "tokenizer-zoo/zoo-quantize"
#: (zoo layer name, class name inside the kernel's ``layers`` module)
LAYER_NAMES = {"ZooNearestCode": "NearestCode", "ZooFSQRound": "FSQRound", "ZooLFQSign": "LFQSign",
               "ZooRFSQRound": "RFSQRound"}


class _Swappable(nn.Module):
    def __init__(self, backend: str = "auto"):
        super().__init__()
        self.backend = backend

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


@use_kernel_forward_from_hub("ZooNearestCode")
class NearestCode(_Swappable):
    """x (..., D), codebook (K, D), metric "euclidean" | "dot" -> (ids (...) int64, vectors (..., D))."""

    def forward(self, x: torch.Tensor, codebook: torch.Tensor, metric: str):
        from zoo.kernels.dispatch import nearest_code
        return nearest_code(x, codebook, metric, self.backend, check_finite=False)


@use_kernel_forward_from_hub("ZooFSQRound")
class FSQRound(_Swappable):
    """z (..., C), levels, symmetric, hard_clamp -> (codes (..., C) fp32, ids (...) int64)."""

    def forward(self, z: torch.Tensor, levels: list[int], symmetric: bool, hard_clamp: bool):
        from zoo.kernels.dispatch import fsq_quantize
        return fsq_quantize(z, levels, symmetric, hard_clamp, self.backend)


@use_kernel_forward_from_hub("ZooLFQSign")
class LFQSign(_Swappable):
    """x (..., C), scale -> (codes (..., C) fp32 in {-scale, scale}, ids (...) int64)."""

    def forward(self, x: torch.Tensor, scale: float):
        from zoo.kernels.dispatch import lfq_quantize
        return lfq_quantize(x, scale, self.backend)


@use_kernel_forward_from_hub("ZooRFSQRound")
class RFSQRound(_Swappable):
    """h (..., C), levels, scales (L, C), symmetric, hard_clamp -> (quantized (..., C), ids (..., L), counts or None).

    Every residual level in one fused kernel on CUDA (with the (L, K) code histogram).
    """

    def forward(self, h: torch.Tensor, levels: list[int], scales: torch.Tensor, symmetric: bool, hard_clamp: bool,
                count: bool = True):
        from zoo.kernels.dispatch import rfsq_quantize
        return rfsq_quantize(h, levels, scales, symmetric, hard_clamp, self.backend, count=count)


def kernel_mapping(repo_id: str | None = None, *, path: str | Path | None = None, version: int | None = None,
                   revision: str | None = None, device: str = "cuda", trust_remote_code: bool = False) -> dict:
    """A ``kernels`` layer mapping that sends the zoo's quantizer layers to a Hub (or local) kernel."""
    from kernels import LayerRepository, LocalLayerRepository

    mapping = {}
    for zoo_name, kernel_name in LAYER_NAMES.items():
        if path is not None:
            repo = LocalLayerRepository(repo_path=Path(path), layer_name=kernel_name)
        else:
            if version is None and revision is None:
                version = 1
            repo = LayerRepository(repo_id or DEFAULT_KERNEL_REPO, layer_name=kernel_name, version=version,
                                   revision=revision, trust_remote_code=trust_remote_code)
        mapping[zoo_name] = {device: repo}
    return mapping


def kernelize_quantizers(model: nn.Module, repo_id: str | None = None, *, path: str | Path | None = None,
                         version: int | None = None, revision: str | None = None, device: str | None = None,
                         training: bool = False, trust_remote_code: bool = False) -> nn.Module:
    """Replace the forward of every quantizer layer in ``model`` with the kernel from the Hub.

    ``repo_id`` (+ ``version`` or ``revision``) pulls from the Hub; ``path`` uses a local kernel
    directory instead (e.g. ``zoo.kernels.HUB_KERNEL_DIR``). ``device`` defaults to the model's.
    Layers the kernel cannot serve keep their built-in forward.
    """
    from kernels import Mode, kernelize, use_kernel_mapping

    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device.type if first is not None else "cpu"
    mapping = kernel_mapping(repo_id, path=path, version=version, revision=revision, device=device,
                             trust_remote_code=trust_remote_code)
    with use_kernel_mapping(mapping):
        return kernelize(model, mode=Mode.TRAINING if training else Mode.INFERENCE, device=device)
