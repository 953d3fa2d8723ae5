"""Backend dispatch for the quantizer hot paths: the fused Triton kernel on CUDA, PyTorch elsewhere.

``backend``: ``"auto"`` (Triton when the tensors are on CUDA and Triton imports, else PyTorch),
``"torch"`` or ``"triton"`` (on a CPU only under ``TRITON_INTERPRET=1``). The environment variable
``ZOO_QUANTIZE_BACKEND`` overrides ``"auto"`` process-wide. Both paths give the same ids: same
scores, ties to the lowest code index.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import torch

from zoo.errors import InputError
from zoo.validation import check_finite as check_finite_values
from zoo.quantize.lookup import (fsq_round_torch, l2norm, lfq_sign_torch, nearest_code_rerank_torch,
                                 nearest_code_torch, rfsq_round_torch)

BACKENDS = ("auto", "torch", "triton")
ENV_BACKEND = "ZOO_QUANTIZE_BACKEND"
#: candidates of the low-precision search re-ranked exactly for fp32 lookups (0: exact fp32 search)
ENV_RERANK = "ZOO_QUANTIZE_RERANK"
#: the universal Hub kernel shipped inside the package (the same files scripts/push_kernels.py uploads)
HUB_KERNEL_DIR = Path(__file__).resolve().parent / "hub"
BUILTIN_VARIANT_DIR = HUB_KERNEL_DIR / "build" / "torch-universal"
_BUILTIN_NAME = "zoo.kernels._builtin_zoo_quantize"


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=1)
def builtin_kernel() -> ModuleType:
    """Import the packaged kernel (``hub/build/torch-universal/zoo_quantize``) as a module."""
    if _BUILTIN_NAME in sys.modules:
        return sys.modules[_BUILTIN_NAME]
    init = BUILTIN_VARIANT_DIR / "zoo_quantize" / "__init__.py"
    spec = importlib.util.spec_from_file_location(_BUILTIN_NAME, init)
    if spec is None or spec.loader is None:  # pragma: no cover - broken install
        raise ImportError(f"cannot load the built-in quantizer kernel from {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_BUILTIN_NAME] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(_BUILTIN_NAME, None)
        raise
    return module


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """The concrete backend ("torch" or "triton") for tensors on ``device``."""
    backend = backend or "auto"
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(ENV_BACKEND, "auto") or "auto"
        if backend not in BACKENDS:
            raise InputError(f"{ENV_BACKEND} must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend == "triton":
        if not triton_available():
            raise InputError("backend='triton' needs the triton package (pip install triton)")
        if device.type != "cuda" and not interpreting():
            raise InputError(f"backend='triton' needs CUDA tensors (got {device.type}); "
                             "set TRITON_INTERPRET=1 to run the kernels on a CPU (slow, for testing)")
    return backend


def _check_pair(x: torch.Tensor, codebook: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise InputError(f"x must be a tensor of shape (..., D), got {type(x).__name__}")
    if not isinstance(codebook, torch.Tensor) or codebook.ndim != 2:
        shape = tuple(codebook.shape) if isinstance(codebook, torch.Tensor) else type(codebook).__name__
        raise InputError(f"codebook must have shape (K, D), got {shape}")
    if codebook.shape[0] == 0:
        raise InputError("codebook is empty (K = 0)")
    if x.shape[-1] != codebook.shape[1]:
        raise InputError(f"x has D={x.shape[-1]} but the codebook has codes of dim {codebook.shape[1]}")
    if not x.is_floating_point() or not codebook.is_floating_point():
        raise InputError(f"x and codebook must be float tensors, got {x.dtype} and {codebook.dtype}")
    if x.device != codebook.device:
        raise InputError(f"x is on {x.device} but the codebook is on {codebook.device}")


def _kernel_dtypes(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same 16-bit dtype on both: keep it (products are exact in fp32); otherwise compute in fp32."""
    if x.dtype == codebook.dtype and x.dtype in (torch.bfloat16, torch.float16, torch.float32):
        return x, codebook
    return x.float(), codebook.float()


