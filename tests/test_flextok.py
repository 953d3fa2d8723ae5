"""FlexTok: official parameter counts, key layout and output parity; the variable-length contract;
seeded decoding; nested dropout; the rectified-flow sampler on a toy problem; a tiny training run whose
reconstruction error falls with the number of kept tokens; bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.blocks.flow import add_noise, euler_sample, normalized_guidance, predict_x0, velocity_target
from zoo.blocks.swiglu import prefix_causal_mask
from zoo.convert import convert_checkpoint
from zoo.convert.flextok import convert_flextok_state_dict, map_key
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.models.flextok import FlexTok, FlexTokConfig, FlexTokDecoder, FlexTokEncoder, parameter_count, sample_keep_k
from zoo.registry import get_config

from conftest import synthetic_image

FIXTURES = Path(__file__).parent / "fixtures" / "flextok"
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
# Official module totals (apple/ml-flextok built at random init, incl. the 83,821,011-parameter VAE).
OFFICIAL = {"flextok_d12_d12": (341_455_129, 85_382_406, 172_251_712),
            "flextok_d18_d18": (949_439_641, 287_326_086, 578_292_544),
            "flextok_d18_d28": (2_540_424_089, 287_326_086, 2_169_276_992)}
VAE = 83_821_011


def tiny(**kw) -> FlexTok:
    """A FlexTok small enough to train in seconds: 16x16 pixels, 4x4 patches, 16 tokens."""
    cfg = dict(image_size=16, vae="pixel", patch_size=4, encoder_width=64, encoder_depth=2, decoder_width=64,
               decoder_depth=2, head_dim=32, num_registers=16, sample_steps=4)
    return FlexTok(FlexTokConfig(**{**cfg, **kw}))


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([torch.from_numpy(synthetic_image(rng, size)).permute(2, 0, 1).float() / 255 for _ in range(n)])


# -- official layout --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_parameter_counts_match_official(name):
    total, enc, dec = OFFICIAL[name]
    counts = parameter_count(get_config(name))
    assert counts["encoder"] == enc and counts["decoder"] == dec
    if counts["vae"] is None:
        pytest.skip("diffusers not installed: the VAE part (83,821,011) is not counted")
    assert counts["vae"] == VAE and counts["total"] == total


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_every_official_key_maps_with_its_shape(name):
    tsv = REFERENCE / f"official_{name}_in1k.keys.tsv"
    if not tsv.is_file():
        pytest.skip("shared reference key lists not available")
    c = get_config(name)
    with torch.device("meta"):
        ours = {f"encoder.{k}": v.shape for k, v in FlexTokEncoder(c).state_dict().items()}
        ours.update({f"decoder.{k}": v.shape for k, v in FlexTokDecoder(c).state_dict().items()})
    seen = set()
    for line in tsv.read_text().splitlines():
        if line.startswith("#") or line.startswith("key\t"):
            continue
        key, shape, _ = line.split("\t")
        new = map_key(key)
        assert new is not None, key
        if not new.startswith("vae."):
            assert list(ours[new]) == json.loads(shape), key
            seen.add(new)
    assert seen == set(ours)


def parity_model() -> tuple[FlexTok, dict, dict]:
    cfg = json.loads((FIXTURES / "config.json").read_text())
    model = FlexTok(FlexTokConfig(**cfg["zoo_config"]))
    model = convert_checkpoint("official-flextok", FIXTURES / "official.safetensors", model)  # the registry path
    return model, load_file(FIXTURES / "io.safetensors"), cfg


def test_official_parity_ids_and_decoding():
    model, io, cfg = parity_model()
    ids = model.encode_latent_ids(io["latents"])
    assert torch.equal(ids, io["ids"])
    for k, guidance, apg in cfg["settings"]:
        ref = io[f"decoded_k{k}_g{guidance:g}{'_apg' if apg else ''}"]
        out = model.decode_to_latents(io["ids"][:, :k], steps=cfg["steps"], guidance=guidance, norm_guidance=apg,
                                      noise=io["noise"])
        assert (out - ref).abs().max() <= 1e-4, (k, guidance, apg)


def test_converter_rejects_foreign_and_mismatched_checkpoints():
    model, _, _ = parity_model()
    state = load_file(FIXTURES / "official.safetensors")
    with pytest.raises(CheckpointError, match="no zoo counterpart"):
        convert_flextok_state_dict({**state, "encoder.module_dict.something_else.weight": torch.zeros(1)}, model)
    with pytest.raises(CheckpointError, match="missing"):
        convert_flextok_state_dict({k: v for k, v in state.items() if "dec_head" not in k}, model)
    with pytest.raises(CheckpointError, match="VAE"):
        convert_flextok_state_dict({**state, "vae.vae.encoder.conv_in.bias": torch.zeros(128)}, model)
    wider = FlexTok(FlexTokConfig(**{**json.loads((FIXTURES / "config.json").read_text())["zoo_config"],
                                     "encoder_width": 64}))
    with pytest.raises(CheckpointError, match="shape"):
        convert_flextok_state_dict(state, wider)


# -- contract ---------------------------------------------------------------------------------------
def test_contract_and_any_prefix():
    model = zoo.create("flextok_nano").eval()
    assert model.variable_length and model.token_lengths() == range(1, 33) and model.num_tokens == 32
    assert model.vocab_size == 64_000 and model.input_size == 32
    x = images(2, 32)
    ids = model.encode(x)
    assert ids.shape == (2, 32) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 64_000
    assert torch.equal(model.encode(x, num_tokens=5), ids[:, :5])
    assert torch.equal(model.encode(x), ids)  # deterministic
    for k in (1, 7, 32):
        out = model.decode(ids[:, :k], steps=2, generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    train_out = model.train()(x)
    assert train_out.reconstruction.shape == x.shape and torch.isfinite(train_out.extras["flow_loss"])


def test_registers_are_ordered():
    """Register i sees patches and registers <= i: changing later registers leaves earlier ids alone."""
    model = tiny().eval()
    with torch.no_grad():
        for p in model.encoder.to_latents.parameters():
            p.normal_(0, 1.0)
    x = images(2, 16)
    before = model.encode(x)
    with torch.no_grad():
        model.encoder.registers[10:].normal_()
    after = model.encode(x)
    assert torch.equal(before[:, :10], after[:, :10]) and not torch.equal(before, after)
    mask = prefix_causal_mask(3, 2)
    assert mask.tolist() == [[1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_save_load_identical_ids(tmp_path):
    model = zoo.create("flextok_nano").eval()
    with torch.no_grad():
        model.encoder.to_latents.weight.normal_()
    x = images(2, 32, seed=3)
    model.save_pretrained(tmp_path / "ftk")
    loaded = zoo.from_pretrained(str(tmp_path / "ftk"))
    assert isinstance(loaded, FlexTok) and torch.equal(loaded.encode(x), model.encode(x))


def test_seeded_decoding_is_reproducible():
    model = tiny(cfg_dropout=0.1).eval()
    with torch.no_grad():
        for block in model.decoder.blocks:
            block.adaLN_modulation[1].weight.normal_(0, 0.05)
        model.decoder.head.proj.weight.normal_(0, 0.05)
    ids = model.encode(images(2, 16))[:, :5]
    a = model.decode(ids, steps=3, guidance=2.0, generator=torch.Generator().manual_seed(7))
    b = model.decode(ids, steps=3, guidance=2.0, generator=torch.Generator().manual_seed(7))
    c = model.decode(ids, steps=3, guidance=2.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    apg = model.decode(ids, steps=3, guidance=2.0, norm_guidance=True, generator=torch.Generator().manual_seed(7))
    assert apg.shape == a.shape and not torch.equal(apg, a)


# -- nested dropout and flow utilities --------------------------------------------------------------
def test_nested_dropout_schedules():
    gen = torch.Generator().manual_seed(0)
    u = sample_keep_k(4000, 256, "uniform", generator=gen)
    assert u.min() >= 1 and u.max() <= 256 and len(u.unique()) > 200
    p = sample_keep_k(4000, 256, "pow2", generator=gen)
    assert set(p.tolist()) == {2 ** i for i in range(9)}
    up = sample_keep_k(4000, 256, "uniform_pow2", generator=gen)
    assert set(up.tolist()) <= {2 ** i for i in range(9)}
    assert (up == 256).float().mean() > 0.4  # half of 1..256 rounds up to 256
    model = tiny()
    codes = torch.randn(3, 16, 6)
    r = model.decoder.condition(codes, torch.tensor([1, 5, 16]), torch.tensor([False, False, True]))
    mask, null = model.decoder.mask_token, model.decoder.null_cond
    assert torch.equal(r[0, 1:], mask.expand(15, -1)) and not torch.equal(r[0, 0], mask)
    assert torch.equal(r[1, 5:], mask.expand(11, -1)) and torch.equal(r[2], null.expand(16, -1))


def test_flow_identities():
    x0, noise, t = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.rand(4)
    x_t = add_noise(x0, noise, t)
    assert torch.allclose(predict_x0(x_t, velocity_target(x0, noise), t), x0, atol=1e-5)
    cond = torch.randn(2, 3, 4, 4)
    assert torch.allclose(normalized_guidance(cond, cond, 5.0), cond)


def mixture_velocity(means: torch.Tensor, s: float):
    """Exact rectified-flow velocity E[noise - x0 | x_t] for data = equal mixture of N(mean_k, s^2 I)."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None, None]
        var = (1 - t) ** 2 * s ** 2 + t ** 2  # (B, 1, 1)
        centred = x[:, None, :] - (1 - t) * means[None]  # (B, K, 2)
        logw = -(centred ** 2).sum(-1) / (2 * var[..., 0])
        w = torch.softmax(logw, dim=1)[..., None]
        e_noise = t / var * centred
        e_x0 = means[None] + (1 - t) * s ** 2 / var * centred
        return (w * (e_noise - e_x0)).sum(1)

    return v


