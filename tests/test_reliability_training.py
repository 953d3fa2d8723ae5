"""Reliability of training: recipe mistakes are ConfigErrors before any step, unreadable images are
skipped, SIGINT/SIGTERM save the current step and resume loses none, bad resume points are refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from zoo.errors import CheckpointError, ConfigError, InputError, TrainingInterrupted, ZooError
from zoo.training.recipe import build, load_recipe, resolve_resume, train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "titok_nano.yaml"


def fast(root: Path, run: Path) -> list[str]:
    return [f"data.root={root}", f"output_dir={run}", "module.perceptual_weight=0", "model.overrides.image_size=32",
            "model.overrides.num_tokens=16", "data.batch_size=4", "trainer.enable_progress_bar=false",
            "checkpoint.every_n_train_steps=1000", "trainer.val_check_interval=1000", "logger=none"]


@pytest.mark.parametrize("override, match", [
    ("model.overides.num_tokens=16", r"unknown key\(s\) 'overides' \(did you mean 'overrides'\?\)"),
    ("model.overrides.num_token=16", r"did you mean 'num_tokens'"),
    ("data.batch_size=0", r"data.batch_size must be > 0"),
    ("data.batch_sise=4", r"did you mean 'batch_size'"),
    ("module.lr=-0.001", r"module.lr must be > 0"),
    ("module.lr=fast", r"module.lr must be a number"),
    ("checkpoint.every_n_train_step=5", r"did you mean 'every_n_train_steps'"),
    ("trainer.max_step=5", r"did you mean 'max_steps'"),
    ("trainer.max_steps=0", r"max_steps must be a positive int"),
    ("modle.name=titok_nano_32", r"did you mean .*'model'"),
    ("seed=0.5", r"seed must be an int"),
    ("data.root=/nonexistent/images", r"data.root /nonexistent/images does not exist"),
])
def test_recipe_mistakes_are_config_errors(image_folder, tmp_path, override, match):
    with pytest.raises(ZooError, match=match):
        build(load_recipe(RECIPE, fast(image_folder, tmp_path / "run") + [override]))


def test_resume_points_must_exist(image_folder, tmp_path):
    recipe = load_recipe(RECIPE, fast(image_folder, tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"last.ckpt does not exist.*--resume auto"):
        resolve_resume("last", recipe)
    assert resolve_resume("auto", recipe) is None
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_resume(str(tmp_path / "nope.ckpt"), recipe)


def test_unreadable_training_images_are_skipped(tmp_path, monkeypatch, caplog):
    from zoo.training.data import ImageFolder, readable_images

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 80, 0, 0)).save(tmp_path / f"ok{i}.png")
    Image.new("RGB", (400, 400)).save(tmp_path / "bomb.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 4)  # bomb.png is 4x over: refused
    files = readable_images(tmp_path)
    assert sorted(p.name for p in files) == ["ok0.png", "ok1.png", "ok2.png"]
    assert "skipping 2 unreadable image(s)" in caplog.text
    dataset = ImageFolder([tmp_path / "bomb.png", *files], 32, train=True)
    assert dataset[0].shape == (3, 32, 32)  # the bomb is skipped at load time too
    with pytest.raises(InputError, match="none of the"):
        ImageFolder([tmp_path / "bomb.png"], 32, train=True)[0]


@pytest.mark.timeout(300)
def test_sigterm_saves_the_current_step_and_resume_loses_none(image_folder, tmp_path, monkeypatch):
    from zoo.training.module import ImageTokenizerModule

    run = tmp_path / "run"
    args = fast(image_folder, run)

    def signal_at_step_3(self, batch, batch_idx):
        if self.trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ImageTokenizerModule, "on_train_batch_start", signal_at_step_3, raising=False)
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM: saved the state at step 4.*--resume last") as e:
        train(RECIPE, overrides=args + ["trainer.max_steps=1000"])
    assert e.value.exit_code == 128 + signal.SIGTERM
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or callable(signal.getsignal(signal.SIGTERM))
    monkeypatch.undo()

    trainer = train(RECIPE, overrides=args + ["trainer.max_steps=6"], resume="last")
    assert trainer.global_step == 6  # 4 saved + 2 more: no step lost or repeated

    # a truncated checkpoint and one of another model are refused before training
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(RECIPE, overrides=args + ["trainer.max_steps=8"], resume=str(tmp_path / "cut.ckpt"))
    with pytest.raises(CheckpointError, match="shape mismatches.*latent_tokens"):
        train(RECIPE, overrides=args + ["trainer.max_steps=8", "model.overrides.num_tokens=8"],
              resume=str(run / "checkpoints" / "last.ckpt"))
