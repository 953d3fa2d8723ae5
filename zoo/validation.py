"""Input checks shared by every tokenizer: they turn bad input into a clear :class:`InputError`."""

from __future__ import annotations

import torch

from zoo.errors import InputError


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
    if images.numel() and not torch.isfinite(images).all():
        raise InputError("images contain NaN or Inf values")
    if images.numel():
        lo, hi = images.min().item(), images.max().item()
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
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise InputError(f"token ids must be in [0, {vocab_size}), got values in [{lo}, {hi}]")


def _describe_lengths(lengths) -> str:
    if isinstance(lengths, range):
        return f"between {lengths.start} and {lengths.stop - 1}"
    return "one of " + ", ".join(str(x) for x in sorted(lengths))
