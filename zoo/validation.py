"""Input checks shared by every tokenizer: they turn bad input into a clear :class:`InputError`."""

from __future__ import annotations

import math
import os

import torch

from zoo.errors import InputError

#: environment variable choosing when value checks (NaN/Inf, range, id bounds) run:
#: "auto" (default): on CPU tensors only, so that a GPU never waits on the host for a check;
#: "always": on every device (synchronises the GPU); "async": CPU as "auto", on a GPU with
#: ``torch._assert_async`` (no wait, but a failure aborts the CUDA context); "off": never.
VALUE_CHECKS_ENV = "ZOO_VALUE_CHECKS"
VALUE_CHECK_MODES = ("auto", "always", "async", "off")


def value_check_mode(t: torch.Tensor) -> str:
    """How to check the values of ``t``: "sync" (read them on the host), "async" or "skip"."""
    mode = os.environ.get(VALUE_CHECKS_ENV, "auto") or "auto"
    if mode not in VALUE_CHECK_MODES:
        raise InputError(f"{VALUE_CHECKS_ENV} must be one of {VALUE_CHECK_MODES}, got {mode!r}")
    if mode == "off" or t.numel() == 0:
        return "skip"
    if t.device.type == "cpu" or mode == "always":
        return "sync"
    return "async" if mode == "async" else "skip"


def check_finite(x: torch.Tensor, message: str) -> None:
    """Raise :class:`InputError` ``message`` if x has NaN or Inf (a value check, see :func:`value_check_mode`)."""
    mode = value_check_mode(x)
    if mode == "sync" and not bool(torch.isfinite(x).all()):
        raise InputError(message)
    if mode == "async":
        torch._assert_async(torch.isfinite(x).all(), message)


def check_images(images: torch.Tensor, input_size: int | tuple[int, int]) -> None:
    """Check ``images``: (B, 3, H, W) floating tensor in [0, 1] with H, W == ``input_size``."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        hint = " (add a batch dimension with images[None])" if images.ndim == 3 else ""
        raise InputError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}{hint}")
    if images.shape[1] != 3:
        raise InputError(f"images must have 3 channels (RGB) in dim 1, got shape {tuple(images.shape)}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if tuple(images.shape[-2:]) != size:
        raise InputError(
            f"images must be {size[0]}x{size[1]} pixels for this model, got {images.shape[-2]}x{images.shape[-1]}; "
            "resize or center-crop first (zoo.data.load_image does both)"
        )
    if not images.is_floating_point():
        raise InputError(f"images must be a float tensor with values in [0, 1], got dtype {images.dtype} "
                         "(for uint8 images divide by 255)")
    mode = value_check_mode(images)
    if mode == "async":
        ok = torch.isfinite(images).all() & (images.amin() >= -1e-3) & (images.amax() <= 1 + 1e-3)
        torch._assert_async(ok, "images must be finite with values in [0, 1]")
    if mode == "sync":
        lo, hi = (float(v) for v in torch.aminmax(images))  # one pass; NaN and Inf show in the extremes
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError("images contain NaN or Inf values")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"images must have values in [0, 1], got range [{lo:.3g}, {hi:.3g}] "
                             "(images in [-1, 1] or [0, 255] must be rescaled)")


def check_ids(ids: torch.Tensor, vocab_size: int, lengths: int | tuple[int, ...] | range | None,
              *, levels: int | None = None) -> None:
    """Check token ids: (B, N) (or (B, N, L) when ``levels`` is given) integer tensor in [0, vocab_size).

    ``lengths`` is the accepted token count N: an int, a collection of ints, or None for any length.
    """
    if not isinstance(ids, torch.Tensor):
        raise InputError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
    want_ndim = 2 if levels is None else 3
    shape_name = "(B, N)" if levels is None else "(B, N, L)"
    if ids.ndim != want_ndim:
        raise InputError(f"ids must have shape {shape_name}, got {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InputError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    n = ids.shape[1]
    if lengths is not None:
        ok = n == lengths if isinstance(lengths, int) else n in lengths
        if not ok:
            want = lengths if isinstance(lengths, int) else _describe_lengths(lengths)
            raise InputError(f"ids must have {want} tokens per sample, got {n} (shape {tuple(ids.shape)})")
    if levels is not None and ids.shape[2] > levels:
        raise InputError(f"ids have {ids.shape[2]} residual levels, the model has at most {levels}")
    mode = value_check_mode(ids)
    if mode == "async":
        torch._assert_async((ids.amin() >= 0) & (ids.amax() < vocab_size), f"token ids must be in [0, {vocab_size})")
    if mode == "sync":
        lo, hi = (int(v) for v in torch.aminmax(ids))
        if lo < 0 or hi >= vocab_size:
            raise InputError(f"token ids must be in [0, {vocab_size}), got values in [{lo}, {hi}]")


def _describe_lengths(lengths) -> str:
    if isinstance(lengths, range):
        return f"between {lengths.start} and {lengths.stop - 1}"
    return "one of " + ", ".join(str(x) for x in sorted(lengths))
