"""Every folder under checkpoints/ loads by name: from a checkout, from $ZOO_CHECKPOINTS, and from an
installed wheel's layout (<prefix>/share/tokenizer-zoo/checkpoints, pyproject's data-files); a name
found nowhere says where it looked."""

from __future__ import annotations

import os
import sysconfig
import tomllib
from pathlib import Path

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import CheckpointError, UnknownModelError

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())


def load_by_name(name: str):
    """A bundled checkpoint by name: tokenizers through zoo.from_pretrained, generators through load_generator."""
    if hub.read_config(hub.resolve(name)).get("family") == "ar_generator":
        from zoo.generate import load_generator
        return load_generator(hub.resolve(name))
    return zoo.from_pretrained(name)


def fingerprint(model) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()])


def link_tree(dest: Path, names: list[str]) -> None:
    """checkpoints/<name>/* symlinked under ``dest`` (an installed layout without copying megabytes)."""
    for name in names:
        (dest / name).mkdir(parents=True)
        for f in (ROOT / "checkpoints" / name).iterdir():
            os.symlink(f, dest / name / f.name)


def test_there_are_bundled_checkpoints():
    assert BUNDLED and "titok_nano_32" in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_loads_by_name_from_checkout_env_and_installed_layout(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ZOO_CHECKPOINTS", raising=False)
    assert hub.resolve(name) == ROOT / "checkpoints" / name
    ref = fingerprint(load_by_name(name))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not a checkout: ./checkpoints does not exist
    env = tmp_path / "env_ckpts"
    link_tree(env, [name])
    monkeypatch.setenv("ZOO_CHECKPOINTS", str(env))
    assert hub.resolve(name) == env / name
    assert torch.equal(fingerprint(load_by_name(name)), ref)

    # an installed wheel: data-files under <prefix>/share/tokenizer-zoo/checkpoints, no source checkout
    monkeypatch.delenv("ZOO_CHECKPOINTS")
    prefix = tmp_path / "prefix"
    link_tree(prefix / "share" / "tokenizer-zoo" / "checkpoints", [name])
    real_get_path = sysconfig.get_path
    monkeypatch.setattr(sysconfig, "get_path", lambda key, *a, **k: str(prefix) if key == "data"
                        else real_get_path(key, *a, **k))
    assert hub.resolve(name) == prefix / "share" / "tokenizer-zoo" / "checkpoints" / name
    assert torch.equal(fingerprint(load_by_name(name)), ref)


def test_every_checkpoint_ships_in_the_wheel():
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    for name in BUNDLED:
        assert files.get(f"share/tokenizer-zoo/checkpoints/{name}") == [f"checkpoints/{name}/*"], (
            f"add checkpoints/{name} to [tool.setuptools.data-files] in pyproject.toml")


def test_missing_checkpoint_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "checkpoint_dirs", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(CheckpointError, match=r"looked in .*a/titok_nano_32, .*b/titok_nano_32.*ZOO_CHECKPOINTS"):
        zoo.from_pretrained("titok_nano_32")
    with pytest.raises(UnknownModelError, match=r"looked in .*a, .*b"):
        zoo.from_pretrained("no_such_checkpoint")
