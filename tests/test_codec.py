"""Audio codecs (EnCodec / DAC style): contract, variants, bitrates, long files, streaming, bad input."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import load_audio, save_audio
from zoo.errors import ConfigError, InputError
from zoo.registry import get_entry, list_models

NANOS = ["codec_nano_16khz", "codec_nano_16khz_32kbps", "dac_nano_16khz"]


def speechlike(batch: int = 1, seconds: float = 0.5, sr: int = 16_000, seed: int = 0) -> torch.Tensor:
    """A deterministic harmonic signal with an amplitude envelope: (B, 1, T) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    out = []
    for _ in range(batch):
        f0 = 100 + 150 * torch.rand((), generator=g)
        sig = sum(torch.sin(2 * math.pi * f0 * k * t + torch.rand((), generator=g)) / k for k in range(1, 6))
        env = 0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)
        out.append(0.2 * sig * env + 0.01 * torch.randn(t.shape, generator=g))
    return torch.stack(out)[:, None].float()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: zoo.create(name).eval() for name in NANOS}


# -- variants ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,sr,ch,rate,levels,max_kbps", [
    ("encodec_24khz", 24_000, 1, 75.0, 32, 24.0), ("encodec_48khz", 48_000, 2, 150.0, 16, 24.0),
    ("dac_44khz", 44_100, 1, 44_100 / 512, 9, 7.752), ("dac_44khz_16kbps", 44_100, 1, 44_100 / 512, 18, 15.504),
    ("dac_24khz", 24_000, 1, 75.0, 32, 24.0), ("dac_16khz", 16_000, 1, 50.0, 12, 6.0),
    ("codec_nano_16khz", 16_000, 1, 50.0, 8, 4.0), ("codec_nano_16khz_32kbps", 16_000, 1, 400.0, 8, 32.0)])
def test_variants_official_sizes_and_rates(name, sr, ch, rate, levels, max_kbps):
    m = zoo.create(name)
    official = get_entry(name).meta.get("params_official")
    if official is not None:
        assert m.num_parameters() == official  # exactly the official total
    assert (m.sample_rate, m.channels, m.num_levels, m.vocab_size) == (sr, ch, levels, 1024)
    assert m.frame_rate == pytest.approx(rate)
    assert m.bitrate() == pytest.approx(max_kbps, abs=1e-3)
    if name == "encodec_24khz":
        assert m.bandwidths == [1.5, 3.0, 6.0, 12.0, 24.0]
        assert [m.levels_for(bandwidth=b) for b in m.bandwidths] == [2, 4, 8, 16, 32]


def test_all_codecs_listed():
    names = set(list_models(family="codec"))
    assert {"encodec_24khz", "encodec_48khz", "dac_44khz", "dac_24khz", "dac_16khz", *NANOS} <= names


# -- contract ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NANOS)
def test_contract_shapes_and_determinism(models, name):
    m = models[name]
    wav = speechlike(2, 0.31)
    ids = m.encode(wav, sample_rate=16_000)
    frames = math.ceil(wav.shape[-1] / m.hop_length)
    assert ids.shape == (2, m.num_levels, frames) and ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < m.vocab_size
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert torch.equal(ids, m.encode(wav))
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())  # encoding changes nothing
    rec = m.decode(ids)
    assert rec.shape == (2, 1, frames * m.hop_length) and torch.isfinite(rec).all()
    out = m(wav)
    assert out.ids.shape == ids.shape and out.reconstruction.shape == rec.shape


@pytest.mark.parametrize("name", NANOS)
def test_every_bitrate_decodes(models, name):
    m = models[name]
    wav = speechlike(1, 0.2)
    full = m.encode(wav)
    for levels, kbps in enumerate(m.bandwidths, start=1):
        ids = m.encode(wav, bandwidth=kbps)
        assert ids.shape[1] == levels and m.bitrate(levels) == pytest.approx(kbps, abs=1e-3)
        assert torch.equal(ids, full[:, :levels])  # a prefix of the levels
        assert torch.equal(ids, m.encode(wav, num_levels=levels))
        rec = m.decode(ids)
        assert rec.shape[-1] == ids.shape[-1] * m.hop_length and torch.isfinite(rec).all()


