"""The ``zoo`` command on real PNG/JPEG files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main


@pytest.fixture(scope="module")
def saved_nano(tmp_path_factory, nano):
    return nano.save_pretrained(tmp_path_factory.mktemp("nano"))


def test_list(capsys):
    assert main(["list", "titok*"]) == 0
    out = capsys.readouterr().out
    for name in ["titok_s_128", "titok_b_64", "titok_l_32", "titok_nano_32", "titok_sl256_vq8k"]:
        assert name in out


def test_tokenize_and_reconstruct_files(saved_nano, image_folder, tmp_path, capsys, nano):
    png, jpg = sorted(image_folder.glob("*.png"))[0], sorted(image_folder.glob("*.jpg"))[0]
    assert main(["tokenize", str(png), str(jpg), "--model", str(saved_nano), "--batch-size", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [len(r["ids"]) for r in lines] == [16, 16]
    from zoo.data import load_image
    assert lines[0]["ids"] == nano.encode(load_image(png, 32))[0].tolist()

    out_npy = tmp_path / "ids.npy"
    assert main(["tokenize", str(png), str(jpg), "--model", str(saved_nano), "-o", str(out_npy)]) == 0
    assert np.load(out_npy).tolist() == [r["ids"] for r in lines]  # batched == one at a time

    out = tmp_path / "rec.png"
    assert main(["reconstruct", str(jpg), "--model", str(saved_nano), "-o", str(out)]) == 0
    assert Image.open(out).size == (32, 32)


def test_errors_are_one_line(tmp_path, capsys, saved_nano):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["tokenize", str(tmp_path / "broken.png"), "--model", str(saved_nano)]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "Traceback" not in err
    assert main(["reconstruct", str(tmp_path / "broken.png"), "--model", "titok_s128", "-o", "x.png"]) == 2
    assert "did you mean titok_s_128" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "titok_l_32" in r.stdout
