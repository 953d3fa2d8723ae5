"""Image datasets and the LightningDataModule that feeds image tokenizers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zoo.config import NonNegativeInt, PositiveInt, Range, check_kwargs
from zoo.data import list_images, open_rgb, random_scale_crop, to_tensor
from zoo.errors import InputError
from zoo.splits import train_val_indices

log = logging.getLogger(__name__)

CropMode = Literal["resize", "scale"]


class ImageFolder(Dataset):
    """Images of ``files`` as (3, size, size) float in [0, 1].

    Without ``train``: the short side resized to ``size``, center crop. With ``train``, a random crop
    and flip drawn from torch's RNG (seeded per worker by ``lightning.seed_everything(workers=True)``):
    ``crop="resize"`` resizes the short side to ``size`` and takes a random window (for folders of
    ready-made crops); ``crop="scale"`` takes a random square between ``size`` and the short side and
    resizes it (for folders of whole photos: close-ups to whole scenes). ``length`` (default: the
    number of files) makes an epoch that many samples, cycling through the files, so a few large
    photos still give long epochs. ``cache`` keeps decoded images in memory (per worker process).
    """

    def __init__(self, files: list[Path], size: int, *, train: bool, crop: CropMode = "resize",
                 length: int | None = None, cache: bool = False):
        self.files = files
        self.size = size
        self.train = train
        self.crop = crop
        self.length = length or len(files)
        self.cache: dict[Path, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def _open(self, path: Path) -> Image.Image:
        if self.cache is None:
            return open_rgb(path)
        if path not in self.cache:
            self.cache[path] = open_rgb(path)
        return self.cache[path]

    def _sample(self, path: Path) -> torch.Tensor:
        image = self._open(path)
        if self.train and self.crop == "scale":
            return random_scale_crop(image, self.size, hflip=True)
        return to_tensor(image, self.size, random_crop=self.train, hflip=self.train)

    def __getitem__(self, i: int) -> torch.Tensor:
        # a file that became unreadable after setup (deleted, truncated, replaced by a decompression
        # bomb) is skipped with a warning: the next readable file stands in for it
        for k in range(len(self.files)):
            path = self.files[(i + k) % len(self.files)]
            try:
                return self._sample(path)
            except InputError as e:
                log.warning("skipping unreadable training image: %s", e)
        raise InputError(f"none of the {len(self.files)} training images can be read any more")


def readable_images(root: str | Path) -> list[Path]:
    """Images under ``root`` that PIL can open; unreadable ones are skipped with a warning."""
    good, bad = [], []
    for path in list_images(root):
        try:
            open_rgb(path)
            good.append(path)
        except InputError as e:
            bad.append((path, e))
    if bad:
        log.warning("skipping %d unreadable image(s) under %s, e.g. %s", len(bad), root, bad[0][1])
    if not good:
        raise InputError(f"none of the {len(bad)} image files under {root} could be read")
    return good


class ImageDataModule(L.LightningDataModule):
    """Train/val split of an image folder. ``val_fraction`` of the files (at least 1) go to validation.

    ``crop``, ``samples_per_epoch`` and ``cache_images`` shape the training set (see
    :class:`ImageFolder`): ``crop="scale"`` with ``samples_per_epoch`` and ``cache_images`` trains
    on endless random crops of a folder of whole photos instead of a folder of ready-made crops.
    Validation images are center crops of the short side."""

    def __init__(self, root: str | Path, image_size: PositiveInt, batch_size: PositiveInt = 8,
                 num_workers: NonNegativeInt = 0, val_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.1,
                 seed: int = 0, crop: CropMode = "resize", samples_per_epoch: PositiveInt | None = None,
                 cache_images: bool = False):
        super().__init__()
        check_kwargs(ImageDataModule.__init__, dict(root=root, image_size=image_size, batch_size=batch_size,
                                                    num_workers=num_workers, val_fraction=val_fraction, seed=seed,
                                                    crop=crop, samples_per_epoch=samples_per_epoch,
                                                    cache_images=cache_images),
                     type(self).__name__, "data")
        if not Path(root).is_dir():  # found now, not after the model is built and the trainer started
            what = "is a file" if Path(root).exists() else "does not exist"
            raise InputError(f"data.root {root} {what}: expected a folder of images (searched recursively)")
        self.root, self.image_size, self.batch_size = root, image_size, batch_size
        self.num_workers, self.val_fraction, self.seed = num_workers, val_fraction, seed
        self.crop, self.samples_per_epoch, self.cache_images = crop, samples_per_epoch, cache_images
        self.train_set: ImageFolder | None = None
        self.val_set: ImageFolder | None = None

    def setup(self, stage: str | None = None) -> None:
        files = readable_images(self.root)
        train_idx, val_idx = train_val_indices(len(files), self.val_fraction, self.seed)
        val = [files[i] for i in val_idx]
        train = [files[i] for i in train_idx] or val
        self.train_set = ImageFolder(train, self.image_size, train=True, crop=self.crop,
                                     length=self.samples_per_epoch, cache=self.cache_images)
        self.val_set = ImageFolder(val or train, self.image_size, train=False, cache=self.cache_images)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=len(self.train_set) >=
                          self.batch_size, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