@pytest.mark.parametrize("name", NANOS)
def test_save_load_identical_ids(models, name, tmp_path):
    m = models[name]
    wav = speechlike(1, 0.25, seed=3)
    m.save_pretrained(tmp_path / name)
    loaded = zoo.from_pretrained(tmp_path / name)
    assert loaded.config == m.config
    assert torch.equal(loaded.encode(wav), m.encode(wav))
    assert torch.allclose(loaded.decode(m.encode(wav)), m.decode(m.encode(wav)))


# -- long files, streaming, padded batches --------------------------------------------------------------
@pytest.mark.parametrize("name", ["codec_nano_16khz", "codec_nano_16khz_32kbps"])
def test_causal_chunked_and_streamed_equal_whole_file(models, name):
    m = models[name]
    wav = speechlike(2, 1.03, seed=1)
    whole = m.encode(wav)
    assert torch.equal(m.encode_long(wav, chunk_seconds=0.3), whole)
    stream = m.encoder_stream()
    parts = [stream.feed(wav[..., i:i + 777]) for i in range(0, wav.shape[-1], 777)]  # chunks not on frames
    assert torch.equal(torch.cat(parts + [stream.flush()], dim=-1), whole)
    rec = m.decode(whole)
    dec = m.decoder_stream()
    streamed = torch.cat([dec.feed(whole[..., i:i + 7]) for i in range(0, whole.shape[-1], 7)], dim=-1)
    assert (streamed - rec).abs().max() < 1e-5
    assert (m.decode_long(whole, chunk_seconds=0.2) - rec).abs().max() < 1e-5


def test_non_causal_long_encode_with_context(models):
    m = models["dac_nano_16khz"]
    wav = speechlike(1, 1.0, seed=2)
    ctx = m.receptive_field / m.sample_rate
    long = m.encode_long(wav, chunk_seconds=0.3, context_seconds=ctx)
    assert long.shape == m.encode(wav).shape
    assert (long == m.encode(wav)).float().mean() > 0.99
    with pytest.raises(ConfigError, match="causal"):
        m.encoder_stream()


@pytest.mark.parametrize("name", NANOS)
def test_padded_batch_equals_one_by_one(models, name):
    m = models[name]
    a, b = speechlike(1, 0.4, seed=4), speechlike(1, 0.23, seed=5)
    batch = torch.zeros(2, 1, a.shape[-1])
    batch[0], batch[1, :, : b.shape[-1]] = a[0], b[0]
    ids = m.encode_padded(batch, [a.shape[-1], b.shape[-1]])
    ia, ib = m.encode(a), m.encode(b)
    assert torch.equal(ids[0], ia[0])
    assert torch.equal(ids[1, :, : ib.shape[-1]], ib[0])
    assert (ids[1, :, ib.shape[-1]:] == 0).all()


