"""A real (tiny) training run: titok_nano on CPU, loss drops, tokens depend on the image, resume works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.training.losses import PerceptualWeightsMissing, make_perceptual
from zoo.training.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "titok_nano.yaml"
FAST = ["model.overrides.image_size=32", "module.perceptual_weight=0", "data.batch_size=16",
        "checkpoint.every_n_train_steps=40", "trainer.val_check_interval=40", "trainer.enable_progress_bar=false"]


def metrics(run: Path) -> list[dict]:
    import csv
    rows = list(csv.DictReader((run / "logs" / "version_0" / "metrics.csv").open()))
    return [r for r in rows if r.get("train/loss")]


@pytest.mark.timeout(600)
def test_nano_recipe_trains_exports_and_resumes(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(RECIPE), "--set", f"data.root={image_folder}", "--set", f"output_dir={run}",
            "--set", "trainer.max_steps=80"]
    for o in FAST:
        args += ["--set", o]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["global_step"] == 80
    rows = metrics(run)
    first, last = float(rows[0]["train/l1"]), float(rows[-1]["train/l1"])
    assert last < 0.7 * first, (first, last)
    assert (run / "checkpoints" / "last.ckpt").is_file()

    model = zoo.from_pretrained(str(run / "export"))
    images = torch.stack([__import__("zoo.data", fromlist=["load_image"]).load_image(p, 32)[0]
                          for p in sorted(image_folder.glob("*.png"))[:8]])
    ids = model.encode(images)
    assert (ids != ids[:1]).any(dim=0).float().mean() > 0.5, "tokens do not depend on the image (collapse)"

    # resume from the last checkpoint and go on to 100 steps
    args[args.index("trainer.max_steps=80")] = "trainer.max_steps=100"
    assert main(args + ["--resume", "last"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["global_step"] == 100


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: titok_nano_32}\nmodle: {}\n")
    with pytest.raises(ConfigError, match="unknown section.*modle"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_recipe(RECIPE, ["trainer.max_steps"])


def test_unset_data_variable_is_named(monkeypatch):
    from zoo.training.recipe import build

    monkeypatch.delenv("ZOO_DATA", raising=False)
    with pytest.raises(ConfigError, match=r"ZOO_DATA.*--set data.root"):
        build(load_recipe(RECIPE, ["module.perceptual_weight=0"]))


def test_missing_perceptual_weights_are_reported(monkeypatch):
    import zoo.training.losses as losses

    class Missing:
        def __init__(self, *a, **k):
            raise OSError("offline")

    monkeypatch.setattr("torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity", Missing)
    with pytest.raises(PerceptualWeightsMissing, match=r"vgg16-397923af.pth.*perceptual_on_missing"):
        make_perceptual("vgg", "error")
    assert make_perceptual("vgg", "skip") is None
    del losses


def test_gan_starts_late_and_trains_the_discriminator(image_folder):
    import lightning as L

    from zoo.training.data import ImageDataModule
    from zoo.training.module import ImageTokenizerModule

    L.seed_everything(0)
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16)
    module = ImageTokenizerModule(model=model, lr=1e-3, gan_weight=0.1, gan_start_step=3)
    disc_before = [p.detach().clone() for p in module.discriminator.parameters()]
    seen = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(("train/gan_d" in trainer.callback_metrics, "train/gan_g" in trainer.callback_metrics))

    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, enable_model_summary=False, callbacks=[Spy()])
    trainer.fit(module, datamodule=ImageDataModule(str(image_folder), 32, batch_size=8))
    assert seen[:3] == [(False, False)] * 3 and seen[-1] == (True, True)
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))


def test_latent_perturbation_perturbs_the_first_beta_fraction():
    from zoo.training.module import ImageTokenizerModule

    torch.manual_seed(0)
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16)
    module = ImageTokenizerModule(model=model, latent_perturbation={"alpha": 1.0, "beta": 0.5, "delta": 8})
    module.train()
    model.quantize.vq.freeze_codebook = True  # keep the EMA codebook fixed between the two passes
    images = torch.rand(4, 3, 32, 32)
    perturbed = module.forward_tokenizer(images).reconstruction
    module.eval()
    clean = module.forward_tokenizer(images).reconstruction
    assert not torch.allclose(perturbed[:2], clean[:2], atol=1e-5)
    assert torch.allclose(perturbed[2:], clean[2:], atol=1e-5)
    module.train()
    out = module.forward_tokenizer(images)
    out.reconstruction.mean().backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0  # straight-through to the encoder


def test_training_crops_vary_between_draws_and_validation_is_fixed(image_folder):
    from zoo.training.data import ImageDataModule

    data = ImageDataModule(str(image_folder), 32, batch_size=4)
    data.setup()
    torch.manual_seed(0)
    draws = [data.train_set[0] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # a new crop/flip each epoch
    assert torch.equal(data.val_set[0], data.val_set[0])


def test_scale_crops_of_whole_photos(tmp_path):
    """data.crop=scale: random squares from close-up to the whole short side, resized; an epoch of
    samples_per_epoch draws cycling through the files; cache_images keeps each decoded photo once."""
    from PIL import Image

    from zoo.data import random_scale_crop
    from zoo.training.data import ImageDataModule

    folder = tmp_path / "photos"
    folder.mkdir()
    ramp = torch.linspace(0, 255, 200).round().to(torch.uint8)
    for name in ("ramp", "ramp2", "ramp3"):  # 200x120 horizontal grey ramps (one goes to validation)
        Image.fromarray(ramp[None, :, None].expand(120, 200, 3).numpy()).save(folder / f"{name}.png")
    Image.new("RGB", (20, 30), (200, 10, 10)).save(folder / "small.png")  # smaller than 32: scaled up
    data = ImageDataModule(str(folder), 32, batch_size=4, val_fraction=0.01, crop="scale", samples_per_epoch=30,
                           cache_images=True)
    data.setup()
    assert len(data.train_set) == 30 and len(data.train_set.files) == 3
    torch.manual_seed(0)
    crops = [data.train_set[i] for i in range(30)]
    assert all(c.shape == (3, 32, 32) and 0 <= c.min() and c.max() <= 1 for c in crops)
    ramp_crops = [c for c in crops if c[1].std() > 0]  # the red square has no green
    spans = [float(c[0, 0].max() - c[0, 0].min()) for c in ramp_crops]
    assert max(spans) > 2 * min(spans)  # squares of several sizes: the ramp spans more in larger ones
    assert set(data.train_set.cache) == set(data.train_set.files)
    g = torch.Generator().manual_seed(3)
    photo = Image.open(folder / "ramp.png").convert("RGB")
    a = random_scale_crop(photo, 32, generator=g)
    assert torch.equal(a, random_scale_crop(photo, 32, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ConfigError, match="crop"):
        ImageDataModule(str(folder), 32, crop="random")
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        ImageDataModule(str(folder), 32, samples_per_epoch=0)


def test_image_module_init_from_a_saved_model(tmp_path):
    """module.init_from starts an image run from saved weights; another model's weights are refused."""
    from zoo.errors import CheckpointError
    from zoo.training.module import ImageTokenizerModule

    torch.manual_seed(0)
    source = zoo.create("titok_nano_32", image_size=32, num_tokens=16)
    source.save_pretrained(tmp_path / "m")
    module = ImageTokenizerModule("titok_nano_32", {"image_size": 32, "num_tokens": 16}, init_from=str(tmp_path / "m"))
    theirs = source.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in module.model.state_dict().items())
    with pytest.raises(CheckpointError, match="differs"):
        ImageTokenizerModule("titok_nano_32", init_from=str(tmp_path / "m"))  # 64 px, 32 tokens: another config
