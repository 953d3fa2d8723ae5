"""Quantizers behind one interface: latents (B, N, D) -> (quantized, ids, aux); ids -> vectors.

``make_quantizer(kind, **options)`` builds any of them: ``"vq"`` (:class:`VectorQuantizer`),
``"fsq"`` (:class:`FiniteScalarQuantizer`), ``"lfq"`` (:class:`LookupFreeQuantizer`), ``"rvq"``
(:class:`ResidualVectorQuantizer`) and ``"rfsq"`` (:class:`ResidualFiniteScalarQuantizer`).
"""

from __future__ import annotations

import dataclasses

from zoo.errors import ConfigError
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, UsageTracker
from zoo.quantize.fsq import FLEXTOK_LEVELS, FiniteScalarQuantizer, FSQConfig
from zoo.quantize.lfq import LFQConfig, LookupFreeQuantizer
from zoo.quantize.residual import ResidualFiniteScalarQuantizer, ResidualVectorQuantizer, RFSQConfig, RVQConfig
from zoo.quantize.vq import VectorQuantizer, VQConfig

QUANTIZERS = {
    "vq": (VectorQuantizer, VQConfig),
    "fsq": (FiniteScalarQuantizer, FSQConfig),
    "lfq": (LookupFreeQuantizer, LFQConfig),
    "rvq": (ResidualVectorQuantizer, RVQConfig),
    "rfsq": (ResidualFiniteScalarQuantizer, RFSQConfig),
}


def make_quantizer(kind: str, **options) -> Quantizer:
    """Build a quantizer: ``make_quantizer("fsq", levels=[8, 8, 8, 5, 5, 5], dim=32)``.

    ``options`` are the fields of the kind's config dataclass (``VQConfig``, ``FSQConfig``, ...).
    """
    if kind not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer kind {kind!r}; choose one of {sorted(QUANTIZERS)}")
    cls, config_cls = QUANTIZERS[kind]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for quantizer {kind!r}; valid options: {sorted(fields)}")
    try:
        config = config_cls(**options)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"quantizer {kind!r}: {e}") from None
    return cls(config)


__all__ = [
    "FLEXTOK_LEVELS", "FSQConfig", "FiniteScalarQuantizer", "LFQConfig", "LookupFreeQuantizer", "QUANTIZERS",
    "Quantizer", "QuantizerAux", "QuantizerOutput", "RFSQConfig", "RVQConfig", "ResidualFiniteScalarQuantizer",
    "ResidualVectorQuantizer", "UsageTracker", "VQConfig", "VectorQuantizer", "make_quantizer",
]
