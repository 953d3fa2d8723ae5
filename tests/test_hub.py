"""save_pretrained / from_pretrained / push_to_hub: round trips give identical ids; bad checkpoints
give clear errors; the Hub path runs against a Hub server on 127.0.0.1 (tests/hub_server.py)."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo import factory, hub
from zoo.errors import CheckpointError, UnknownModelError

from hub_server import LocalHub


@pytest.fixture
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_save_load_round_trip_gives_identical_ids(nano, images, tmp_path):
    nano.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["family"] == "titok" and cfg["variant"] == "titok_nano_32" and cfg["zoo_version"] == zoo.__version__
    loaded = zoo.from_pretrained(str(tmp_path / "m"))
    assert not loaded.training and loaded.config == nano.config
    assert torch.equal(loaded.encode(images), nano.encode(images))
    ids = nano.encode(images)
    assert torch.equal(loaded.decode(ids), nano.decode(ids))


def test_checkpoints_folder_is_searched(nano, images, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path))
    nano.save_pretrained(tmp_path / "my_nano")
    assert torch.equal(zoo.from_pretrained("my_nano").encode(images), nano.encode(images))


def test_missing_and_unknown(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no config.json"):
        zoo.from_pretrained(str(tmp_path))
    monkeypatch.setattr(hub, "checkpoint_dirs", lambda: [tmp_path])
    with pytest.raises(CheckpointError, match="no pretrained weights are published"):
        zoo.from_pretrained("titok_nano_32")
    with pytest.raises(UnknownModelError, match="did you mean"):
        zoo.from_pretrained("titok_nano_3")


def test_corrupt_weights(nano, tmp_path):
    d = nano.save_pretrained(tmp_path / "m")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        zoo.from_pretrained(str(d))
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        zoo.from_pretrained(str(d))


def test_mismatched_checkpoints(nano, tmp_path):
    from safetensors.torch import load_file, save_file

    d = nano.save_pretrained(tmp_path / "m")
    # an older checkpoint without the config in its metadata: the shape checks below still catch it
    # (with the metadata, config.json is compared to it first: tests/test_reliability.py)
    save_file(load_file(d / "model.safetensors"), str(d / "model.safetensors"))
    cfg = json.loads((d / "config.json").read_text())
    cfg["config"]["num_tokens"] = 8  # config now disagrees with the weights' shapes
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatches.*latent_tokens"):
        zoo.from_pretrained(str(d))
    cfg["family"] = "flextok_unknown"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown model family"):
        zoo.from_pretrained(str(d))
    cfg["family"] = "titok"
    cfg["config"]["depth_typo"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="depth_typo"):
        zoo.from_pretrained(str(d))
    with pytest.raises(CheckpointError, match="expected 'audio'"):
        factory.load_directory(nano.save_pretrained(tmp_path / "n"), expect_family="audio")


def test_failed_save_leaves_previous_files_intact(nano, tmp_path, monkeypatch):
    d = nano.save_pretrained(tmp_path / "m")
    before = (d / "model.safetensors").read_bytes()

    def boom(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half-written")
        raise OSError("disk full")

    monkeypatch.setattr(hub, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        nano.save_pretrained(d)
    assert (d / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left


def test_push_and_download_through_local_hub(nano, images, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    cache = tmp_path / "cache"
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)  # read at call time by zoo.hub
        first = nano.push_to_hub("alice/titok-nano", token="test-token")
        files = server.state.repos["alice/titok-nano"]["commits"][first]
        assert {"model.safetensors", "config.json", "README.md"} <= set(files)
        assert b"library_name: tokenizer-zoo" in files["README.md"]

        loaded = zoo.from_pretrained("alice/titok-nano", cache_dir=cache)
        assert torch.equal(loaded.encode(images), nano.encode(images))

        # a second push changes main; the first commit stays reachable by revision
        other = zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval()
        second = other.push_to_hub("alice/titok-nano", token="test-token")
        assert second != first
        latest = zoo.from_pretrained("alice/titok-nano", cache_dir=cache)
        pinned = zoo.from_pretrained("alice/titok-nano", revision=first, cache_dir=tmp_path / "fresh")
        assert torch.equal(latest.encode(images), other.encode(images))
        assert torch.equal(pinned.encode(images), nano.encode(images))
        assert ("GET", f"/alice/titok-nano/resolve/{first}/model.safetensors") in server.state.requests

        with pytest.raises(CheckpointError, match="not found"):
            zoo.from_pretrained("alice/nope", cache_dir=cache)
        with pytest.raises(CheckpointError, match="no revision"):
            zoo.from_pretrained("alice/titok-nano", revision="v9", cache_dir=cache)

    # the server is gone: the cached pinned revision still loads offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = zoo.from_pretrained("alice/titok-nano", revision=first, cache_dir=tmp_path / "fresh",
                                local_files_only=True)
    assert torch.equal(again.encode(images), nano.encode(images))


def test_model_card_states_the_facts(nano):
    from zoo.model_card import render_model_card

    card = render_model_card(nano, repo_id="alice/titok-nano", metrics={"psnr": 21.5})
    assert card.startswith("---\n") and 'zoo.from_pretrained("alice/titok-nano")' in card
    assert "| tokens per image | 16 |" in card and "| psnr | 21.5 |" in card


def test_registered_name_downloads_and_converts_official_weights(tmp_path, monkeypatch):
    """``from_pretrained(name)`` of a variant with an official repo fetches the official layout and converts it."""
    from safetensors.torch import save_file

    from zoo.registry import get_entry

    torch.manual_seed(3)
    ours = zoo.create("titok_nano_32").eval()
    official = {k: v for k, v in ours.state_dict().items() if not k.startswith("quantize.")}
    official["quantize.embedding.weight"] = ours.quantize.codebook * 2.0  # stored unnormalized upstream
    folder = tmp_path / "official"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in official.items()}, str(folder / "model.safetensors"))
    monkeypatch.setattr(hub, "checkpoint_dirs", lambda: [tmp_path / "none"])
    monkeypatch.setitem(get_entry("titok_nano_32").meta, "official_repo", "upstream/titok-nano")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with LocalHub() as server:
        from huggingface_hub import HfApi
        api = HfApi(endpoint=server.endpoint, token="t")
        api.create_repo("upstream/titok-nano")
        api.upload_folder(repo_id="upstream/titok-nano", folder_path=folder)
        loaded = zoo.from_pretrained("titok_nano_32", endpoint=server.endpoint, cache_dir=tmp_path / "c")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.encode(x), ours.encode(x))


def test_unreachable_hub_says_so(tmp_path):
    # a dotted repo id is still a repo id, not a file path
    with pytest.raises(CheckpointError, match="cannot download model.safetensors.*not in the local cache"):
        zoo.from_pretrained("alice/titok-nano-1.5", endpoint="http://127.0.0.1:9", cache_dir=tmp_path)


def test_missing_paths_are_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        zoo.from_pretrained(str(tmp_path / "no" / "such" / "dir"))