def test_resample_in_and_out(models):
    m = models["codec_nano_16khz"]
    wav = speechlike(1, 0.3, sr=24_000)
    ids = m.encode(wav, sample_rate=24_000, resample=True)
    assert ids.shape[-1] == math.ceil(0.3 * 16_000 / m.hop_length)
    out = m.decode(ids, sample_rate=24_000)
    assert out.shape[-1] == ids.shape[-1] * m.hop_length * 3 // 2


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_waveforms(models, caplog):
    m = models["codec_nano_16khz"]
    wav = speechlike(1, 0.1)
    with pytest.raises(InputError, match=r"expects 16000 Hz.*got 24000 Hz.*resample"):
        m.encode(wav, sample_rate=24_000)
    with pytest.raises(InputError, match="too short"):
        m.encode(wav[..., :0])
    with pytest.raises(InputError, match="too short"):
        m.encode(wav[..., :100])
    bad = wav.clone()
    bad[0, 0, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        m.encode(bad)
    with pytest.raises(InputError, match="1-channel.*mean"):
        m.encode(wav.expand(1, 2, -1))
    with pytest.raises(InputError, match=r"\(B, C, T\)"):
        m.encode(wav[0, 0])
    with pytest.raises(InputError, match="float"):
        m.encode((wav * 32767).short())
    with caplog.at_level(logging.WARNING):
        m.encode(wav * 5)
    assert "beyond [-1, 1]" in caplog.text
    with pytest.raises(InputError, match="bandwidth"):
        m.encode(wav, bandwidth=100)
    with pytest.raises(InputError, match="num_levels"):
        m.encode(wav, num_levels=9)


def test_bad_ids(models):
    m = models["codec_nano_16khz"]
    ids = m.encode(speechlike(1, 0.1))
    with pytest.raises(InputError, match=r"\[0, 1024\)"):
        m.decode(ids + 2000)
    with pytest.raises(InputError, match="levels"):
        m.decode(torch.cat([ids, ids], dim=1))
    with pytest.raises(InputError, match=r"\(B, L, T\)"):
        m.decode(ids[0])
    with pytest.raises(InputError, match="integer"):
        m.decode(ids.float())


def test_audio_files_round_trip_and_truncated(tmp_path):
    wav = speechlike(1, 0.2)[0]
    path = save_audio(tmp_path / "a.wav", wav, 16_000)
    back, sr = load_audio(path)
    assert sr == 16_000 and back.shape == wav.shape and (back - wav).abs().max() < 1e-3
    stereo, _ = load_audio(path, 8_000, channels=2)
    assert stereo.shape == (2, wav.shape[-1] // 2)
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(path.read_bytes()[:30])
    with pytest.raises(InputError, match="cannot read audio file"):
        load_audio(truncated)
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    sf.write(str(tmp_path / "nan.wav"), np.full(100, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_encodec_style_reflect_padding_streams_exactly():
    """A causal EnCodec-style stack (reflect padding, 2-layer LSTM) streamed in one-hop chunks."""
    from zoo.models.codec import AudioCodec, CodecConfig

    stack = dict(channels=1, dimension=16, n_filters=4, causal=True, pad_mode="reflect", lstm_layers=2)
    cfg = CodecConfig(sample_rate=8000, encoder=dict(stack, strides=(2, 4)), decoder=dict(stack, strides=(4, 2)),
                      num_levels=3, codebook_size=64)
    torch.manual_seed(0)
    m = AudioCodec(cfg).eval()
    wav = speechlike(1, 0.1, sr=8000)[..., :800]  # 100 whole frames
    whole = m.encode(wav)
    stream = m.encoder_stream()
    parts = [stream.feed(wav[..., i:i + 8]) for i in range(0, 800, 8)] + [stream.flush()]
    assert torch.equal(torch.cat(parts, dim=-1), whole)
    dec = m.decoder_stream()
    out = torch.cat([dec.feed(whole[..., i:i + 1]) for i in range(whole.shape[-1])], dim=-1)
    assert (out - m.decode(whole)).abs().max() < 1e-5


def test_shipped_nano_checkpoint():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "checkpoints" / "codec_nano_16khz"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("checkpoints/codec_nano_16khz is not in this checkout")
    m = zoo.from_pretrained(folder)
    wav = speechlike(1, 0.5, seed=7)
    ids = m.encode(wav)
    assert ids.shape == (1, 8, 25) and torch.equal(ids, m.encode(wav))
    rec = m.decode(ids)
    assert rec.shape == (1, 1, 8000) and torch.isfinite(rec).all()
    stream = m.encoder_stream()
    assert torch.equal(torch.cat([stream.feed(wav[..., :3000]), stream.feed(wav[..., 3000:]), stream.flush()], -1), ids)
