"""Audio datasets and the LightningDataModule that feeds audio codecs.

A folder of wav/flac/ogg files (recursive), each read with soundfile, turned to the model's channel
count (mono: channel mean; stereo from mono: duplicated) and resampled to its rate, kept in memory
(``cache``), then cut into random ``segment_seconds`` crops for training (zero-padded when shorter)
and fixed crops from the start for validation. With ``transcripts=True`` each item is a dict
``{"wav": (C, T), "text": str}`` read from a ``.txt`` file beside the audio (empty when missing).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from zoo.audio import AUDIO_EXTENSIONS, load_audio
from zoo.data import list_files
from zoo.errors import InputError
from zoo.splits import train_val_indices

log = logging.getLogger(__name__)


def read_transcript(path: Path) -> str:
    """The transcript in the ``.txt`` file beside the audio file ``path`` ("" when missing)."""
    txt = Path(path).with_suffix(".txt")
    return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""


class AudioFolder(Dataset):
    """Crops of ``files``: (channels, segment) float tensors (or dicts with transcripts)."""

    def __init__(self, files: list[Path], sample_rate: int, channels: int, segment: int, *, train: bool,
                 transcripts: bool = False, cache: bool = True):
        self.files, self.sample_rate, self.channels = files, sample_rate, channels
        self.segment, self.train, self.transcripts, self.cache = segment, train, transcripts, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _wav(self, i: int) -> torch.Tensor:
        if i in self._cache:
            return self._cache[i]
        wav, _ = load_audio(self.files[i], self.sample_rate, self.channels)
        if self.cache:
            self._cache[i] = wav
        return wav

    def __getitem__(self, i: int) -> torch.Tensor | dict[str, Any]:
        wav = self._wav(i)
        if wav.shape[-1] > self.segment:
            start = int(torch.randint(0, wav.shape[-1] - self.segment + 1, ())) if self.train else 0
            wav = wav[..., start:start + self.segment]
        else:
            wav = F.pad(wav, (0, self.segment - wav.shape[-1]))
        if not self.transcripts:
            return wav
        return {"wav": wav, "text": read_transcript(self.files[i])}


def readable_audio(root: str | Path, limit: int | None = None) -> list[Path]:
    """Audio files under ``root`` that soundfile can open; unreadable ones are skipped with a warning."""
    import soundfile as sf

    good, bad = [], []
    for path in list_files(root, AUDIO_EXTENSIONS, "audio"):
        try:
            if sf.info(str(path)).frames > 0:
                good.append(path)
            else:
                bad.append(path)
        except Exception:  # soundfile's LibsndfileError / RuntimeError
            bad.append(path)
        if limit is not None and len(good) >= limit:
            break
    if bad:
        log.warning("skipping %d unreadable or empty audio file(s) under %s, e.g. %s", len(bad), root, bad[0])
    if not good:
        raise InputError(f"no readable audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    return good


class AudioDataModule(L.LightningDataModule):
    """Train/val split of an audio folder: random crops of ``segment_seconds`` for training."""

    def __init__(self, root: str, sample_rate: int, channels: int = 1, segment_seconds: float = 1.0,
                 batch_size: int = 8, num_workers: int = 0, val_fraction: float = 0.05, seed: int = 0,
                 transcripts: bool = False, cache: bool = True, limit: int | None = None):
        super().__init__()
        if segment_seconds <= 0:
            raise InputError(f"segment_seconds must be > 0, got {segment_seconds}")
        self.root, self.sample_rate, self.channels = root, int(sample_rate), int(channels)
        self.segment = int(round(segment_seconds * self.sample_rate))
        self.batch_size, self.num_workers, self.val_fraction, self.seed = batch_size, num_workers, val_fraction, seed
        self.transcripts, self.cache, self.limit = transcripts, cache, limit
        self.train_set: AudioFolder | None = None
        self.val_set: AudioFolder | None = None

    def split_files(self) -> tuple[list[Path], list[Path]]:
        """(train, val) readable files of the folder: a seeded shuffle, ``val_fraction`` held out
        (at least one file when there are two or more)."""
        files = readable_audio(self.root, self.limit)
        train, val = train_val_indices(len(files), self.val_fraction, self.seed)
        return [files[i] for i in train], [files[i] for i in val]

    def setup(self, stage: str | None = None) -> None:
        train, val = self.split_files()
        kw = dict(transcripts=self.transcripts, cache=self.cache)
        self.train_set = AudioFolder(train or val, self.sample_rate, self.channels, self.segment, train=True, **kw)
        self.val_set = AudioFolder(val or train, self.sample_rate, self.channels, self.segment, train=False, **kw)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          drop_last=len(self.train_set) >= self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)


__all__ = ["AudioDataModule", "AudioFolder", "read_transcript", "readable_audio"]
