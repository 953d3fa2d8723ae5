"""Feature distillation for speech codecs (DM-Codec, SpeechTokenizer): losses and text-to-frame alignment.

A codec's quantized frames (B, T, D_student) pass through a linear head to the teacher's width and
are pulled toward a frozen teacher's features (B, T', D_teacher) at the same frame rate.

- :func:`d_axis_loss` is DM-Codec's / SpeechTokenizer's "D-axis" loss: for every feature dimension,
  the cosine similarity of the student and teacher *time series*, averaged as
  ``-mean log sigmoid(cos)`` (minimum log(1 + e^-1) ~ 0.313 at a perfect match). Unlike the official
  collate, which leaves teacher features as (B, 1, T, D) so that only one frame is compared, every
  frame of every item is compared here (and a wrong rank is an error).
- :func:`positional_alignment` pairs text token i with frame i (the official LM pairing);
  :func:`timestamp_alignment` places each token's embedding on the frames where its word is spoken,
  from ASR word timestamps, and masks frames where no word is spoken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.errors import ConfigError, InputError

D_AXIS_MINIMUM = math.log1p(math.exp(-1.0))  # -log sigmoid(1): the loss at a perfect match


def _check_features(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.ndim != 3 or teacher.ndim != 3:
        raise InputError(f"distillation expects student and teacher features of shape (B, T, D); got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)} (squeeze a singleton axis of "
                         "teacher features saved per utterance as (1, T, D))")
    if student.shape[0] != teacher.shape[0] or student.shape[2] != teacher.shape[2]:
        raise InputError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} features must agree "
                         "in batch size and width (the distillation head maps the codec width to the teacher's)")


def d_axis_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-mean over (B, D) of log sigmoid(cos_t(student[b, :, d], teacher[b, :, d])).

    student: (B, T, D); teacher: (B, T', D), both cut to min(T, T') frames; mask: optional (B, T'')
    bool, True where a frame counts (frames masked out are zeroed in both series before the cosine).
    """
    _check_features(student, teacher)
    t = min(student.shape[1], teacher.shape[1])
    s, te = student[:, :t].float(), teacher[:, :t].float()
    if mask is not None:
        if mask.ndim != 2 or mask.shape[0] != s.shape[0]:
            raise InputError(f"mask must be (B, T) bool, got {tuple(mask.shape)}")
        m = mask[:, :t].to(s.dtype).unsqueeze(-1)
        s, te = s * m, te * m
    cos = F.cosine_similarity(s, te, dim=1, eps=1e-6)  # (B, D): along time
    return -F.logsigmoid(cos).mean()


def t_axis_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
                lambda_sim: float = 1.0) -> torch.Tensor:
    """The official alternative: L1 + lambda_sim * -log sigmoid(cos over the feature dim), per frame."""
    _check_features(student, teacher)
    t = min(student.shape[1], teacher.shape[1])
    s, te = student[:, :t].float(), teacher[:, :t].float()
    per_frame = (s - te).abs().mean(-1) - lambda_sim * F.logsigmoid(F.cosine_similarity(s, te, dim=-1, eps=1e-6))
    if mask is None:
        return per_frame.mean()
    m = mask[:, :t].to(per_frame.dtype)
    return (per_frame * m).sum() / m.sum().clamp_min(1.0)


LOSSES = {"d_axis": d_axis_loss, "t_axis": t_axis_loss}


def get_loss(name: str):
    if name not in LOSSES:
        raise ConfigError(f"distillation loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


@dataclass
class WordSpan:
    """A word and when it is spoken (seconds), e.g. from faster-whisper's word timestamps."""

    word: str
    start: float
    end: float


def positional_alignment(token_features: torch.Tensor, num_frames: int, pad: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token i -> frame i (DM-Codec's pairing): (n_tokens, D) -> features (num_frames, D), mask (num_frames,).

    Extra tokens are dropped; missing frames take ``pad`` (the teacher's embedding of its pad token,
    as when the official code pads the transcript to the frame count) or are masked out when None.
    """
    n, d = token_features.shape
    out = token_features.new_zeros(num_frames, d)
    mask = torch.zeros(num_frames, dtype=torch.bool)
    k = min(n, num_frames)
    out[:k] = token_features[:k]
    mask[:k] = True
    if pad is not None and k < num_frames:
        out[k:] = pad
        mask[k:] = True
    return out, mask


def timestamp_alignment(token_features: torch.Tensor, token_words: list[int], words: list[WordSpan],
                        num_frames: int, frame_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Place token embeddings on the frames where their word is spoken.

    token_features: (n_tokens, D); token_words[i]: the index in ``words`` of the word token i belongs
    to (-1 for special tokens, which are skipped). Each frame gets the mean embedding of the tokens
    of the word spoken at its centre time; frames in silence are masked out (mask False).
    Returns features (num_frames, D), mask (num_frames,) bool.
    """
    if len(token_words) != token_features.shape[0]:
        raise InputError(f"token_words has {len(token_words)} entries for {token_features.shape[0]} tokens")
    d = token_features.shape[1]
    word_vecs = token_features.new_zeros(len(words), d)
    counts = torch.zeros(len(words))
    for i, w in enumerate(token_words):
        if 0 <= w < len(words):
            word_vecs[w] += token_features[i]
            counts[w] += 1
    out = token_features.new_zeros(num_frames, d)
    mask = torch.zeros(num_frames, dtype=torch.bool)
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / frame_rate
    for w, span in enumerate(words):
        if counts[w] == 0:
            continue
        if span.end < span.start:
            raise InputError(f"word {span.word!r} ends ({span.end}) before it starts ({span.start})")
        hit = (centres >= span.start) & (centres < span.end)
        out[hit] = word_vecs[w] / counts[w]
        mask |= hit
    return out, mask


def align_frames(features: torch.Tensor, teacher_rate: float, student_rate: float, num_frames: int) -> torch.Tensor:
    """Resample teacher features (T, D) at ``teacher_rate`` Hz to ``num_frames`` frames at ``student_rate`` Hz
    (nearest frame in time); equal rates pass through (cut or zero-padded to ``num_frames``)."""
    if teacher_rate <= 0 or student_rate <= 0:
        raise ConfigError(f"frame rates must be positive, got teacher {teacher_rate} Hz, student {student_rate} Hz")
    if math.isclose(teacher_rate, student_rate, rel_tol=1e-6):
        idx = torch.arange(num_frames)
    else:
        ratio = teacher_rate / student_rate
        if ratio < 0.5 or ratio > 8:
            raise ConfigError(f"teacher features at {teacher_rate} Hz cannot be aligned to codec frames at "
                              f"{student_rate} Hz (ratio {ratio:.3g}; supported 0.5-8x): pick a teacher layer "
                              "or codec stride with a closer frame rate")
        idx = torch.floor((torch.arange(num_frames) + 0.5) * ratio).long()
    out = features.new_zeros(num_frames, features.shape[1])
    valid = idx < features.shape[0]
    out[valid] = features[idx[valid]]
    return out
