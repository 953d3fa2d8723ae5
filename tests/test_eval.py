"""``zoo eval`` end to end: image (fixed and variable length) and audio tokenizers, bad input,
outputs (JSON, Markdown, PNGs), the CLI, and the README table script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torch import nn

from conftest import make_image_folder
from zoo.errors import InputError
from zoo.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]


class TinyFeatures(nn.Module):
    """A small fixed random feature network for FID in tests: (B, 3, H, W) -> (B, 8)."""

    dim = 8
    name = "tiny-test-features"

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @torch.no_grad()
    def forward(self, x):
        return self.net(x.float().cpu()).double()


class PaletteTokenizer(nn.Module):
    """A variable-length fake: token i is the palette colour (4x4x4 levels) nearest to the mean of
    patch i of a 4x4 grid; a k-token prefix fills the missing patches with the prefix's mean colour."""

    modality = "image"
    variable_length = True
    input_size = 16
    num_tokens = 16
    vocab_size = 64
    name = "palette-test"

    def __init__(self):
        super().__init__()
        levels = torch.linspace(0, 1, 4)
        self.register_buffer("palette", torch.cartesian_prod(levels, levels, levels))  # (64, 3)

    def token_lengths(self):
        return range(1, 17)

    def codebook_vectors(self):
        return self.palette

    def encode(self, images, num_tokens=16):
        means = nn.functional.avg_pool2d(images, 4).flatten(2).transpose(1, 2)  # (B, 16, 3)
        ids = torch.cdist(means, self.palette[None].expand(len(images), -1, -1)).argmin(-1)
        return ids[:, :num_tokens]

    def decode(self, ids):
        colours = self.palette[ids]  # (B, k, 3)
        fill = colours.mean(1, keepdim=True).expand(-1, 16 - ids.shape[1], -1)
        grid = torch.cat([colours, fill], 1).transpose(1, 2).reshape(-1, 3, 4, 4)
        return nn.functional.interpolate(grid, scale_factor=4, mode="nearest")


