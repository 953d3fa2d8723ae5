"""Model cards of bundled checkpoints: generated from config + `zoo eval` results + training record,
Hub metadata in the front matter, "not recorded" when nothing records the training, and pushed with
the checkpoint (local Hub server)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from hub_server import LocalHub
from zoo.model_card import NOT_RECORDED, checkpoint_card, load_results, training_record

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
SECTIONS = ("## Use", "## Architecture and tokens", "## Training", "## Measured", "## Intended use and limits",
            "## License", "## Config")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def script():
    spec = importlib.util.spec_from_file_location("make_model_cards", ROOT / "scripts" / "make_model_cards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_checkpoint_has_a_card(name):
    card = (ROOT / "model_cards" / f"{name}.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "tokenizer-zoo" and meta["license"] and "tokenizer-zoo" in meta["tags"]
    for section in SECTIONS:
        assert section in card, (name, section)
    config = json.loads((ROOT / "checkpoints" / name / "config.json").read_text())["config"]
    shown = json.loads(card.split("## Config")[1].split("```json")[1].split("```")[0])
    assert {k: shown.get(k) for k in config} == config  # generated from this checkpoint's config
    for r in load_results([ROOT / "results"]):
        if (r.get("model") or {}).get("name") == name:  # its zoo eval numbers are in the card
            key = "psnr" if "psnr" in r["results"][0] else "mel_distance"
            assert f"{r['results'][0][key]:.4g}" in card and key in meta.get("metrics", [])


def write_checkpoint(nano, root: Path, name: str) -> Path:
    folder = root / "checkpoints" / name
    nano.save_pretrained(folder)
    return folder


def eval_result(nano, name: str) -> dict:
    return {"schema": "zoo.eval/1",
            "model": {"name": name, "id": name, "config": json.loads(json.dumps(dataclasses.asdict(nano.config), default=list))},
            "data": {"dir": "heldout", "hash": "sha256:" + "ab" * 32, "num_evaluated": 7,
                     "preprocess": {"input_size": nano.input_size, "resize": "center-crop"}},
            "settings": {"seed": 0}, "notes": ["a note"],
            "results": [{"num_tokens": nano.num_tokens, "bits_per_image": 160.0, "psnr": 23.456, "ssim": 0.71}]}


def test_card_from_config_results_and_provenance(nano, tmp_path):
    folder = write_checkpoint(nano, tmp_path, "mine")
    (folder / "provenance.json").write_text(json.dumps({
        "recipe": "recipes/titok_nano.yaml --set trainer.max_steps=5", "seed": 3,
        "data": "200 crops of public-domain photos (CC0)", "datasets": ["my-org/photos"]}))
    card = checkpoint_card(nano, folder, [eval_result(nano, "mine"), eval_result(nano, "other")], grid="g.png")
    meta = front_matter(card)
    assert meta["datasets"] == ["my-org/photos"] and meta["metrics"] == ["psnr", "ssim"]
    assert "image-tokenizer" in meta["tags"] and nano.family in meta["tags"]
    assert "recipes/titok_nano.yaml --set trainer.max_steps=5" in card and "- seed: 3" in card
    assert "| 16 | 160 | 23.46 | 0.71 |" in card and "`heldout`: 7 images" in card and "- a note" in card
    assert "![grid](g.png)" in card and "differs" not in card
    assert "below 22 dB" not in card  # 23.5 dB is above the recognizability bar
    assert f"| tokens per image | {nano.num_tokens} |" in card and f"| bits per image | {nano.bits_per_image:.0f}" in card


def test_training_not_recorded_and_readme_entry(nano, tmp_path):
    folder = write_checkpoint(nano, tmp_path, "bare")
    card = checkpoint_card(nano, folder, [])
    assert f"Training data, recipe and seed: {NOT_RECORDED}." in card and "not measured" in card
    (folder.parent / "README.md").write_text("# x\n\n- `bare/`: trained on\n  ten photos.\n- `z/`: other\n")
    assert training_record(folder)[0] == "From `checkpoints/README.md`: trained on ten photos."
    (folder / "TRAINING.md").write_text("Trained with care.\n")
    assert "Trained with care." in checkpoint_card(nano, folder, [])


def test_script_writes_cards_and_pushes_them(nano, tmp_path, monkeypatch):
    folder = write_checkpoint(nano, tmp_path, "pushed_nano")
    results = tmp_path / "results"
    results.mkdir()
    (results / "pushed_nano.json").write_text(json.dumps(eval_result(nano, "pushed_nano")))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_TOKEN", "test-token")
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        assert script().main(["--out", str(tmp_path / "cards"), "--checkpoints", str(folder.parent),
                              "--results", str(results), "--only", "pushed_nano", "--push", "alice"]) == 0
        repo = server.state.repos["alice/pushed_nano"]
        files = repo["commits"][repo["branches"]["main"]]
    card = (tmp_path / "cards" / "pushed_nano.md").read_text()
    assert "| 16 | 160 | 23.46 | 0.71 |" in card
    pushed = files["README.md"].decode()
    assert pushed == checkpoint_card(nano, folder, load_results([results]), repo_id="alice/pushed_nano")
    assert 'zoo.from_pretrained("alice/pushed_nano")' in pushed and {"model.safetensors", "config.json"} <= set(files)


def test_push_to_hub_takes_a_card(nano, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        commit = nano.push_to_hub("alice/carded", token="t", card="---\nlibrary_name: tokenizer-zoo\n---\n# mine\n")
        assert server.state.repos["alice/carded"]["commits"][commit]["README.md"].endswith(b"# mine\n")
