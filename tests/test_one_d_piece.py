"""One-D-Piece: contract, any-prefix decoding, Tail Token Drop training, official parity, adaptive length."""

from __future__ import annotations

import ast
import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.cli import main as cli_main
from zoo.blocks import ConvPixelDecoder
from zoo.convert import convert_checkpoint
from zoo.convert.one_d_piece import convert_one_d_piece_state_dict
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.metrics.image import psnr
from zoo.models import adaptive
from zoo.models.adaptive import RaggedIds, encode_adaptive, parse_target
from zoo.models.one_d_piece import OneDPiece, OneDPieceConfig
from zoo.registry import get_entry
from zoo.training.module import ImageTokenizerModule

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/one_d_piece"
REFERENCE = ROOT.parent / "shared/reference"
CHECKPOINT = ROOT / "checkpoints/one_d_piece_nano_32"
OFFICIAL = {"one_d_piece_s_256": 83_871_247, "one_d_piece_b_256": 205_256_463, "one_d_piece_l_256": 641_742_863}


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: coarse colour fields plus finer detail (photo-like spectra)."""
    g = torch.Generator().manual_seed(seed)
    x = sum(w * F.interpolate(torch.rand(n, 3, r, r, generator=g), size=size, mode="bilinear", align_corners=False)
            for w, r in ((0.5, 2), (0.3, 4), (0.2, 8)))
    return x.clamp(0, 1)


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return zoo.create("one_d_piece_nano_32", image_size=32, num_tokens=16).eval()


@pytest.fixture(scope="module")
def trained():
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("checkpoints/one_d_piece_nano_32 is not in this checkout")
    return zoo.from_pretrained(str(CHECKPOINT)).eval()


# -- registry and official layout -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_parameter_count_matches_official(name):
    with torch.device("meta"):
        model = zoo.create(name)
    n = model.num_parameters(include_buffers=True)
    assert n == OFFICIAL[name]  # exact (the issue allows 2%)
    assert get_entry(name).meta["params_official"] == OFFICIAL[name]
    assert model.config.legacy_layout and model.config.decoder_head == "proxy"
    assert model.token_lengths() == range(1, 257) and model.variable_length


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_keys_convert_exactly(name):
    path = REFERENCE / f"official_one_d_piece_{name.replace('_s_', '_s').replace('_b_', '_b').replace('_l_', '_l')}.keys.tsv"
    if not path.is_file():
        pytest.skip(f"reference file {path} not available")
    official = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape, _ = line.split("\t")
            official[key] = tuple(ast.literal_eval(shape))
    with torch.device("meta"):
        model = zoo.create(name)
    converted = convert_one_d_piece_state_dict({k: torch.empty(s, device="meta") for k, s in official.items()}, model)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}


# -- output parity with the official code (fixtures made by scripts/make_one_d_piece_fixtures.py) -----
def official_state() -> dict[str, torch.Tensor]:
    """The fixture's official state dict in fp32 (stored as int8 steps of a power of two)."""
    path = FIXTURES / "official.safetensors"
    with safe_open(str(path), "pt") as f:
        exponents = json.loads(f.metadata()["scale_exponents"])
    return {k: v.float() * 2.0 ** -exponents[k] if k in exponents else v for k, v in load_file(str(path)).items()}


def fixture_model(**changes) -> OneDPiece:
    """The zoo OneDPiece of the fixture's size, with the tiny VQGAN decoder the official run had."""
    spec = json.loads((FIXTURES / "config.json").read_text())
    model = OneDPiece(OneDPieceConfig(**{**spec["zoo_config"], **changes}), name="one_d_piece_fixture")
    pd = spec["pixel_decoder"]
    model.pixel_decoder = ConvPixelDecoder(z_channels=pd["z_channels"], hidden=pd["hidden"],
                                           channel_mult=tuple(pd["channel_mult"]))
    return model


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("official_one_d_piece")
    save_file(official_state(), str(folder / "model.safetensors"))
    model = convert_checkpoint("official-one-d-piece", folder, fixture_model())
    prefixes = json.loads((FIXTURES / "config.json").read_text())["prefixes"]
    io = load_file(str(FIXTURES / "io.safetensors"))
    io["images"] = io.pop("images_uint8").float() / 255
    return model, io, prefixes


