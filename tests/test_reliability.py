"""Reliability: bad input gets a clear zoo error, nothing silently wrong, no checkpoint lost
(configs, output files, images, checkpoints, CLI arguments). Training cases: test_reliability_training.py."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo import hub
from zoo.cli import main
from zoo.config import CheckedConfig, PositiveInt, check_kwargs, validate_dataclass
from zoo.errors import CheckpointError, ConfigError, InputError, OutputError


# -- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, match", [
    ("num_tokens", 8.7, r"num_tokens must be an int.*8\.7"),
    ("num_tokens", 16.0, r"write 16"),
    ("num_tokens", 0, r"num_tokens must be > 0"),
    ("encoder_heads", 5, r"encoder_heads = 5: expected a divisor of encoder_width \(128\)"),
    ("use_cosine", 1, r"use_cosine must be True or False"),
    ("ema_decay", 2.0, r"ema_decay must be >= 0 and <= 1"),
    ("decoder_head", "pix", r"decoder_head must be 'pixel' or 'proxy'"),
    ("mlp_ratio", "4", r"mlp_ratio must be a number.*without quotes"),
    ("mlp_ratio", float("nan"), r"finite"),
])
def test_titok_config_values_are_checked(field, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        zoo.get_config("titok_nano_32", **{field: value})
    assert e.value.field == field


def test_unknown_config_field_suggests_the_name():
    with pytest.raises(ConfigError, match="did you mean 'num_tokens'"):
        zoo.create("titok_nano_32", num_token=16)


def test_generic_validator_for_any_dataclass():
    from dataclasses import dataclass
    from typing import Literal

    @dataclass
    class Plain:  # no mixin: make_config still checks it
        size: int = 4
        strides: tuple[int, ...] = (2, 2)
        mode: Literal["a", "b"] = "a"

    validate_dataclass(Plain())
    for bad in (Plain(size=True), Plain(strides=(2, 2.5)), Plain(mode="c")):
        with pytest.raises(ConfigError):
            validate_dataclass(bad)
    from zoo.registry import make_config
    assert make_config(Plain, {"strides": [4, 4]}).strides == (4, 4)  # JSON lists become tuples

    @dataclass
    class Checked(CheckedConfig):
        width: PositiveInt = 8

        def check(self) -> None:
            self.require(self.width % 4 == 0, "width", "a multiple of 4")

    with pytest.raises(ConfigError, match=r"Checked.width = 6: expected a multiple of 4"):
        Checked(width=6)

    def fn(lr: float = 1.0, steps: PositiveInt = 1):
        return lr

    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        check_kwargs(fn, {"step": 3}, "section")
    with pytest.raises(ConfigError, match="steps must be > 0"):
        check_kwargs(fn, {"steps": 0}, "section")


# -- output files -----------------------------------------------------------------------------------
def test_atomic_writes_respect_the_umask(tmp_path):
    from zoo.io import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_output_paths_are_refused_before_work(tmp_path):
    from zoo.io import check_writable

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "out.npy")


def test_save_image_writes_the_format_its_extension_names(tmp_path):
    from zoo.data import save_image

    img = torch.rand(3, 8, 8)
    for name, fmt in [("a.webp", "WEBP"), ("a.JPG", "JPEG"), ("a.png", "PNG"), ("a.tif", "TIFF")]:
        with Image.open(save_image(img, tmp_path / name)) as im:
            assert im.format == fmt
    with pytest.raises(OutputError, match="unknown image extension"):
        save_image(img, tmp_path / "a.npy")


# -- images -----------------------------------------------------------------------------------------
def test_16bit_and_float_grayscale_images_keep_their_levels(tmp_path):
    from zoo.data import load_image

    ramp = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray((ramp * 255).round().astype(np.uint8)).save(tmp_path / "g8.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "f.tif")
    g8 = load_image(tmp_path / "g8.png", 32)
    for name in ("g16.png", "f.tif"):
        assert (load_image(tmp_path / name, 32) - g8).abs().max() <= 1 / 255 + 1e-6, name


def test_decompression_bombs_are_input_errors(tmp_path, monkeypatch):
    from zoo.data import open_rgb

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)  # 4x over the limit: a "bomb"
    with pytest.raises(InputError, match="refusing image"):
        open_rgb(tmp_path / "big.png")


def test_other_float_dtypes_encode_like_float32(nano):
    x = torch.rand(2, 3, 32, 32)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert nano.encode(x.to(dtype)).shape == (2, 16)
    assert torch.equal(nano.encode(x.double()), nano.encode(x))


def test_nan_weights_are_named_not_blamed_on_the_input(nano):
    import copy

    broken = copy.deepcopy(nano)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="weight tensor.*NaN"):
        broken.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(CheckpointError, match="weight tensor.*NaN"):
        broken.decode(torch.zeros(1, 16, dtype=torch.long))


def test_unavailable_device_is_named():
    from zoo.device import resolve_device

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("gpu0")


# -- checkpoints ------------------------------------------------------------------------------------
def test_config_json_that_disagrees_with_the_weights_is_refused(nano, tmp_path):
    d = nano.save_pretrained(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["config"]["encoder_heads"] = 2  # same shapes, other computation
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"disagrees.*encoder_heads: config.json 2, weights 4"):
        zoo.from_pretrained(str(d))


def test_flipped_byte_in_the_weights_is_caught(nano, tmp_path):
    d = nano.save_pretrained(tmp_path / "m")
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-100] ^= 0x01
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        zoo.from_pretrained(str(d))


def test_checkpoints_without_metadata_still_load(nano, tmp_path):
    from safetensors.torch import load_file, save_file

    d = nano.save_pretrained(tmp_path / "m")
    save_file(load_file(d / "model.safetensors"), str(d / "model.safetensors"))
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(zoo.from_pretrained(str(d)).encode(x), nano.encode(x))


def test_shipped_nano_checkpoint_carries_verified_metadata():
    d = Path(__file__).resolve().parents[1] / "checkpoints" / "titok_nano_32"
    meta = hub.read_metadata(d / hub.WEIGHTS_NAME)
    assert meta[hub.META_CHECKSUM] == hub.tensors_checksum(hub.read_weights(d / hub.WEIGHTS_NAME))
    assert meta[hub.META_CONFIG] == hub.canonical_config(hub.read_config(d))


def test_failed_save_over_a_checkpoint_changes_nothing(nano, tmp_path, monkeypatch):
    d = nano.save_pretrained(tmp_path / "m")
    (d / "README.md").write_text("card")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    other = zoo.create("titok_nano_32", image_size=32, num_tokens=8)
    real = hub.atomic_write_text

    def fail_on_config(path, text):
        if Path(path).name == hub.CONFIG_NAME:
            raise OSError("disk full")
        return real(path, text)

    monkeypatch.setattr(hub, "atomic_write_text", fail_on_config)
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(d)  # weights written, config fails: the folder must keep the old pair
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    monkeypatch.setattr(hub, "atomic_write_text", real)
    other.save_pretrained(d)
    assert zoo.from_pretrained(str(d)).num_tokens == 8 and (d / "README.md").read_text() == "card"


def test_mistyped_local_path_fails_fast_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"'runs/exprt' is not a local folder.*cannot be reached"):
        zoo.from_pretrained("runs/exprt", endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "cache")
    assert time.monotonic() - start < 20


# -- CLI --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval()
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "nano")


def test_cli_tokenize_rows_and_formats(saved, image_folder, tmp_path, capsys):
    a, b = sorted(image_folder.glob("*.png"))[:2]
    out = tmp_path / "ids.NPY"
    assert main(["tokenize", str(a), str(a), str(b), "--model", str(saved), "-o", str(out)]) == 0
    ids = np.load(out)
    assert ids.shape == (3, 16) and (ids[0] == ids[1]).all()
    assert main(["tokenize", str(a), str(a), str(b), "--model", str(saved), "-o", str(tmp_path / "ids.json")]) == 0
    doc = json.loads((tmp_path / "ids.json").read_text())
    assert doc["images"] == [str(a), str(a), str(b)] and np.array_equal(np.array(doc["ids"]), ids)
    assert main(["tokenize", str(a), str(b), "--model", str(saved), "-o", str(tmp_path / "ids.jsonl")]) == 0
    assert len((tmp_path / "ids.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()


@pytest.mark.parametrize("output, match", [
    ("ids.txt", "unknown extension '.txt'"),
    ("{folder}", "is a folder"),
    ("{file}/ids.npy", "is a file, not a folder"),
])
def test_cli_refuses_bad_outputs_before_loading(image_folder, tmp_path, capsys, output, match):
    a = sorted(image_folder.glob("*.png"))[0]
    (tmp_path / "ids.npy").mkdir()
    output = output.format(folder=tmp_path / "ids.npy", file=a)
    # the model does not exist: the output check must come first
    assert main(["tokenize", str(a), "--model", str(tmp_path / "no-model"), "-o", output]) == 2
    assert match in capsys.readouterr().err


def test_cli_refuses_bad_arguments(saved, image_folder, tmp_path, capsys):
    a = sorted(image_folder.glob("*.png"))[0]
    with pytest.raises(SystemExit) as e:
        main(["tokenize", str(a), "--model", str(saved), "--batch-size", "-1"])
    assert e.value.code == 2 and ">= 1" in capsys.readouterr().err
    assert main(["reconstruct", str(a), "--model", str(saved), "-o", str(tmp_path / "r.xyz")]) == 2
    assert "unknown image extension" in capsys.readouterr().err
    assert main(["reconstruct", str(a), "--model", str(saved), "-o", str(tmp_path / "r.webp")]) == 0
    with Image.open(tmp_path / "r.webp") as im:
        assert im.format == "WEBP"
    if not torch.cuda.is_available():
        assert main(["tokenize", str(a), "--model", str(saved), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
