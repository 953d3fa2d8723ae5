"""Random square crops of every photo this machine can get offline, for training image tokenizers.

    apt-get install mate-backgrounds gnome-backgrounds plasma-workspace-wallpapers opencv-doc
    pip install scikit-image
    python scripts/prepare_photos.py OUT --n 60000 --size 64 [--hold-out astronaut,coffee]
    python scripts/prepare_photos.py OUT --sources --short-side 160   # the photos, for data.crop: scale

Sources (those installed are used; licenses in each package's /usr/share/doc/<package>/copyright):
- plasma-workspace-wallpapers (KDE, GPL-2+): the largest landscape rendering of each wallpaper;
- mate-backgrounds (GPL-2+ / CC-BY-SA-4.0) and gnome-backgrounds (CC-BY-SA) desktop photos;
- opencv-doc (Apache-2.0 / BSD) sample and tutorial images;
- scikit-image's sample photos (BSD-3-Clause; public-domain NASA images among them), without
  ``--hold-out`` (astronaut and coffee by default: the zoo's held-out evaluation photos).

Photos under 160 px on their short side and 1-bit (black-and-white mask) images are skipped; larger ones are scaled to at most 1600 px on
their long side first. Each crop is a random square between ``size`` and the photo's short side,
resized to ``size`` (bicubic) and flipped with probability 1/2, so crops range from close-ups to
whole scenes. ``OUT_sources.txt`` lists the photos used.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image
from sample_images import random_crop  # scripts/ is on sys.path when a script runs

SUFFIXES = (".png", ".jpg", ".jpeg")


def plasma_wallpapers(root: Path = Path("/usr/share/wallpapers")) -> list[Path]:
    """The largest landscape image of each KDE wallpaper (the package ships several renderings)."""
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        sizes = []
        for p in (d / "contents" / "images").glob("*"):
            w, _, h = p.stem.partition("x")
            if p.suffix.lower() in SUFFIXES and w.isdigit() and h.isdigit() and int(w) >= int(h):
                sizes.append((int(w), p))
        if sizes:
            out.append(max(sizes)[1])
    return out


def photo_sources(hold_out: set[str]) -> list[Path]:
    paths = plasma_wallpapers()
    for root in (Path("/usr/share/backgrounds"), Path("/usr/share/doc/opencv-doc")):
        if root.is_dir():
            paths += sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
    try:
        import skimage
        data = Path(skimage.__file__).parent / "data"
        paths += sorted(p for p in data.iterdir() if p.suffix in (".png", ".jpg") and p.stem not in hold_out)
    except ImportError:
        pass
    return paths


def shrink(im: Image.Image, scale: float) -> Image.Image:
    """``im`` scaled by ``scale`` < 1 (Lanczos); unchanged for ``scale`` >= 1."""
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS) if scale < 1 else im


def load(path: Path, min_side: int = 160, max_side: int = 1600) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            if min(im.size) < min_side or im.mode == "1":  # bilevel masks (opencv-doc shape samples) are no photos
                return None
            im = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return shrink(im, max_side / max(im.size))


def write_sources(out: Path, paths: list[Path], short_side: int, quality: int = 85) -> None:
    """Each usable photo of ``paths`` scaled down (Lanczos) to at most ``short_side`` on its short side,
    as ``OUT/NNNN_<name>.webp``; ``OUT_sources.txt`` lists the originals in the same order."""
    out.mkdir(parents=True, exist_ok=True)
    used = []
    for p in paths:
        if (im := load(p)) is None:
            continue
        im = shrink(im, short_side / min(im.size))
        im.save(out / f"{len(used):04d}_{p.stem}.webp", quality=quality)
        used.append(p)
    (out.parent / f"{out.name}_sources.txt").write_text("\n".join(map(str, used)) + "\n")
    print(f"wrote {len(used)} photos (short side <= {short_side} px) to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--hold-out", default="astronaut,coffee", help="scikit-image photos to leave out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", action="store_true",
                    help="write each photo once instead of crops (for recipes with data.crop: scale)")
    ap.add_argument("--short-side", type=int, default=160, help="with --sources: scale photos down to this short side")
    args = ap.parse_args()
    hold_out = set(filter(None, args.hold_out.split(",")))
    if args.sources:
        write_sources(args.out, photo_sources(hold_out), args.short_side)
        return
    photos = [(p, im) for p in photo_sources(hold_out) if (im := load(p)) is not None]
    if not photos:
        raise SystemExit("no photos found: install the Debian packages or scikit-image named in --help")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out.parent / f"{args.out.name}_sources.txt").write_text("\n".join(str(p) for p, _ in photos) + "\n")
    rng = random.Random(args.seed)
    for i in range(args.n):
        random_crop(photos[rng.randrange(len(photos))][1], args.size, rng).save(args.out / f"{i:06d}.png")
    print(f"wrote {args.n} crops of {args.size}px from {len(photos)} photos to {args.out}")


if __name__ == "__main__":
    main()
