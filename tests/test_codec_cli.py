"""Audio codecs from the command line (zoo tokenize / reconstruct) and through zoo eval."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

import zoo
from zoo.audio import save_audio
from zoo.cli import main


def _tone(seconds: float, sr: int) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (0.3 * torch.sin(2 * math.pi * 220 * t) * torch.sin(2 * math.pi * 3 * t))[None]


@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nano") / "codec_nano"
    zoo.create("codec_nano_16khz").save_pretrained(path)
    return path


def test_tokenize_audio_files(nano_dir, tmp_path, capsys):
    a = save_audio(tmp_path / "a.wav", _tone(0.3, 16_000), 16_000)
    b = save_audio(tmp_path / "b.flac", _tone(0.2, 8_000), 8_000)
    assert main(["tokenize", str(a), str(b), "--model", str(nano_dir), "--bandwidth", "1"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["levels"] for r in rows] == [2, 2] and [r["frames"] for r in rows] == [15, 10]
    assert rows[0]["kbps"] == 1.0 and "resampled 8000 Hz -> 16000 Hz" in captured.err
    out = tmp_path / "ids.npy"
    assert main(["tokenize", str(a), "--model", str(nano_dir), "--num-levels", "3", "-o", str(out)]) == 0
    import numpy as np
    assert np.load(out).shape == (3, 15)


def test_reconstruct_audio_keeps_the_input_rate(nano_dir, tmp_path, capsys):
    src = save_audio(tmp_path / "in.wav", _tone(0.25, 24_000), 24_000)
    out = tmp_path / "out.wav"
    assert main(["reconstruct", str(src), "--model", str(nano_dir), "-o", str(out), "--bandwidth", "2"]) == 0
    info = sf.info(str(out))
    assert info.samplerate == 24_000 and info.frames == 6000
    assert "4 levels" in capsys.readouterr().err


def test_cli_audio_errors(nano_dir, tmp_path, capsys):
    src = save_audio(tmp_path / "in.wav", _tone(0.1, 16_000), 16_000)
    assert main(["reconstruct", str(src), "--model", str(nano_dir), "-o", str(tmp_path / "x.wav"),
                 "--bandwidth", "99"]) == 2
    assert "bandwidth 99" in capsys.readouterr().err
    bad = tmp_path / "cut.wav"
    bad.write_bytes(src.read_bytes()[:40])
    assert main(["tokenize", str(bad), "--model", str(nano_dir)]) == 2
    assert "cannot read audio file" in capsys.readouterr().err


def test_zoo_eval_on_codec(nano_dir, tmp_path):
    from zoo.evaluate import evaluate

    folder = tmp_path / "speech"
    for i in range(2):
        save_audio(folder / f"u{i}.wav", _tone(0.5 + 0.1 * i, 16_000), 16_000)
    model = zoo.from_pretrained(nano_dir)
    res = evaluate(model, folder, bandwidth=[1.0, 4.0], out=tmp_path / "r.json", asr=None, progress=False)
    rows = res["results"]
    assert [r["num_levels"] for r in rows] == [2, 8] and [r["bitrate_kbps"] for r in rows] == [1.0, 4.0]
    assert len(rows[1]["codebook_usage_per_level"]) == 8
    assert all(math.isfinite(r["mel_distance"]) and math.isfinite(r["si_sdr"]) for r in rows)