class FrameCodec(nn.Module):
    """An audio fake: each 20 ms frame keeps L box-filtered 8-bit samples (L = 2, 4, 8 levels for
    0.8, 1.6, 3.2 kbps); decoding interpolates them back to 16 kHz."""

    modality = "audio"
    sample_rate = 16_000
    frame_rate = 50.0
    num_levels = 8
    vocab_size = 256
    bandwidths = [0.8, 1.6, 3.2]
    name = "framecodec-test"

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, wav, bandwidth=None):
        levels = int(round((bandwidth or 3.2) / 0.4))
        hop = self.sample_rate // int(self.frame_rate)
        frames = wav.shape[-1] // hop
        x = wav[:, 0, : frames * hop].reshape(wav.shape[0], frames, hop)
        picks = x.reshape(x.shape[0], frames, levels, hop // levels).mean(-1)  # box-filtered samples
        return ((picks.clamp(-1, 1) + 1) / 2 * 255).round().long().transpose(1, 2)  # (B, L, T_frames)

    def decode(self, ids):
        ids = ids.transpose(1, 2)  # (B, L, T_frames) -> (B, T_frames, L)
        b, frames, levels = ids.shape
        x = ids.float() / 255 * 2 - 1
        hop = self.sample_rate // int(self.frame_rate)
        return nn.functional.interpolate(x.reshape(b, 1, frames * levels), size=frames * hop, mode="linear")


class LoudnessASR:
    """A deterministic fake ASR: says 'hello world' when the signal is loud, else 'hello'."""

    name = "loudness-test"

    def transcribe(self, wav, sample_rate):
        return "hello world" if float(torch.as_tensor(wav).abs().mean()) > 0.05 else "hello"


@pytest.fixture()
def small_folder(tmp_path):
    return make_image_folder(tmp_path / "imgs", 6, size=40)


def test_fixed_length_model_outputs(nano, small_folder, tmp_path):
    (small_folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "run" / "results.json"
    # on the CPU: the batch-size and seed comparisons below are exact there (a GPU picks other kernels
    # per batch size, and FID of 6 images magnifies their rounding)
    res = evaluate(nano, small_folder, out=out, batch_size=4, feature_extractor=TinyFeatures(), progress=False,
                   model_id="titok-nano-test", device="cpu")
    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(res["results"]))
    assert saved["model"]["id"] == "titok-nano-test" and saved["model"]["config"]["num_tokens"] == 16
    assert saved["data"]["num_evaluated"] == 6 and saved["data"]["num_skipped"] == 1
    assert saved["data"]["skipped"][0]["file"] == "broken.png"
    assert saved["settings"]["seed"] == 0
    assert {"torch", "torchmetrics", "python"} <= set(saved["versions"])
    (row,) = saved["results"]
    assert row["num_tokens"] == 16 and row["bits_per_image"] == pytest.approx(16 * 10)
    assert 0 < row["psnr"] < 60 and -1 <= row["ssim"] <= 1 and row["rfid"] > 0 and row["pfid"] > 0
    assert 0 < row["codebook_usage"] <= 1 and 1 <= row["perplexity"] <= 1024
    assert any("resized" in n and "40x40" in n for n in saved["notes"])
    assert any("unreadable" in n and "broken.png" in n for n in saved["notes"])
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| tokens |" in md and "rFID" in md and "pFID" in md
    grid = Image.open(tmp_path / "run" / "results_grid.png")
    assert grid.size[1] == 3 * (32 + 2)  # originals, reconstructions, perturbed reconstructions
    assert not (tmp_path / "run" / "results_rd.png").exists()  # a single token length: no curve
    # same data + seed -> same numbers and hash; pFID depends on the seed
    again = evaluate(nano, small_folder, out=tmp_path / "r2.json", batch_size=3,
                     feature_extractor=TinyFeatures(), progress=False, device="cpu")
    assert again["data"]["hash"] == saved["data"]["hash"]
    assert again["results"][0]["psnr"] == pytest.approx(row["psnr"], rel=1e-5)
    assert again["results"][0]["pfid"] == pytest.approx(row["pfid"], rel=1e-5)
    other = evaluate(nano, small_folder, out=tmp_path / "r3.json", seed=1, feature_extractor=TinyFeatures(),
                     progress=False, device="cpu")
    assert other["results"][0]["psnr_perturbed"] != pytest.approx(row["psnr_perturbed"], rel=1e-9)


def test_variable_length_rate_distortion(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", 8, size=16)
    model = PaletteTokenizer()
    res = evaluate(model, folder, num_tokens=[4, 8, 16], out=tmp_path / "vl.json", batch_size=5,
                   feature_extractor=TinyFeatures(), pfid_rate=0.5, pfid_delta=8, progress=False)
    rows = res["results"]
    assert [r["num_tokens"] for r in rows] == [4, 8, 16]
    assert [r["bits_per_image"] for r in rows] == [24, 48, 96]
    psnrs = [r["psnr"] for r in rows]
    assert psnrs == sorted(psnrs) and psnrs[2] > psnrs[0] + 1  # more tokens, better reconstruction
    for r in rows:
        assert r["psnr_perturbed"] <= r["psnr"] + 1e-6
        assert r["rfid"] >= 0 and r["pfid"] >= 0
    assert (tmp_path / "vl_rd.png").is_file()
    grid = Image.open(tmp_path / "vl_grid.png")
    assert grid.size[1] == 7 * (16 + 2)  # originals + (reconstruction, perturbed) x 3 lengths
    assert res["settings"]["pfid"]["delta"] == 8 and res["settings"]["pfid"]["rate"] == 0.5
    with pytest.raises(InputError, match="not supported"):
        evaluate(model, folder, num_tokens=[40], out=tmp_path / "x.json", fid=False, progress=False)


def test_bad_input(nano, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files"):
        evaluate(nano, empty, out=tmp_path / "e.json", fid=False, progress=False)
    with pytest.raises(InputError, match="does not exist"):
        evaluate(nano, tmp_path / "missing", out=tmp_path / "e.json", fid=False, progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(InputError, match="none of the 3 image files"):
        evaluate(nano, broken, out=tmp_path / "b.json", fid=False, progress=False)
    folder = make_image_folder(tmp_path / "ok", 2, size=40)
    with pytest.raises(InputError, match="fixed-length"):
        evaluate(nano, folder, num_tokens=[8], out=tmp_path / "f.json", fid=False, progress=False)
    # --resize none: images of another size are skipped, and if all are, that is an error
    with pytest.raises(InputError, match="none of the 2"):
        evaluate(nano, folder, resize="none", out=tmp_path / "n.json", fid=False, progress=False)
    res = evaluate(nano, folder, resize="resize", limit=1, out=tmp_path / "l.json", fid=False, progress=False)
    assert res["data"]["num_evaluated"] == 1 and res["results"][0]["rfid"] is None


def write_audio_folder(root: Path) -> Path:
    root.mkdir()
    t = np.arange(16_000) / 16_000
    for i, f0 in enumerate((60.0, 90.0)):
        wav = 0.4 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        sf.write(root / f"clip{i}.wav", wav.astype(np.float32), 16_000)
    sf.write(root / "clip_stereo_22k.flac", np.stack([wav, wav], 1)[:22_050].astype(np.float32), 22_050)
    (root / "clip0.txt").write_text("hello world\n")
    (root / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def test_audio_eval(tmp_path):
    folder = write_audio_folder(tmp_path / "audio")
    res = evaluate(FrameCodec(), folder, out=tmp_path / "a.json", asr=LoudnessASR(), progress=False)
    rows = res["results"]
    assert [r["bandwidth_kbps"] for r in rows] == [0.8, 1.6, 3.2]
    assert [r["bitrate_kbps"] for r in rows] == pytest.approx([0.8, 1.6, 3.2])
    assert res["data"]["num_evaluated"] == 3 and res["data"]["num_skipped"] == 1
    sdr, intelligibility = [r["si_sdr"] for r in rows], [r["stoi"] for r in rows]
    assert sdr == sorted(sdr) and intelligibility == sorted(intelligibility)  # more bandwidth, closer
    assert all(r["mel_distance"] > 0 for r in rows)
    for r in rows:
        assert 0 <= r["stoi"] <= 1 and r["wer"] is not None and 0 <= r["codebook_usage"] <= 1
    assert res["settings"]["wer_reference"] == "ASR of the original audio + transcript files"
    assert (tmp_path / "a_spectrogram.png").is_file() and (tmp_path / "a_rd.png").is_file()
    md = (tmp_path / "a.md").read_text()
    assert "SI-SDR" in md and "WER" in md
    one = evaluate(FrameCodec(), folder, bandwidth=[1.6], out=tmp_path / "b.json", asr=None, progress=False)
    assert len(one["results"]) == 1 and one["results"][0]["wer"] is None
    with pytest.raises(InputError, match="supports"):
        evaluate(FrameCodec(), folder, bandwidth=[5.0], out=tmp_path / "c.json", asr=None, progress=False)


def test_eval_gives_the_model_back_as_it_was(nano, small_folder, tmp_path):
    """evaluate() borrows the caller's model: same device and training mode afterwards."""
    nano.train()
    evaluate(nano, small_folder, out=tmp_path / "r.json", batch_size=4, feature_extractor=TinyFeatures(),
             progress=False, device="cpu")
    assert nano.training
    nano.eval()
    if torch.cuda.is_available():
        evaluate(nano, small_folder, out=tmp_path / "g.json", batch_size=4, feature_extractor=TinyFeatures(),
                 progress=False, device="cuda")
        assert next(nano.parameters()).device.type == "cpu" and not nano.training


def test_audio_eval_without_the_optional_metric_packages(tmp_path, monkeypatch):
    """Without pesq / pystoi installed, PESQ / STOI are left out with a note naming the package."""
    import zoo.evaluate.audio as audio_eval

    monkeypatch.setattr(audio_eval, "unavailable_metrics",
                        lambda: {"pesq": "the pesq package is not installed (pip install pesq, or tokenizer-zoo[eval])"})
    folder = write_audio_folder(tmp_path / "audio")
    res = evaluate(FrameCodec(), folder, bandwidth=[1.6], out=tmp_path / "a.json", asr=None, progress=False)
    (row,) = res["results"]
    assert row["pesq"] is None and row["stoi"] is not None and row["si_sdr"] is not None
    assert any("PESQ not reported" in n and "pip install pesq" in n for n in res["notes"])


def test_cli_and_readme_table(tmp_path, capsys):
    from zoo.cli import main
    from zoo.metrics.fid import find_fid_helper_weights

    folder = make_image_folder(tmp_path / "imgs", 5, size=70)
    out = tmp_path / "cli" / "titok.json"
    args = ["eval", "--model", "titok_nano_32", "--random-init", "--data", str(folder), "--out", str(out),
            "--limit", "2", "--batch-size", "2", "--no-progress"]
    if find_fid_helper_weights() is None:  # CI installs it; without it the real Inception cannot load
        args.append("--no-fid")
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert res["data"]["num_evaluated"] == 2 and res["model"]["id"] == "titok_nano_32"
    if "--no-fid" not in args:
        assert "inception" in res["settings"]["fid_extractor"] or "fid-helper" in res["settings"]["fid_extractor"]
        assert res["results"][0]["rfid"] > 0
    assert main(["eval", "--model", "titok_nano_32", "--random-init", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x.json"), "--no-fid"]) == 2

    # the README table comes from the JSON files
    audio = evaluate(FrameCodec(), write_audio_folder(tmp_path / "audio"), out=tmp_path / "cli" / "codec.json",
                     asr=None, progress=False)
    assert audio["results"]
    spec = importlib.util.spec_from_file_location("metrics_table", ROOT / "scripts" / "metrics_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\nintro\n\n<!-- metrics:start -->\nold table\n<!-- metrics:end -->\n\nafter\n")
    assert script.main([str(tmp_path / "cli"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Zoo\n\nintro\n") and text.rstrip().endswith("after")
    assert "titok_nano_32" in text and "framecodec-test" in text and "SI-SDR" in text
    assert f"{res['results'][0]['psnr']:.2f}" in text
    assert script.main([str(tmp_path / "cli"), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent
    capsys.readouterr()
    assert script.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "titok_nano_32" in printed and "| model |" in printed and "framecodec" not in printed
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="metrics:start"):
        script.main([str(tmp_path / "cli"), "--readme", str(readme)])
    with pytest.raises(SystemExit, match="no zoo eval results"):
        script.main([str(tmp_path / "imgs")])