def test_official_ids_and_prefix_decodes_match(parity):
    model, io, prefixes = parity
    ids = model.encode(io["images"])
    assert torch.equal(ids, io["ids"]), f"{(ids != io['ids']).float().mean():.1%} of the ids differ"
    with torch.no_grad():
        for k in prefixes:  # the official decode_tokens(ids, length=k): pixels from the first k tokens
            ours = model.decode_latents(model.quantizer.ids_to_vectors(io["ids"][:, :k]))
            assert (ours - io[f"decoded_{k}"]).abs().max() <= 1e-4, k
            assert (model.decode(io["ids"][:, :k]) - io[f"decoded_{k}"].clamp(0, 1)).abs().max() <= 1e-4, k
        # one batch of mixed prefix lengths (tail masked out) equals each image's official prefix decode
        lengths = torch.tensor(prefixes[:2])
        mixed = model.decode(io["ids"], lengths=lengths)
        for b, k in enumerate(lengths.tolist()):
            assert (mixed[b] - io[f"decoded_{k}"][b].clamp(0, 1)).abs().max() <= 1e-4
    assert (io[f"decoded_{prefixes[0]}"] - io[f"decoded_{prefixes[-1]}"]).abs().max() > 0.1  # prefixes differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_official_parity_and_adaptive_on_gpu(parity, monkeypatch):
    """The same on a GPU with TF32 off (TF32 matmuls alone move decodes by ~1e-2), and the adaptive
    search with ragged decodes on the device."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model, io, prefixes = parity
    model = copy.deepcopy(model).cuda()
    x = io["images"].cuda()
    assert torch.equal(model.encode(x).cpu(), io["ids"])
    for k in prefixes:
        assert (model.decode(io["ids"][:, :k].cuda()).cpu() - io[f"decoded_{k}"].clamp(0, 1)).abs().max() <= 1e-4
    out = model.encode(x, target="psnr>=-100")
    assert out.lengths.tolist() == [1, 1] and out.ids[0].device.type == "cuda"


def test_layout_mixups_and_titok_checkpoints_are_refused(tmp_path):
    state = official_state()
    with pytest.raises(CheckpointError, match="legacy"):  # One-D-Piece's encoder only has the legacy layout
        convert_one_d_piece_state_dict(state, fixture_model(legacy_layout=False))
    titok_like = {**state, "latent_tokens": state["latent_tokens"][:4]}
    with pytest.raises(CheckpointError, match="latent tokens"):
        convert_one_d_piece_state_dict(titok_like, fixture_model())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="titok models"):  # the TiTok source into a One-D-Piece model
        convert_checkpoint("official-titok", tmp_path, fixture_model())


# -- contract -------------------------------------------------------------------------------------------
def test_contract_any_prefix(nano):
    x = smooth_images(3, 32, 0)
    ids = nano.encode(x)
    assert ids.shape == (3, 16) and ids.dtype == torch.int64
    assert nano.variable_length and nano.token_lengths() == range(1, 17)
    for k in (1, 5, 16):
        prefix = nano.encode(x, num_tokens=k)
        assert torch.equal(prefix, ids[:, :k])
        out = nano.decode(prefix)
        assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(nano.encode(x), ids)  # deterministic


def test_mixed_lengths_decode_in_one_batch(nano):
    ids = nano.encode(smooth_images(4, 32, 1))
    lengths = torch.tensor([1, 7, 16, 3])
    together = nano.decode(ids, lengths=lengths)
    padded = ids.clone()
    padded[0, 1:] = nano.vocab_size + 5  # padding beyond each length is ignored (even out-of-vocab ids)
    assert torch.allclose(nano.decode(padded, lengths=lengths), together)
    for b, k in enumerate(lengths.tolist()):
        alone = nano.decode(ids[b:b + 1, :k])[0]
        assert (together[b] - alone).abs().max() < 1e-5
    ragged = [ids[b, :k] for b, k in enumerate(lengths.tolist())]  # a list of mixed lengths
    assert (nano.decode(ragged) - together).abs().max() < 1e-5


def test_save_load_identical_ids(nano, tmp_path):
    x = smooth_images(2, 32, 2)
    nano.save_pretrained(tmp_path / "odp")
    loaded = zoo.from_pretrained(str(tmp_path / "odp"))
    assert type(loaded).__name__ == "OneDPiece" and loaded.num_tokens == 16
    assert torch.equal(loaded.encode(x), nano.encode(x))
    assert torch.equal(loaded.encode(x, num_tokens=3), nano.encode(x, num_tokens=3))


def test_bad_input(nano):
    x = smooth_images(2, 32, 3)
    for k in (0, 17, -1, 2.5, True):
        with pytest.raises(InputError, match="num_tokens"):
            nano.encode(x, num_tokens=k)
    ids = nano.encode(x)
    with pytest.raises(InputError, match="between 1 and 16"):
        nano.decode(torch.cat([ids, ids[:, :1]], dim=1))
    with pytest.raises(InputError, match="empty"):
        nano.decode([])
    padded, lengths = RaggedIds([ids[0, :3], ids[1]], torch.tensor([3, 16]), 16).pad(nano.vocab_size)
    with pytest.raises(InputError, match="lengths"):  # mixed lengths padded, lengths not given
        nano.decode(padded)
    with pytest.raises(InputError, match="lengths must be in"):
        nano.decode(ids, lengths=torch.tensor([0, 3]))
    with pytest.raises(InputError, match="shape"):
        nano.decode(ids, lengths=torch.tensor([3]))
    with pytest.raises(InputError, match="not both"):
        nano.encode(x, num_tokens=3, target="psnr>=20")
    with pytest.raises(InputError):
        RaggedIds([], torch.zeros(0, dtype=torch.long), 16)


# -- Tail Token Drop training (an option of the shared LightningModule) -----------------------------
@pytest.mark.parametrize("mode", ["per_batch", "per_sample"])
def test_tail_token_drop_trains(mode):
    torch.manual_seed(0)
    model = zoo.create("one_d_piece_nano_32", image_size=16, patch_size=4, num_tokens=8, codebook_size=64,
                       encoder_width=64, decoder_width=64)
    module = ImageTokenizerModule(model=model, token_drop={"mode": mode, "min": 2}, l1_weight=0.0, l2_weight=1.0).train()
    data = smooth_images(32, 16, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seen, losses = set(), []
    for step in range(30):
        loss, _, out = module.reconstruction_losses(data[(torch.arange(8) + 8 * step) % 32])
        assert out.reconstruction.shape == (8, 3, 16, 16)
        seen.update([out.extras["num_tokens"]] if mode == "per_batch" else out.extras["lengths"].tolist())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(seen) >= 2 and max(seen) <= 8 and len(seen) > 3
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_per_batch_drop_cuts_the_tokens_as_the_official_code():
    torch.manual_seed(0)
    model = zoo.create("one_d_piece_nano_32", image_size=16, patch_size=4, num_tokens=8)
    module = ImageTokenizerModule(model=model, token_drop={"mode": "per_batch"}).train()
    model.quantizer.eval()  # no EMA codebook update, so ids_to_vectors gives the codes the decoder saw
    x = smooth_images(2, 16, 5)
    torch.manual_seed(3)
    out = module.forward_tokenizer(x)
    k = out.extras["num_tokens"]
    torch.manual_seed(3)
    assert int(torch.randint(1, 9, ())) == k  # k ~ Uniform{1..N} from torch's RNG, once per batch
    with torch.no_grad():
        cut = model.decode_latents(model.quantizer.ids_to_vectors(out.ids[:, :k]))
    assert (out.reconstruction.detach() - cut).abs().max() < 1e-5


def test_token_drop_config_errors():
    model = zoo.create("one_d_piece_nano_32", image_size=16, patch_size=4, num_tokens=8)
    for bad in ({"mode": "per_token"}, {"min": 0}, {"min": 9}, {"mode": "per_batch", "max": 3}):
        with pytest.raises(ConfigError, match="token_drop"):
            ImageTokenizerModule(model=model, token_drop=bad)
    with pytest.raises(ConfigError, match="variable-length"):
        ImageTokenizerModule(model=zoo.create("titok_nano_32", image_size=16, patch_size=4, num_tokens=8),
                             token_drop={"mode": "per_batch"})


def test_trained_nano_error_falls_as_k_grows(trained):
    x = smooth_images(16, trained.input_size, 6)
    ids = trained.encode(x)
    errors = [float(F.mse_loss(trained.decode(ids[:, :k]), x)) for k in (1, 2, 4, 8, 16, 32)]
    assert all(a >= b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.8 * errors[0], errors


# -- adaptive length -------------------------------------------------------------------------------------
class MonotoneToy(torch.nn.Module):
    """A variable-length 'tokenizer' whose reconstruction of image b with k tokens is the image plus
    noise of size scale[b] / k: quality grows with k at a per-image rate."""

    variable_length = True
    input_size = 8
    num_tokens = 64
    vocab_size = 10

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.scale = scale
        self.images: torch.Tensor | None = None
        self.calls = 0

    def token_lengths(self) -> range:
        return range(1, self.num_tokens + 1)

    def encode(self, images, num_tokens=None):
        self.images = images  # ids carry the image index in their first token
        ids = torch.zeros(images.shape[0], num_tokens, dtype=torch.long)
        ids[:, 0] = torch.arange(images.shape[0])
        return ids

    def decode(self, ids):
        self.calls += 1
        rows = ids[:, 0]
        noise = torch.sin(torch.arange(3 * 64.0)).reshape(1, 3, 8, 8) * 0.5
        return (self.images[rows] + noise * (self.scale[rows] / ids.shape[1])[:, None, None, None]).clamp(0, 1)


def linear_shortest(model, images, threshold):
    ids = model.encode(images, num_tokens=model.num_tokens)
    out = []
    for b in range(images.shape[0]):
        ks = [k for k in model.token_lengths()
              if float(psnr(images[b:b + 1], model.decode(ids[b:b + 1, :k]))) >= threshold]
        out.append(ks[0] if ks else None)
    return out


def test_adaptive_equals_linear_search_on_monotone_quality():
    scale = torch.tensor([0.01, 0.5, 1.0, 2.0, 4.0, 8.0, 40.0])
    toy = MonotoneToy(scale)
    images = torch.full((7, 3, 8, 8), 0.5)
    for threshold in (20.0, 30.0):
        toy.calls = 0
        out = encode_adaptive(toy, images, f"psnr>={threshold}")
        calls, linear = toy.calls, linear_shortest(toy, images, threshold)
        for b, k in enumerate(out.lengths.tolist()):
            if linear[b] is None:
                assert b in out.unreached and k == 64
            else:
                assert b not in out.unreached and k == linear[b]
        assert int(out.decodes.max()) <= 2 * math.ceil(math.log2(64)) + 1
        assert calls <= 2 * math.ceil(math.log2(64)) * 7  # batched: one call per round and distinct length
        assert calls < 64 * 7 / 2  # far fewer than a linear search


def test_adaptive_on_trained_nano(trained):
    x = smooth_images(8, trained.input_size, 7)
    full = trained.decode(trained.encode(x))
    threshold = float(psnr(x, full).median()) - 0.5  # reachable for most images, not from one token
    out = trained.encode(x, target=f"psnr>={threshold}")
    assert isinstance(out, RaggedIds) and len(out) == 8 and out.num_tokens == 32
    n, ids = trained.num_tokens, trained.encode(x)
    for b in range(8):
        k = int(out.lengths[b])
        assert out.ids[b].shape == (k,) and torch.equal(out.ids[b], ids[b, :k])
        score = float(psnr(x[b:b + 1], trained.decode(out.ids[b][None])))
        if b in out.unreached:
            assert k == n and score < threshold
            continue
        assert score >= threshold - 1e-4  # meets the target
        fixed = [g for g in (1, 2, 4, 8, 16, 32) if float(psnr(x[b:b + 1], trained.decode(ids[b:b + 1, :g]))) >= threshold]
        assert fixed and k <= fixed[0]  # never longer than the fixed power-of-two search
    assert int(out.decodes.max()) <= 2 * math.ceil(math.log2(n)) + 1
    padded, lengths = out.pad(pad_id=trained.vocab_size)
    assert padded.shape == (8, n) and torch.equal(lengths, out.lengths)
    for b, k in enumerate(lengths.tolist()):
        assert (padded[b, k:] == trained.vocab_size).all() and torch.equal(padded[b, :k], out.ids[b])
    assert (trained.decode(padded, lengths=lengths) - trained.decode(out)).abs().max() < 1e-5


def test_adaptive_unreachable_target_names_the_images(nano):
    x = smooth_images(3, 32, 8)
    out = nano.encode(x, target="psnr>=90")
    assert out.unreached == [0, 1, 2] and out.lengths.tolist() == [16, 16, 16]
    assert torch.equal(torch.stack(out.ids), nano.encode(x))
    easy = nano.encode(x, target={"psnr": -10})  # any reconstruction meets it: one token each
    assert easy.lengths.tolist() == [1, 1, 1] and easy.unreached == []


def test_adaptive_targets_parse_and_fail_clearly(nano, monkeypatch):
    assert parse_target("psnr=25").threshold == 25 and parse_target("ssim >= 0.8").metric == "ssim"
    assert parse_target({"metric": "lpips", "threshold": 0.2}).higher_is_better is False
    for bad in ("psnr<=25", "lpips>=0.1", "fid>=3", "psnr", "psnr>=abc", 25):
        with pytest.raises(InputError):
            parse_target(bad)
    # no LPIPS weights (as offline) -> a clear error, not a silent answer
    monkeypatch.setattr(adaptive, "load_lpips", lambda net, device: (None, "vgg16-397923af.pth is missing"))
    with pytest.raises(InputError, match="LPIPS.*vgg16"):
        nano.encode(smooth_images(1, 32, 9), target="lpips<=0.3")
    with pytest.raises(InputError, match="range"):
        encode_adaptive(zoo.create("titok_nano_32", image_size=32, num_tokens=16), smooth_images(1, 32, 9), "psnr>=20")


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_tokenize_num_tokens_and_target(nano, tmp_path, capsys):
    from zoo.data import save_image

    nano.save_pretrained(tmp_path / "m")
    paths = []
    for i, image in enumerate(smooth_images(2, 32, 10)):
        paths.append(tmp_path / f"{i}.png")
        save_image(image, paths[-1])
    assert cli_main(["tokenize", *map(str, paths), "--model", str(tmp_path / "m"), "--num-tokens", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["ids"]) for r in rows] == [5, 5]
    assert cli_main(["tokenize", *map(str, paths), "--model", str(tmp_path / "m"), "--target", "psnr=90"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["length"] for r in rows] == [16, 16] and not any(r["reached"] for r in rows)
    assert "could not reach" in captured.err and str(paths[0]) in captured.err
    assert cli_main(["tokenize", str(paths[0]), "--model", str(tmp_path / "m"), "--num-tokens", "40"]) == 2
