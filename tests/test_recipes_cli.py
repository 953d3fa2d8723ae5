"""`zoo train` as a LightningCLI-style command: every recipe resolves in both forms (RECIPE --set and
--config with dotted options), --print_config output is itself a valid config, unknown keys get
suggestions, module/data are swappable by class_path, and a tiny run trains quietly from --config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo.cli import main
from zoo.errors import ConfigError
from zoo.training.cli_config import parse_train_command, resolved_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
TITOK = Path(__file__).resolve().parents[1] / "recipes" / "titok_nano.yaml"


def printed(capsys, argv: list[str]) -> dict:
    assert main(["train", *argv, "--print_config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_resolves_in_both_forms(recipe, tmp_path, capsys):
    old = printed(capsys, [str(recipe), "--set", "data.root=DATA", "--set", "trainer.devices=2"])
    new = printed(capsys, ["--config", str(recipe), "--data.root", "DATA", "--trainer.devices", "2"])
    assert old == new
    assert new["data"]["init_args"]["root"] == "DATA" and new["trainer"]["devices"] in (2, "2")
    assert "class_path" in new["module"] and "init_args" in new["data"]
    source = yaml.safe_load(recipe.read_text())
    assert new["model"]["name"] == source["model"]["name"]
    for key, value in (source.get("module") or {}).items():  # the recipe's own values survive resolution
        if not (isinstance(value, str) and "$" in value):
            assert new["module"]["init_args"][key] == (list(value) if isinstance(value, tuple) else value), key
    # the printed config is a valid config and resolves to itself
    again = tmp_path / "resolved.yaml"
    again.write_text(yaml.safe_dump(new))
    assert printed(capsys, ["--config", str(again)]) == new


def test_dotted_overrides_are_typed_and_reach_every_section(capsys):
    cfg = printed(capsys, ["--config", str(TITOK), "--trainer.max_steps", "10", "--module.lr", "1e-3",
                           "--data.root=/data", "--model.name", "titok_s_128", "--seed", "3",
                           "--model.overrides.image_size", "32", "--checkpoint.every_n_train_steps", "5"])
    assert cfg["trainer"]["max_steps"] == 10 and cfg["module"]["init_args"]["lr"] == 1e-3
    assert cfg["data"]["init_args"]["root"] == "/data" and cfg["model"]["name"] == "titok_s_128"
    assert cfg["model"]["overrides"] == {"image_size": 32} and cfg["seed"] == 3
    assert cfg["checkpoint"]["every_n_train_steps"] == 5
    assert "image_size" not in cfg["data"]["init_args"]  # filled from the model when the run starts


@pytest.mark.parametrize("argv, hint", [
    (["--trainer.max_stepz", "3"], "--trainer.max_steps"),
    (["--modul.lr", "3"], "--module.lr"),
    (["--module.lr", "abc"], "module.lr"),
    (["--set", "module.lrr=3"], "'lr'"),
    (["--set", "trainer.devicez=3"], "'devices'"),
])
def test_unknown_or_bad_keys_are_config_errors_with_suggestions(argv, hint):
    with pytest.raises(ConfigError, match=hint.replace(".", r"\.")):
        parse_train_command([str(TITOK), *argv])


def test_unknown_option_exits_2_with_message(capsys):
    assert main(["train", "--config", str(TITOK), "--trainer.max_stepz", "3"]) == 2
    assert "did you mean --trainer.max_steps" in capsys.readouterr().err


def test_module_and_data_swappable_by_class_path(tmp_path, capsys):
    recipe = yaml.safe_load(TITOK.read_text())
    recipe["module"] = {"class_path": "zoo.training.flow.FlowTokenizerModule", "init_args": {"lr": 2.0e-3}}
    recipe["data"] = {"class_path": "zoo.training.data.ImageDataModule", "init_args": {"root": "x", "batch_size": 4}}
    recipe["model"] = {"name": "flextok_nano"}
    path = tmp_path / "swapped.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cfg = printed(capsys, ["--config", str(path), "--module.init_args.lr", "3e-3"])
    assert cfg["module"]["class_path"] == "zoo.training.flow.FlowTokenizerModule"
    assert cfg["module"]["init_args"]["lr"] == 3e-3 and cfg["data"]["init_args"]["batch_size"] == 4
    cfg = printed(capsys, [str(TITOK), "--module.class_path", "zoo.training.module.ImageTokenizerModule"])
    assert cfg["module"]["class_path"] == "zoo.training.module.ImageTokenizerModule"
    with pytest.raises(ConfigError, match="not a LightningModule"):
        parse_train_command([str(TITOK), "--module.class_path", "zoo.training.data.ImageDataModule"])
    with pytest.raises(ConfigError, match="cannot be imported"):
        parse_train_command([str(TITOK), "--set", "data.class_path=zoo.nothing.Here"])


def test_later_configs_override_earlier_ones(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("trainer: {max_steps: 7}\nmodule: {init_args: {lr: 5.0e-4}}\n")
    cmd = parse_train_command(["--config", str(TITOK), "--config", str(extra), "--trainer.max_steps", "9"])
    cfg = resolved_config(cmd)
    assert cfg["trainer"]["max_steps"] == 9 and cfg["module"]["init_args"]["lr"] == 5e-4
    assert cfg["module"]["init_args"]["warmup_steps"] == 50  # from the first config


@pytest.mark.timeout(300)
def test_tiny_run_from_config_form_quiet(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(TITOK), "--data.root", str(image_folder), "--output_dir", str(run),
                 "--trainer.max_steps", "3", "--model.overrides.image_size", "32", "--module.perceptual_weight", "0",
                 "--data.batch_size", "4", "--trainer.limit_val_batches", "1", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["global_step"] == 3
    assert "it/s" not in err and "Epoch 0" not in err  # no progress bar
    assert (run / "export" / "config.json").is_file()


# -- --quiet on every long command ------------------------------------------------------------------
@pytest.fixture
def restore_quiet(monkeypatch):
    import logging

    monkeypatch.setenv("TQDM_DISABLE", "0")  # restored (removed) after the test
    names = ("", "zoo", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
    from huggingface_hub.utils import enable_progress_bars
    enable_progress_bars()


def test_every_long_command_takes_quiet():
    from zoo.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in ("tokenize", "tokenize-dataset", "convert", "eval"):
        assert "--quiet" in sub[name]._option_string_actions, name
    # train parses its own options: --quiet is one of them
    assert parse_train_command([str(TITOK), "--quiet"]).quiet


@pytest.mark.timeout(300)
def test_eval_progress_bar_and_quiet(tmp_path, capsys, restore_quiet):
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", 2, size=70)
    base = ["eval", "--model", "titok_nano_32", "--random-init", "--data", str(folder), "--limit", "2",
            "--batch-size", "1", "--no-fid"]
    assert main(base + ["--out", str(tmp_path / "a.json")]) == 0
    assert "eval: 100%" in capsys.readouterr().err  # the bar
    assert main(base + ["--out", str(tmp_path / "b.json"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "batch/s" not in err and "it/s" not in err and "INFO" not in err
    assert json.loads((tmp_path / "b.json").read_text())["data"]["num_evaluated"] == 2


def test_tokenize_quiet(tmp_path, capsys, restore_quiet):
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", 2, size=70)
    images = [str(p) for p in sorted(folder.iterdir())]
    assert main(["tokenize", *images, "--model", "titok_nano_32", "--random-init", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == len(images) and "tokenize" not in err


def test_help_lists_run_options_and_section_keys(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--print_config" in out and "--trainer.devices" in out and "--module.lr" in out
    assert main(["train", "--config", str(RECIPES[0]), "--help"]) == 0
    assert "--data.root" in capsys.readouterr().out
    assert main(["train"]) == 2 and "give a recipe" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_printed_config_trains(image_folder, tmp_path, capsys):
    cfg = printed(capsys, [str(TITOK), "--data.root", str(image_folder), "--output_dir", str(tmp_path / "run"),
                           "--trainer.max_steps", "2", "--model.overrides.image_size", "32",
                           "--module.perceptual_weight", "0", "--data.batch_size", "4",
                           "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"])
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["global_step"] == 2


def test_print_config_skip_null(capsys):
    full = printed(capsys, [str(TITOK)])
    assert main(["train", str(TITOK), "--print_config=skip_null"]) == 0
    short = yaml.safe_load(capsys.readouterr().out)
    assert full["trainer"]["max_epochs"] is None and "max_epochs" not in short["trainer"]
    assert short["module"]["init_args"]["lr"] == 1e-3 and "disc_lr" not in short["module"]["init_args"]
    with pytest.raises(ConfigError, match="skip_null"):
        parse_train_command([str(TITOK), "--print_config=yes"])
