"""Reading images from disk into the tensors tokenizers take: (3, S, S) float in [0, 1]."""

from __future__ import annotations

from pathlib import Path

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
    """Open ``path`` as an RGB PIL image; unreadable files raise :class:`InputError`."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


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


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read ``path`` and center-crop it to (1, 3, size, size) float in [0, 1]."""
    return to_tensor(open_rgb(path), size)[None]


def save_image(images: torch.Tensor, path: str | Path) -> Path:
    """Write (3, H, W) or (B, 3, H, W) images in [0, 1] as one PNG/JPEG (a row when B > 1), atomically."""
    from torchvision.utils import make_grid

    from zoo.io import atomic_path

    if images.ndim == 4:
        images = make_grid(images, nrow=images.shape[0], padding=0)
    arr = (images.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt)
    return path
