"""TiTok: official parameter counts and key layout, the tokenizer contract, determinism, bad input."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import zoo
from zoo.convert import convert_titok_state_dict
from zoo.errors import InputError, UnknownModelError
from zoo.registry import get_entry

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

# Official totals (bytedance/1d-tokenizer checkpoints). The two-stage variants include the
# 30,478,339-parameter MaskGIT-VQGAN pixel decoder and its 262,144-parameter codebook, and so do ours.
OFFICIAL = {
    "titok_s_128": 83_674_639,
    "titok_b_64": 204_814_095,
    "titok_l_32": 641_054_735,
    "titok_bl64_vq8k": 390_016_148,
    "titok_bl128_vq8k": 390_179_988,
    "titok_sl256_vq8k": 330_260_884,
}
OURS = {  # counted by num_parameters(include_buffers=True): parameters + the EMA codebook
    "titok_s_128": 83_674_639,
    "titok_b_64": 204_814_095,
    "titok_l_32": 641_054_735,
    "titok_bl64_vq8k": 390_016_148,
    "titok_bl128_vq8k": 390_179_988,
    "titok_sl256_vq8k": 330_260_884,
}


def meta_model(name: str):
    with torch.device("meta"):
        return zoo.create(name)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_parameter_count_matches_official(name):
    model = meta_model(name)
    n = model.num_parameters(include_buffers=True)
    assert n == OURS[name]
    assert abs(n - OFFICIAL[name]) / OFFICIAL[name] < 0.02
    assert get_entry(name).meta["params_official"] == OFFICIAL[name]
    has_pixel_decoder = hasattr(model, "pixel_decoder")
    assert has_pixel_decoder == get_entry(name).meta["pixel_decoder"]
    if has_pixel_decoder:
        assert sum(p.numel() for p in model.pixel_decoder.parameters()) == 30_478_339
        assert model.pixel_quantize.weight.numel() == 262_144


def _official_keys(name: str) -> dict[str, tuple[int, ...]]:
    file = {"titok_s_128": "titok_s128", "titok_b_64": "titok_b64", "titok_l_32": "titok_l32"}.get(name, name)
    path = REFERENCE / f"official_titok_{file}.keys.tsv"
    if not path.is_file():
        pytest.skip(f"reference file {path} not available")
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        out[key] = tuple(ast.literal_eval(shape))
    return out


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_checkpoint_layout_converts_exactly(name):
    """Every official key maps to one of ours with the same shape, and nothing is left over."""
    official = _official_keys(name)
    fake = {k: torch.empty(s, device="meta") for k, s in official.items()}
    converted = convert_titok_state_dict(fake)
    ours = {k: tuple(v.shape) for k, v in meta_model(name).state_dict().items()}
    assert set(converted) == set(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


def test_converted_official_weights_give_official_lookup(nano):
    """A checkpoint in the official layout (unnormalized codebook) loads and encodes like ours."""
    state = {k: v.clone() for k, v in nano.state_dict().items() if not k.startswith("quantize.")}
    codes = nano.quantize.codebook * 3.0  # official codes are not stored normalized
    state["quantize.embedding.weight"] = codes
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval()
    model.load_state_dict(convert_titok_state_dict(state))
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(model.encode(x), nano.encode(x))


def test_contract(nano):
    x = torch.rand(2, 3, 32, 32)
    ids = nano.encode(x)
    assert ids.shape == (2, nano.num_tokens) == (2, 16)
    assert ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < nano.vocab_size == 1024
    out = nano.decode(ids)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    fwd = nano(x)
    assert fwd.reconstruction.shape == x.shape and fwd.ids.shape == ids.shape
    assert fwd.aux.loss.ndim == 0 and {"usage", "perplexity"} <= set(fwd.aux.stats)
    assert nano.input_size == 32 and nano.bits_per_image == 16 * 10


def test_encode_is_deterministic_and_batch_independent(nano):
    x = torch.rand(4, 3, 32, 32)
    a = nano.encode(x)
    assert torch.equal(a, nano.encode(x))
    assert torch.equal(a[1:2], nano.encode(x[1:2]))


def test_two_stage_variant_decodes_through_pixel_decoder():
    torch.manual_seed(0)
    model = zoo.create("titok_s_128", encoder_depth=1, decoder_depth=1).eval()  # shallow for speed
    ids = model.encode(torch.rand(1, 3, 256, 256))
    assert ids.shape == (1, 128) and ids.max() < 4096
    assert model.decode(ids).shape == (1, 3, 256, 256)


def test_gradients_reach_encoder(nano):
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16).train()
    out = model(torch.rand(2, 3, 32, 32))
    (out.reconstruction.mean() + out.aux.loss).backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert model.latent_tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (torch.rand(3, 32, 32), r"\(B, 3, H, W\).*batch dimension"),
    (torch.rand(1, 1, 32, 32), "3 channels"),
    (torch.rand(1, 3, 64, 64), "32x32 pixels"),
    ((torch.rand(1, 3, 32, 32) * 255).to(torch.uint8), "float tensor"),
    (torch.rand(1, 3, 32, 32) * 255, r"values in \[0, 1\]"),
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_images_get_clear_errors(nano, bad, match):
    with pytest.raises(InputError, match=match):
        nano.encode(bad)


@pytest.mark.parametrize("bad, match", [
    (torch.full((1, 16), 1024), r"\[0, 1024\)"),
    (torch.full((1, 16), -1), r"\[0, 1024\)"),
    (torch.zeros(1, 15, dtype=torch.long), "16 tokens"),
    (torch.zeros(16, dtype=torch.long), r"\(B, N\)"),
    (torch.zeros(1, 16), "integer"),
])
def test_bad_ids_get_clear_errors(nano, bad, match):
    with pytest.raises(InputError, match=match):
        nano.decode(bad)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean titok_s_128"):
        zoo.create("titok_s128")


def test_bad_overrides_are_named():
    with pytest.raises(zoo.ConfigError, match="num_tokenz"):
        zoo.create("titok_nano_32", num_tokenz=3)
    with pytest.raises(zoo.ConfigError, match="multiple of patch_size"):
        zoo.create("titok_nano_32", image_size=30)


def test_registry_lists_titok_variants():
    names = zoo.list_models("titok*")
    for n in ["titok_s_128", "titok_b_64", "titok_l_32", "titok_bl64_vq8k", "titok_bl128_vq8k",
              "titok_sl256_vq8k", "titok_nano_32"]:
        assert n in names
    assert zoo.list_models("nothing*") == []


def test_encode_in_train_mode_leaves_the_codebook_alone():
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16)  # train mode, EMA codebook
    before = model.quantize.codebook.clone()
    x = torch.rand(2, 3, 32, 32)
    a = model.encode(x)
    assert torch.equal(model.quantize.codebook, before) and model.quantize.training
    assert torch.equal(a, model.encode(x))


def test_codebook_metric_follows_official_configs():
    # upstream configs: use_l2_norm True for the two-stage variants, False for the vq8k ones
    for name in ["titok_s_128", "titok_b_64", "titok_l_32"]:
        assert zoo.get_config(name).use_cosine
    for name in ["titok_bl64_vq8k", "titok_bl128_vq8k", "titok_sl256_vq8k"]:
        assert not zoo.get_config(name).use_cosine


def test_euclidean_official_codebook_is_not_normalized():
    codes = torch.randn(16, 4) * 3
    official = {"latent_tokens": torch.zeros(2, 8), "quantize.embedding.weight": codes}
    out = convert_titok_state_dict(official, use_cosine=False)
    assert torch.equal(out["quantize.vq._codebook.embed"][0], codes)
    out = convert_titok_state_dict(official, use_cosine=True)
    assert torch.allclose(out["quantize.vq._codebook.embed"][0].norm(dim=-1), torch.ones(16))


def small_fsq(**kw):
    """titok_micro_128_fsq's design (FSQ tokens, conv pixel head) at test size."""
    return zoo.create("titok_micro_128_fsq", image_size=32, num_tokens=16, encoder_depth=1, decoder_depth=1, **kw)


