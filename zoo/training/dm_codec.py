"""Training DM-Codec: teacher features per utterance (cached), a data module that crops audio and
features together, and the LightningModule that adds the distillation loss to the codec losses.

Pipeline (recipe task ``"dm_codec"``):

1. :class:`DistillAudioDataModule` lists the audio folder, loads the teachers once and computes, for
   every utterance, the speech teacher's features and the text teacher's token embeddings placed on
   the codec's frames (``alignment``: ``"positional"``, token i -> frame i as the official code does,
   or ``"timestamps"``, each word's tokens on the frames where ASR word timestamps say it is spoken).
   Features are cached as safetensors files keyed by the audio's hash and the teacher settings, so
   later runs (and resumes) skip the teachers entirely. Text: the ``.txt`` transcript beside each
   file (``text_source="transcript"``), or the offline ASR's transcript (``"asr"``).
2. Training crops audio at frame boundaries and slices the features with it.
3. :class:`DMCodecModule` = :class:`~zoo.training.audio_module.AudioCodecModule` + 
   ``distill_weight * (sm_weight * L(SM, levels sm_levels) + lm_weight * L(LM, levels lm_levels))``
   with L the D-axis loss of :mod:`zoo.training.distill` (defaults as the paper's best: LM on RVQ-1,
   SM on RVQ-1:8, weights 0.2 / 0.8, distillation weight 120).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from zoo.audio import load_audio, resample as resample_audio
from zoo.errors import ConfigError, InputError
from zoo.io import atomic_write
from zoo.metrics.asr import normalize_text
from zoo.models.dm_codec import parse_levels
from zoo.training.audio_data import AudioDataModule, read_transcript
from zoo.training.audio_module import AudioCodecModule
from zoo.training.distill import WordSpan, align_frames, get_loss, positional_alignment, timestamp_alignment
from zoo.training.teachers import (TEACHER_RATE, HFSpeechTeacher, HFTextTeacher, WhisperEncoderTeacher,
                                   asr_word_spans)

log = logging.getLogger(__name__)

ALIGNMENTS = ("positional", "timestamps")
TEXT_SOURCES = ("transcript", "asr")


# -- teachers from recipe values -------------------------------------------------------------------
def teacher_off(spec: str | None) -> bool:
    """True for a recipe value that turns a teacher off (None, "" or "none")."""
    return spec in (None, "", "none")


def build_speech_teacher(spec: str | None):
    """``"whisper"`` (offline default: Whisper tiny.en encoder), ``"whisper:PATH"``, ``"hf:ID_OR_PATH"``
    (e.g. ``hf:facebook/hubert-base-ls960``, the official teacher) or None (no SM teacher)."""
    if teacher_off(spec):
        return None
    if spec == "whisper":
        return WhisperEncoderTeacher()
    if spec.startswith("whisper:"):
        return WhisperEncoderTeacher(spec.split(":", 1)[1])
    if spec.startswith("hf:"):
        return HFSpeechTeacher(spec.split(":", 1)[1])
    raise ConfigError(f"speech teacher {spec!r}: expected 'whisper', 'whisper:PATH', 'hf:MODEL_ID_OR_PATH' or none")


def build_text_teacher(spec: str | None):
    """``"minilm"`` (offline default), ``"hf:ID_OR_PATH"`` (e.g. ``hf:bert-base-uncased``, official) or None."""
    if teacher_off(spec):
        return None
    if spec == "minilm":
        return HFTextTeacher()
    if spec.startswith("hf:"):
        return HFTextTeacher(spec.split(":", 1)[1])
    raise ConfigError(f"text teacher {spec!r}: expected 'minilm', 'hf:MODEL_ID_OR_PATH' or none")


def transfer_times(reference: list[str], spans: list[WordSpan]) -> list[WordSpan]:
    """Times for the words of a reference transcript from ASR word spans: words the ASR also heard
    (matched in order after :func:`normalize_text`) take its times; the others share the gap between
    their matched neighbours evenly."""
    ref_norm = [normalize_text(w) for w in reference]
    asr_norm = [normalize_text(s.word) for s in spans]
    times: list[tuple[float, float] | None] = [None] * len(reference)
    for block in difflib.SequenceMatcher(a=ref_norm, b=asr_norm, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            s = spans[block.b + k]
            times[block.a + k] = (s.start, s.end)
    end_all = spans[-1].end if spans else 0.0
    out, i = [], 0
    while i < len(reference):
        if times[i] is not None:
            out.append(WordSpan(reference[i], *times[i]))
            i += 1
            continue
        j = i
        while j < len(reference) and times[j] is None:
            j += 1
        lo = out[-1].end if out else 0.0
        hi = times[j][0] if j < len(reference) else max(end_all, lo)
        step = (hi - lo) / (j - i) if hi > lo else 0.0
        for k in range(i, j):
            out.append(WordSpan(reference[k], lo + (k - i) * step, lo + (k - i + 1) * step))
        i = j
    return out


# -- teacher features per utterance ---------------------------------------------------------------
@dataclass
class FeatureSpec:
    """What the cached features depend on (besides the audio bytes)."""

    speech_teacher: str | None
    text_teacher: str | None
    alignment: str
    text_source: str
    frame_rate: float

    def key(self, audio_hash: str, text: str) -> str:
        blob = json.dumps([audio_hash, text, self.speech_teacher, self.text_teacher, self.alignment,
                           self.text_source, self.frame_rate], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class TeacherFeatures:
    """Computes (and caches) per-utterance teacher features on the codec's frame grid.

    ``__call__(path, wav16k (T,)) -> {"sm": (N, D_sm), "lm": (N, D_lm), "lm_mask": (N,) bool}`` with
    N = ceil(T / hop) at ``frame_rate``; keys of absent teachers are omitted.
    """

    def __init__(self, spec: FeatureSpec, cache_dir: str | Path | None, *, asr: Any = None):
        if spec.alignment not in ALIGNMENTS:
            raise ConfigError(f"alignment must be one of {ALIGNMENTS}, got {spec.alignment!r}")
        if spec.text_source not in TEXT_SOURCES:
            raise ConfigError(f"text_source must be one of {TEXT_SOURCES}, got {spec.text_source!r}")
        self.spec = spec
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._sm = self._lm = None
        self._asr = asr

    # teachers load on first use: a fully cached dataset never loads them
    @property
    def sm(self):
        if self._sm is None and not teacher_off(self.spec.speech_teacher):
            self._sm = build_speech_teacher(self.spec.speech_teacher)
        return self._sm

    @property
    def lm(self):
        if self._lm is None and not teacher_off(self.spec.text_teacher):
            self._lm = build_text_teacher(self.spec.text_teacher)
        return self._lm

    @property
    def asr(self):
        if self._asr is None:
            from zoo.metrics.asr import load_default_asr
            self._asr = load_default_asr()
        return self._asr

    def __call__(self, path: Path, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = self.spec
        text = "" if teacher_off(spec.text_teacher) else read_transcript(path)
        if not teacher_off(spec.text_teacher) and spec.text_source == "transcript" and not text:
            raise InputError(f"{path}: the LM teacher is on but there is no transcript ({path.with_suffix('.txt')} "
                             "is missing or empty); add one, or set data.text_source=asr to use the offline ASR's "
                             "transcript, or data.text_teacher=none")
        cache_file = None
        if self.cache_dir is not None:
            audio_hash = hashlib.sha256(path.read_bytes()).hexdigest()
            cache_file = self.cache_dir / f"{spec.key(audio_hash, text)}.safetensors"
            if cache_file.is_file():
                try:
                    return load_file(str(cache_file))
                except Exception:  # a damaged cache entry is recomputed
                    log.warning("recomputing damaged teacher-feature cache entry %s", cache_file)
        feats = self.compute(wav, text)
        if cache_file is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(cache_file, lambda p: save_file({k: v.contiguous() for k, v in feats.items()}, str(p)))
        return feats

    def compute(self, wav: torch.Tensor, text: str) -> dict[str, torch.Tensor]:
        """wav (T,) at 16 kHz, transcript -> features on the frame grid (see class docstring)."""
        spec = self.spec
        n = max(1, int(-(-wav.shape[-1] * spec.frame_rate // TEACHER_RATE)))
        out: dict[str, torch.Tensor] = {}
        if self.sm is not None:
            out["sm"] = align_frames(self.sm(wav), self.sm.frame_rate, spec.frame_rate, n).float()
        if self.lm is not None:
            spans = asr_word_spans(wav, self.asr) if (spec.alignment == "timestamps" or spec.text_source == "asr") \
                else []
            if spec.text_source == "asr":
                text = " ".join(s.word for s in spans)
            if spec.alignment == "positional":
                tokens, _, _ = self.lm(text, pad_to=n) if text else (None, None, None)
                if tokens is None:
                    feats, mask = torch.zeros(n, self.lm.dim), torch.zeros(n, dtype=torch.bool)
                else:
                    feats, mask = positional_alignment(tokens, n)
            else:
                words = text.split()
                if not words:
                    feats, mask = torch.zeros(n, self.lm.dim), torch.zeros(n, dtype=torch.bool)
                else:
                    tokens, token_words, _ = self.lm(" ".join(words))
                    timed = transfer_times(words, spans) if spec.text_source == "transcript" else spans
                    feats, mask = timestamp_alignment(tokens, token_words, timed, n, spec.frame_rate)
            out["lm"], out["lm_mask"] = feats.float(), mask
        return out


# -- data -----------------------------------------------------------------------------------------
class DistillAudioFolder(Dataset):
    """Crops of utterances with their teacher features: dicts ``wav`` (C, segment), ``sm`` (F, D_sm),
    ``lm`` (F, D_lm), ``lm_mask`` (F,) and ``frame_mask`` (F,) (False on padding), F = segment / hop."""

    def __init__(self, items: list[tuple[torch.Tensor, dict[str, torch.Tensor]]], segment: int, hop: int, *,
                 train: bool):
        if segment % hop:
            segment += hop - segment % hop
        self.items, self.segment, self.hop, self.train = items, segment, hop, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        wav, feats = self.items[i]
        frames_total = -(-wav.shape[-1] // self.hop)
        n_frames = self.segment // self.hop
        start = 0
        if self.train and frames_total > n_frames:
            start = int(torch.randint(0, frames_total - n_frames + 1, ()))
        crop = wav[..., start * self.hop:start * self.hop + self.segment]
        valid = -(-crop.shape[-1] // self.hop)
        crop = F.pad(crop, (0, self.segment - crop.shape[-1]))
        item = {"wav": crop, "frame_mask": torch.arange(n_frames) < valid}
        for key, value in feats.items():
            part = value[start:start + n_frames]
            pad = (0, 0) * (part.ndim - 1) + (0, n_frames - part.shape[0])
            item[key] = F.pad(part, pad) if part.dtype != torch.bool else F.pad(part, pad, value=False)
        return item


class DistillAudioDataModule(AudioDataModule):
    """An audio folder with teacher features (see the module docstring). Takes the arguments of
    :class:`AudioDataModule` plus the teachers, alignment, text source and feature cache folder."""

    def __init__(self, root: str, sample_rate: int, hop_length: int, channels: int = 1,
                 segment_seconds: float = 1.0, batch_size: int = 8, num_workers: int = 0,
                 val_fraction: float = 0.05, seed: int = 0, limit: int | None = None,
                 speech_teacher: str | None = "whisper", text_teacher: str | None = "minilm",
                 alignment: str = "positional", text_source: str = "transcript",
                 cache_dir: str | None = None):
        super().__init__(root, sample_rate, channels, segment_seconds, batch_size, num_workers, val_fraction, seed,
                         transcripts=False, cache=True, limit=limit)
        if channels != 1:
            raise ConfigError("DM-Codec's teachers take mono speech: channels must be 1")
        self.hop_length = int(hop_length)
        self.spec = FeatureSpec(speech_teacher, text_teacher, alignment, text_source,
                                frame_rate=self.sample_rate / self.hop_length)
        self.cache_dir = cache_dir or str(Path(root) / ".zoo_teacher_cache")
        self.features = TeacherFeatures(self.spec, self.cache_dir)

    def _items(self, files: list[Path]) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        items = []
        for path in tqdm(files, desc="teacher features", disable=len(files) < 8):
            wav, _ = load_audio(path, self.sample_rate, 1)
            wav16 = wav[0] if self.sample_rate == TEACHER_RATE else resample_audio(wav, self.sample_rate,
                                                                                 TEACHER_RATE)[0]
            items.append((wav, self.features(path, wav16)))
        return items

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self.split_files()
        train_items = self._items(train or val)
        val_items = self._items(val) if val else train_items
        self.train_set = DistillAudioFolder(train_items, self.segment, self.hop_length, train=True)
        self.val_set = DistillAudioFolder(val_items, self.segment, self.hop_length, train=False)


# -- the LightningModule --------------------------------------------------------------------------
class DMCodecModule(AudioCodecModule):
    """:class:`AudioCodecModule` + DM-Codec's distillation (needs a :class:`~zoo.models.dm_codec.DMCodec`).

    ``distill_weight`` (120), ``sm_weight`` / ``lm_weight`` (0.2 / 0.8), ``sm_levels`` / ``lm_levels``
    ("1:8" / "1": RVQ levels, 1-based, as the paper writes them), ``distill_loss`` ("d_axis" or
    "t_axis"). A weight of 0 turns a teacher off; with ``distill_weight=0`` this is the plain codec
    (the undistilled baseline trains with the same module and data).
    """

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
                 model: Any = None, *, distill_weight: float = 120.0, sm_weight: float = 0.2, lm_weight: float = 0.8,
                 sm_levels: str = "1:8", lm_levels: str = "1", distill_loss: str = "d_axis", **kwargs: Any):
        super().__init__(model_name, model_overrides, model, **kwargs)
        self.save_hyperparameters(ignore=["model"])
        if not hasattr(self.model, "distill_features"):
            raise ConfigError(f"task dm_codec needs a DM-Codec model (e.g. dm_codec_nano_16khz), got {self.model.name}")
        for name, value in (("distill_weight", distill_weight), ("sm_weight", sm_weight), ("lm_weight", lm_weight)):
            if not value >= 0:
                raise ConfigError(f"module.{name} must be >= 0, got {value}")
        parse_levels(sm_levels, self.model.num_levels)
        parse_levels(lm_levels, self.model.num_levels)
        self.distill_fn = get_loss(distill_loss)

    def _teacher_loss(self, batch: dict[str, torch.Tensor], out: Any, key: str, levels: str,
                      mask: torch.Tensor | None) -> torch.Tensor:
        if key not in batch:
            raise ConfigError(f"the {key.upper()} teacher has a non-zero weight but the batch has no {key!r} features: "
                              f"set the data module's {'speech' if key == 'sm' else 'text'}_teacher, or the weight to 0")
        student = self.model.distill_features(out.extras["latents"], out.ids, levels)
        teacher = batch[key].to(student.dtype)
        if teacher.shape[-1] != student.shape[-1]:
            raise ConfigError(f"{key.upper()} teacher features are {teacher.shape[-1]}-d but the model's distillation "
                              f"head gives {student.shape[-1]}-d: set model.overrides.distill_dim={teacher.shape[-1]}")
        return self.distill_fn(student, teacher, mask)

    def extra_losses(self, batch: Any, out: Any) -> dict[str, torch.Tensor]:
        hp = self.hparams
        if not hp.distill_weight:
            return {}
        if not isinstance(batch, dict):
            raise ConfigError("task dm_codec needs batches with teacher features (DistillAudioDataModule)")
        frame_mask = batch.get("frame_mask")
        parts: dict[str, torch.Tensor] = {}
        if hp.sm_weight:
            parts["sm"] = self._teacher_loss(batch, out, "sm", hp.sm_levels, frame_mask)
        if hp.lm_weight:
            lm_mask = batch.get("lm_mask")
            mask = lm_mask if frame_mask is None else (lm_mask & frame_mask if lm_mask is not None else frame_mask)
            parts["lm"] = self._teacher_loss(batch, out, "lm", hp.lm_levels, mask)
        if not parts:
            return {}
        distill = hp.sm_weight * parts.get("sm", 0.0) + hp.lm_weight * parts.get("lm", 0.0)
        self.log_dict({f"train/distill_{k}": v.detach() for k, v in parts.items()})
        return {"distill": hp.distill_weight * distill}


__all__ = ["DMCodecModule", "DistillAudioDataModule", "DistillAudioFolder", "FeatureSpec", "TeacherFeatures",
           "build_speech_teacher", "build_text_teacher", "transfer_times"]
