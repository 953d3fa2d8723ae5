"""Quantizers behind one interface: latents (B, N, D) -> (quantized, ids, aux); ids -> vectors."""

from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, UsageTracker
from zoo.quantize.vq import VectorQuantizer, VQConfig

__all__ = ["Quantizer", "QuantizerAux", "QuantizerOutput", "UsageTracker", "VectorQuantizer", "VQConfig"]
