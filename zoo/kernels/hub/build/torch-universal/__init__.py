"""Build variant entry point: re-exports the ``zoo_quantize`` package beside it."""

from .zoo_quantize import KERNEL_VERSION, fsq_quantize, layers, lfq_quantize, nearest_code  # noqa: F401

__all__ = ["KERNEL_VERSION", "fsq_quantize", "layers", "lfq_quantize", "nearest_code"]
