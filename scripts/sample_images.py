"""Make a folder of training/eval crops from photos that can be had offline.

    python scripts/sample_images.py OUT --n 2000 --size 96 [--source DIR] [--hold-out astronaut,coffee]
                                         [--only astronaut,coffee]

By default the photos are scikit-image's sample images (``pip install scikit-image``); ``--source``
takes any folder of images instead. Crops are random squares at several scales, saved as PNG.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image

from zoo.data import crop_square

SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right",
                  "hubble_deep_field", "retina", "ihc", "color", "brick", "grass", "gravel", "camera", "moon",
                  "page", "coins", "immunohistochemistry"]


def photo_paths(source: str | None) -> list[Path]:
    if source:
        return sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    import skimage
    root = Path(skimage.__file__).parent / "data"
    return sorted(p for p in root.iterdir() if p.stem in SKIMAGE_PHOTOS and p.suffix in (".png", ".jpg"))


def random_crop(im: Image.Image, size: int, rng: random.Random) -> Image.Image:
    """A random square of ``im`` between ``size`` and its short side, resized to ``size`` (bicubic) and
    flipped left-right with probability 1/2 (draws side, x, y, flip from ``rng`` in that order)."""
    side = rng.randint(size, max(size, min(im.size)))
    x, y = rng.randint(0, im.width - side), rng.randint(0, im.height - side)
    crop = crop_square(im, x, y, side, size)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--source", default=None)
    ap.add_argument("--hold-out", default="", help="comma-separated photo names to leave out")
    ap.add_argument("--only", default="", help="comma-separated photo names to use exclusively")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    held, only = set(filter(None, args.hold_out.split(","))), set(filter(None, args.only.split(",")))
    paths = [p for p in photo_paths(args.source) if p.stem not in held and (not only or p.stem in only)]
    if not paths:
        raise SystemExit("no photos found (install scikit-image or pass --source DIR)")
    photos = [Image.open(p).convert("RGB") for p in paths]
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        random_crop(photos[i % len(photos)], args.size, rng).save(args.out / f"{paths[i % len(paths)].stem}_{i:05d}.png")
    print(f"wrote {args.n} crops of {args.size}px from {len(photos)} photos to {args.out}")


if __name__ == "__main__":
    main()