def rerank_candidates(candidates: int | None) -> int:
    """Candidates of the re-ranked fp32 search: the argument, else ``ZOO_QUANTIZE_RERANK``, else 0 (off)."""
    if candidates is None:
        text = os.environ.get(ENV_RERANK, "0") or "0"
        try:
            candidates = int(text)
        except ValueError:
            raise InputError(f"{ENV_RERANK} must be a number of candidates (0: off), got {text!r}") from None
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise InputError(f"candidates must be an int >= 0 (0: exact fp32 search), got {candidates!r}")
    return candidates


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean", backend: str = "auto", *,
                 codebook_normalized: bool = False, return_vectors: bool = True, check_finite: bool = True,
                 candidates: int | None = None):
    """Nearest code of every vector: x (..., D), codebook (K, D) -> (ids (...) int64, vectors (..., D)).

    metric: ``"euclidean"``; ``"cosine"`` (l2-normalize x and, unless ``codebook_normalized``, the
    codes; returned vectors are rows of the codebook as given); ``"dot"`` (maximum inner product).
    Memory is O(N + K) on both backends. ``candidates`` > 0 (or ``ZOO_QUANTIZE_RERANK``) makes fp32
    lookups search in bf16 and re-rank that many best codes exactly in fp32
    (:func:`~zoo.quantize.lookup.nearest_code_rerank_torch`): the same ids, on tensor cores.
    ``check_finite``: refuse NaN/Inf in x (a value check: CPU tensors only, see zoo.validation).
    """
    _check_pair(x, codebook)
    if metric not in ("euclidean", "cosine", "dot"):
        raise InputError(f"metric must be 'euclidean', 'cosine' or 'dot', got {metric!r}")
    if check_finite:
        check_finite_values(x, "x contains NaN or Inf values")
    rerank = rerank_candidates(candidates)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    codes = codebook
    if metric == "cosine":
        flat = l2norm(flat)
        if not codebook_normalized:
            codes = l2norm(codebook)
        metric = "dot"
    which = resolve_backend(backend, x.device)
    flat, codes = _kernel_dtypes(flat, codes)
    fused_gather = return_vectors and codes is codebook  # the kernel's gather returns the right rows
    if rerank and flat.dtype == torch.float32:
        ids, vectors = nearest_code_rerank_torch(flat, codes, metric, candidates=rerank, return_vectors=fused_gather)
    elif which == "triton":
        ids, vectors = builtin_kernel().nearest_code(flat, codes, metric, return_vectors=fused_gather)
    else:
        ids, vectors = nearest_code_torch(flat, codes, metric, return_vectors=fused_gather)
    if return_vectors and vectors is None:
        vectors = codebook.index_select(0, ids)
    if vectors is not None:
        vectors = vectors.reshape(*lead, codebook.shape[1])
    return ids.reshape(lead), vectors


def fsq_quantize(z: torch.Tensor, levels, symmetric: bool = False, hard_clamp: bool = False,
                 backend: str = "auto"):
    """FSQ rounding with id packing: z (..., C) -> (codes (..., C) fp32, ids (...) int64)."""
    if z.shape[-1] != len(levels):
        raise InputError(f"FSQ expects {len(levels)} channels (one per level), got shape {tuple(z.shape)}")
    if resolve_backend(backend, z.device) == "triton":
        return builtin_kernel().fsq_quantize(z, list(levels), symmetric=symmetric, hard_clamp=hard_clamp)
    return fsq_round_torch(z, list(levels), symmetric=symmetric, hard_clamp=hard_clamp)


def rfsq_quantize(h: torch.Tensor, levels, scales: torch.Tensor, symmetric: bool = False, hard_clamp: bool = False,
                  backend: str = "auto", count: bool = False):
    """Residual FSQ: h (..., C), scales (L, C) -> (quantized (..., C) in h's dtype, ids (..., L) int64, counts).

    Triton (fp32 h): every level in one kernel, which also adds the ids to an (L, K) fp32 histogram
    ``counts`` when ``count``; otherwise level after level in PyTorch and ``counts`` is None (the
    caller counts the ids). Both give vector-quantize-pytorch's ``ResidualFSQ`` eval ids.
    """
    if h.shape[-1] != len(levels):
        raise InputError(f"residual FSQ expects {len(levels)} channels (one per level), got shape {tuple(h.shape)}")
    if resolve_backend(backend, h.device) == "triton" and h.dtype == torch.float32:
        counts = None
        if count:
            counts = torch.zeros(scales.shape[0], math.prod(int(v) for v in levels), dtype=torch.float32,
                                 device=h.device)
        quantized, ids = builtin_kernel().rfsq_quantize(h, list(levels), scales, symmetric=symmetric,
                                                        hard_clamp=hard_clamp, counts=counts)
        return quantized, ids, counts
    return (*rfsq_round_torch(h, list(levels), scales, symmetric=symmetric, hard_clamp=hard_clamp), None)


def lfq_quantize(x: torch.Tensor, scale: float = 1.0, backend: str = "auto"):
    """LFQ sign with bit packing: x (..., C) -> (codes (..., C) fp32, ids (...) int64)."""
    if resolve_backend(backend, x.device) == "triton":
        return builtin_kernel().lfq_quantize(x, scale)
    return lfq_sign_torch(x, scale)
