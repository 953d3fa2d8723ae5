"""Devices named by users (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``), checked before any work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from zoo.errors import InputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; any other name must parse and exist here:
    ``"cuda"`` on a machine without CUDA is an :class:`InputError` saying so (not a load failure)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"torch is built for CUDA {torch.version.cuda} but finds no GPU or driver" if torch.version.cuda
                   else "this torch is a CPU-only build")
            raise InputError(f"device {device!r}: CUDA is not available on this machine ({why}); "
                             "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    return dev


@contextmanager
def borrowed(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` in eval mode for the block, then back on its own device and mode (a
    library call such as ``zoo.evaluate`` must not leave the caller's model on the GPU)."""
    param = next(iter(model.parameters()), None)
    home, was_training = (param.device if param is not None else None), model.training
    try:
        yield model.to(device).eval()
    finally:
        if home is not None:
            model.to(home)
        model.train(was_training)