def test_flow_sampler_moves_toward_the_data_as_steps_grow():
    means = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    s = 0.3
    velocity = mixture_velocity(means, s)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    dist = {}
    for steps in (1, 4, 32):
        x = euler_sample(velocity, noise, steps)
        dist[steps] = torch.cdist(x, means).min(1).values.mean().item()
    # one step lands on the posterior mean between the modes; more steps reach the modes (spread s)
    assert dist[1] > dist[4] > dist[32]
    assert dist[32] < 2 * s * math.sqrt(math.pi / 2) * 0.75 + 0.1
    with pytest.raises(InputError, match="null condition"):
        euler_sample(velocity, noise, 4, guidance=2.0)


# -- training ---------------------------------------------------------------------------------------
def test_tiny_training_loss_drops():
    torch.manual_seed(0)
    model = tiny(cfg_dropout=0.1, encoder_depth=1, decoder_depth=1)
    x = images(8, 16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model.flow_forward(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert len(model.encode(x).unique()) > 1  # the tokens start to carry information


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "flextok_nano"


def heldout_crops(n: int = 32, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random square crops of scikit-image's astronaut and coffee (held out of flextok_nano's training)."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = Image.fromarray((skdata.astronaut, skdata.coffee)[i % 2]())
        side = int(rng.integers(size * 2, min(im.size)))
        x, y = int(rng.integers(0, im.width - side)), int(rng.integers(0, im.height - side))
        crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
        out.append(torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped flextok_nano checkpoint")
def test_shipped_nano_error_falls_as_k_grows():
    """The CPU-trained flextok_nano (checkpoints/): on held-out photos, more tokens reconstruct better
    (mean squared error over a batch of 32 crops, the same starting noise for every k)."""
    model = zoo.from_pretrained(str(SHIPPED)).eval()
    x = heldout_crops()
    ids = model.encode(x)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    err = {k: ((model.decode(ids[:, :k], noise=noise) - x) ** 2).mean().item() for k in (1, 4, 32)}
    assert err[32] < err[4] < err[1]


def test_flow_task_with_repa_backbone():
    from zoo.training import get_task

    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 24, 4, stride=4), torch.nn.GELU())  # (B, 24, 8, 8)
    task = get_task("flow")
    module = task.module_class(model_name="flextok_nano", model_overrides={"repa_dim": 24, "repa_layer": 1},
                               repa_weight=0.5, repa_backbone=backbone)
    loss, parts, out = module.reconstruction_losses(images(2, 32))
    assert torch.isfinite(loss) and set(parts) >= {"flow", "repa", "keep_k"} and out.reconstruction.shape == (2, 3, 32, 32)
    loss.backward()
    assert module.model.decoder.repa_head.out_proj.weight.grad is not None
    assert all(p.grad is None for p in backbone.parameters())
    with pytest.raises(ConfigError, match="repa_backbone"):
        task.module_class(model_name="flextok_nano", repa_weight=0.5)


# -- bad input --------------------------------------------------------------------------------------
def test_bad_input():
    model = tiny().eval()
    x = images(1, 16)
    ids = model.encode(x)
    for k in (0, 17, 2.5, True):
        with pytest.raises(InputError, match="num_tokens"):
            model.encode(x, num_tokens=k)
    with pytest.raises(InputError, match="steps"):
        model.decode(ids, steps=0)
    with pytest.raises(InputError, match=r"\[0, 64000\)"):
        model.decode(torch.full((1, 4), 64_000))
    with pytest.raises(InputError, match="tokens"):
        model.decode(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="noise"):
        model.decode(ids, noise=torch.zeros(1, 3, 8, 8))
    no_null = tiny(cfg_dropout=0.0).eval()
    with pytest.raises(InputError, match="null condition"):
        no_null.decode(ids, guidance=3.0)
    with pytest.raises(ConfigError):
        FlexTokConfig(image_size=20, vae="pixel", patch_size=8)
    with pytest.raises(ConfigError):
        FlexTokConfig(nested_dropout="pow2", num_registers=24)