def test_fsq_conv_variant_contract_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = small_fsq().eval()
    assert model.vocab_size == 64_000 and model.bits_per_image == pytest.approx(16 * 15.9658, abs=1e-3)
    x = torch.rand(3, 3, 32, 32)
    ids = model.encode(x)
    assert ids.shape == (3, 16) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 64_000
    assert torch.equal(ids, model.encode(x)) and torch.equal(ids[1:2], model.encode(x[1:2]))
    out = model.decode(ids)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    model.save_pretrained(tmp_path / "m")
    again = zoo.from_pretrained(tmp_path / "m")
    assert again.config.quantizer == "fsq" and again.config.decoder_head == "conv"
    assert torch.equal(again.encode(x), ids)
    assert torch.equal(again.decode(ids), out)


def test_fsq_variant_runs_in_bfloat16():
    """A bf16 copy encodes and decodes (FSQ's ids -> codes follow the model's dtype; found by
    scripts/bench_models.py on a GPU) and mostly agrees with float32."""
    torch.manual_seed(0)
    model = small_fsq().eval()
    half = small_fsq().eval()
    half.load_state_dict(model.state_dict())
    half = half.to(torch.bfloat16)
    x = torch.rand(2, 3, 32, 32)
    ids = half.encode(x.bfloat16())
    out = half.decode(ids)
    assert ids.shape == (2, 16) and out.dtype == torch.bfloat16 and out.shape == x.shape
    assert half.quantizer.ids_to_vectors(ids).dtype == torch.bfloat16
    assert (ids == model.encode(x)).float().mean() > 0.5


