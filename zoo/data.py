"""Reading images from disk into the tensors tokenizers take: (3, S, S) float in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import functional as TF

from zoo.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def list_files(root: str | Path, extensions: tuple[str, ...], kind: str) -> list[Path]:
    """Files under ``root`` with one of ``extensions`` (recursive, sorted); a missing folder or
    one without such files is an :class:`InputError` naming ``kind`` (e.g. "image")."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {root} does not exist (expected a folder of {kind} files)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise InputError(f"no {kind} files ({', '.join(extensions)}) found under {root}")
    return files


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, sorted); a missing or empty folder is an error."""
    return list_files(root, IMAGE_EXTENSIONS, "image")


def open_rgb(path: str | Path) -> Image.Image:
    """Open ``path`` as an 8-bit RGB PIL image; unreadable files (missing, corrupt, truncated,
    decompression bombs over PIL's pixel limit) raise :class:`InputError`. 16- and 32-bit
    grayscale and float images are scaled to 8 bits by their bit depth (PIL alone clips them)."""
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except FileNotFoundError:
        raise InputError(f"image file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"image path {path} is a folder, not an image file") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"refusing image {path}: {e} (raise PIL.Image.MAX_IMAGE_PIXELS if you trust it)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB. High-bit-depth grayscale ("I;16*", "I", "F") is rescaled from its
    full range (65535 for 16-bit, 1.0 or 255 for float) instead of being clipped at 255."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
        elif im.mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit ints: PNGs of 16 bits or less open like this in older Pillow
            peak = float(arr.max()) if arr.size else 0.0
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        arr = np.nan_to_num(np.clip(arr / top, 0.0, 1.0)) * 255.0
        return Image.fromarray(arr.round().astype(np.uint8), mode="L").convert("RGB")
    return im.convert("RGB")


def to_tensor(image: Image.Image, size: int, *, random_crop: bool = False, hflip: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Resize the shorter side to ``size``, crop a square (center or random): (3, size, size) in [0, 1]."""
    image = TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    w, h = image.size
    if random_crop:
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        image = TF.crop(image, top, left, size, size)
    else:
        image = TF.center_crop(image, size)
    x = TF.to_tensor(image)
    if hflip and bool(torch.rand((), generator=generator) < 0.5):
        x = x.flip(-1)
    return x


def crop_square(image: Image.Image, left: int, top: int, side: int, size: int) -> Image.Image:
    """The ``side``-pixel square of ``image`` at (``left``, ``top``), resized to ``size`` (bicubic,
    antialiased)."""
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


def random_scale_crop(image: Image.Image, size: int, *, hflip: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """A random square between ``size`` and the short side of ``image`` (side, then position, drawn
    uniformly from torch's RNG), resized to ``size`` and flipped left-right with probability 1/2 when
    ``hflip``: (3, size, size) in [0, 1]. Crops range from close-ups to the whole scene; an image
    smaller than ``size`` is first scaled up so its short side is ``size``."""
    if min(image.size) < size:
        image = TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    w, h = image.size
    side = int(torch.randint(size, min(w, h) + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
    top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
    x = TF.to_tensor(crop_square(image, left, top, side, size))
    if hflip and bool(torch.rand((), generator=generator) < 0.5):
        x = x.flip(-1)
    return x


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read ``path`` and center-crop it to (1, 3, size, size) float in [0, 1]."""
    return to_tensor(open_rgb(path), size)[None]


def image_format(path: str | Path) -> str:
    """The PIL format that ``path``'s extension names (case-insensitive: ``.png``, ``.JPG``,
    ``.webp``, ...); an extension PIL cannot write raises :class:`OutputError` (before any work)."""
    from zoo.errors import OutputError

    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        known = sorted(e for e, f in Image.registered_extensions().items() if f in Image.SAVE and e in IMAGE_EXTENSIONS)
        raise OutputError(f"cannot write an image to {path}: unknown image extension {suffix or '(none)'!r}; "
                          f"use one of {', '.join(known)}")
    return fmt


def save_image(images: torch.Tensor, path: str | Path) -> Path:
    """Write (3, H, W) or (B, 3, H, W) images in [0, 1] as one image (a row when B > 1), atomically,
    in the format the extension names (PNG, JPEG, WebP, ...; see :func:`image_format`)."""
    from torchvision.utils import make_grid

    from zoo.io import atomic_path

    fmt = image_format(path)
    if images.ndim == 4:
        images = make_grid(images, nrow=images.shape[0], padding=0)
    arr = (images.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt)
    return path
