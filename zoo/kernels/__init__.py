"""Fused quantization kernels (Triton) with automatic dispatch, shipped as a universal Hub kernel.

- :func:`nearest_code`, :func:`fsq_quantize`, :func:`rfsq_quantize`, :func:`lfq_quantize`: dispatching entry points
  (``backend="auto" | "torch" | "triton"``, or ``ZOO_QUANTIZE_BACKEND``);
- :data:`HUB_KERNEL_DIR`: the kernel laid out for the Hub (``build/torch-universal/zoo_quantize``),
  loadable with ``kernels.get_local_kernel(HUB_KERNEL_DIR)``; it is also the built-in default;
- :func:`kernelize_quantizers`: swap the quantizer layers' forward for a kernel from the Hub.
"""

from zoo.kernels.dispatch import (
    BACKENDS,
    ENV_BACKEND,
    HUB_KERNEL_DIR,
    builtin_kernel,
    fsq_quantize,
    lfq_quantize,
    nearest_code,
    rerank_candidates,
    resolve_backend,
    rfsq_quantize,
    triton_available,
)
from zoo.kernels.layers import (
    DEFAULT_KERNEL_REPO,
    FSQRound,
    LFQSign,
    NearestCode,
    kernel_mapping,
    kernelize_quantizers,
)

__all__ = [
    "BACKENDS", "DEFAULT_KERNEL_REPO", "ENV_BACKEND", "FSQRound", "HUB_KERNEL_DIR", "LFQSign", "NearestCode",
    "builtin_kernel", "fsq_quantize", "kernel_mapping", "kernelize_quantizers", "lfq_quantize", "nearest_code",
    "rerank_candidates", "resolve_backend", "rfsq_quantize", "triton_available",
]