def test_fsq_variant_trains():
    torch.manual_seed(0)
    model = small_fsq().train()
    x = torch.rand(4, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss = (model(x).reconstruction - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kw, match", [
    (dict(quantizer="fsq", token_dim=12), r"token_dim.*len\(fsq_levels\) = 6"),
    (dict(quantizer="fsq", token_dim=2, fsq_levels=(2, 8)), "fsq_levels"),
    (dict(decoder_head="convs"), "decoder_head"),
    (dict(grid_seeded=True, num_tokens=48), "num_tokens.*multiple of the 64 patches"),
])
def test_fsq_and_head_options_are_checked(kw, match):
    from zoo.errors import ConfigError
    with pytest.raises(ConfigError, match=match):
        zoo.create("titok_nano_32", **kw)


def test_grid_seeded_decoder_reads_prefixes():
    """A grid-seeded decoder accepts a prefix of the tokens (the missing ones count as zeros), as the
    variable-length models need, and the full sequence decodes as decode() does."""
    torch.manual_seed(0)
    model = small_fsq().eval()
    ids = model.encode(torch.rand(2, 3, 32, 32))
    latents = model.quantizer.ids_to_vectors(ids)
    full = model.decoder(latents)
    assert torch.allclose(full.clamp(0, 1), model.decode(ids), atol=1e-5)
    assert model.decoder(latents[:, :5]).shape == full.shape
    assert not torch.allclose(model.decoder(latents[:, :5]), full)


def test_grid_seeded_mixed_lengths_equal_one_by_one():
    """With lengths, each sample's seeds ignore its masked tail: one mixed batch equals each prefix alone."""
    torch.manual_seed(0)
    model = small_fsq().eval()
    latents = model.quantizer.ids_to_vectors(model.encode(torch.rand(2, 3, 32, 32)))
    lengths = torch.tensor([5, 16])
    batch = model.decoder(latents, lengths)
    for b, k in enumerate(lengths.tolist()):
        assert torch.allclose(batch[b:b + 1], model.decoder(latents[b:b + 1, :k]), atol=1e-5)
