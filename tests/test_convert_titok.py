"""Official TiTok checkpoints through the converter give the official tokens and images.

The fixtures (tests/fixtures/titok/, made by scripts/make_titok_fixtures.py from the OFFICIAL
bytedance/1d-tokenizer code at tiny sizes) hold official-layout weights, input images, the official
ids and the official decode of those ids, for both official layouts: legacy two-stage (proxy head +
MaskGIT-VQGAN pixel decoder) and fixed single-stage. Also: the layout mix-ups, truncated files,
other families' checkpoints and unknown/missing keys give clear errors; ``zoo convert`` writes a
save_pretrained folder whose card names the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.blocks import ConvPixelDecoder
from zoo.cli import main
from zoo.convert import convert_checkpoint, convert_titok_state_dict, list_converters, read_state_dict
from zoo.errors import CheckpointError, ConfigError
from zoo.models.titok import TiTok, TiTokConfig

FIXTURES = Path(__file__).parent / "fixtures" / "titok"
LAYOUTS = ("legacy_two_stage", "fixed_single_stage")


def official_state(layout: str) -> dict[str, torch.Tensor]:
    """The fixture's official state dict in fp32 (stored as int8 steps of a power of two)."""
    path = FIXTURES / f"{layout}.official.safetensors"
    with safe_open(str(path), "pt") as f:
        exponents = json.loads(f.metadata()["scale_exponents"])
    return {k: v.float() * 2.0 ** -exponents[k] if k in exponents else v for k, v in load_file(str(path)).items()}


def zoo_model(layout: str, **changes) -> TiTok:
    """The zoo TiTok of the fixture's size (the tiny VQGAN decoder set as the official run had it)."""
    spec = json.loads((FIXTURES / f"{layout}.json").read_text())
    model = TiTok(TiTokConfig(**{**spec["zoo_config"], **changes}), name=f"titok_{layout}")
    if spec["pixel_decoder"] and model.config.decoder_head == "proxy":
        pd = spec["pixel_decoder"]
        model.pixel_decoder = ConvPixelDecoder(z_channels=pd["z_channels"], hidden=pd["hidden"],
                                               channel_mult=tuple(pd["channel_mult"]))
    return model


def load_io(layout: str) -> dict[str, torch.Tensor]:
    """Input images (float = uint8 / 255, as the official run had them), official ids and decode."""
    io = load_file(str(FIXTURES / f"{layout}.io.safetensors"))
    io["images"] = io.pop("images_uint8").float() / 255
    return io


def write_official(layout: str, folder: Path, name: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = official_state(layout)
    if name.endswith(".safetensors"):
        save_file(state, str(folder / name))
    else:
        torch.save(state, folder / name)
    return folder / name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_official_ids_and_images(layout, tmp_path):
    io = load_io(layout)
    write_official(layout, tmp_path)
    model = convert_checkpoint("official-titok", tmp_path, zoo_model(layout))
    ids = model.encode(io["images"])
    assert torch.equal(ids, io["ids"]), f"{(ids != io['ids']).float().mean():.1%} of the ids differ"
    with torch.no_grad():
        decoded = model.decode_latents(model.quantizer.ids_to_vectors(io["ids"]))
    assert (decoded - io["decoded"]).abs().max() <= 1e-4
    assert (model.decode(io["ids"]) - io["decoded"].clamp(0, 1)).abs().max() <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_official_ids_and_images_on_gpu(layout, tmp_path):
    """The same on a GPU, with TF32 off (TF32 matmuls alone move the decode by ~1e-2)."""
    io = {k: v.cuda() for k, v in load_io(layout).items()}
    write_official(layout, tmp_path)
    model = convert_checkpoint("official-titok", tmp_path, zoo_model(layout), map_location="cuda")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        assert torch.equal(model.encode(io["images"]), io["ids"])
        with torch.no_grad():
            decoded = model.decode_latents(model.quantizer.ids_to_vectors(io["ids"]))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    assert (decoded - io["decoded"]).abs().max() <= 1e-4


def test_the_other_layout_would_change_the_ids(tmp_path):
    """The fixture tells the layouts apart: the legacy weights in a fixed-layout encoder give other ids."""
    io = load_io("legacy_two_stage")
    model = zoo_model("legacy_two_stage")
    state = convert_titok_state_dict(official_state("legacy_two_stage"), use_cosine=True)
    model.load_state_dict(state)
    assert torch.equal(model.encode(io["images"]), io["ids"])
    model.encoder.legacy_layout = False
    assert not torch.equal(model.encode(io["images"]), io["ids"])


def test_layout_mixups_are_refused(tmp_path):
    legacy = write_official("legacy_two_stage", tmp_path / "legacy")
    fixed = write_official("fixed_single_stage", tmp_path / "fixed")
    with pytest.raises(CheckpointError, match="legacy.*legacy_layout=False"):
        convert_checkpoint("official-titok", legacy, zoo_model("legacy_two_stage", legacy_layout=False))
    with pytest.raises(CheckpointError, match="fixed.*legacy_layout=True"):
        convert_checkpoint("official-titok", fixed, zoo_model("fixed_single_stage", legacy_layout=True))
    with pytest.raises(CheckpointError, match="two-stage.*decoder_head='pixel'"):
        convert_checkpoint("official-titok", legacy, zoo_model("fixed_single_stage"))


def test_official_config_json_is_checked(tmp_path, nano):
    """What the weights cannot show (cosine vs Euclidean codes) is read from the official config.json."""
    spec = json.loads((FIXTURES / "fixed_single_stage.json").read_text())
    write_official("fixed_single_stage", tmp_path / "o")
    config = {"model": {"vq_model": spec["official_vq_model"]}, "dataset": {"preprocessing": {"crop_size": 32}}}
    (tmp_path / "o" / "config.json").write_text(json.dumps(config))
    convert_checkpoint("official-titok", tmp_path / "o", zoo_model("fixed_single_stage"))
    with pytest.raises(CheckpointError, match="use_l2_norm: checkpoint False, titok_fixed_single_stage True"):
        convert_checkpoint("official-titok", tmp_path / "o", zoo_model("fixed_single_stage", use_cosine=True))
    config["model"]["vq_model"]["quantize_mode"] = "vae"
    (tmp_path / "o" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="quantize_mode 'vae'"):
        convert_checkpoint("official-titok", tmp_path / "o", zoo_model("fixed_single_stage"))
    with pytest.raises(CheckpointError, match="already a zoo checkpoint"):
        convert_checkpoint("official-titok", nano.save_pretrained(tmp_path / "zoo"), "titok_nano_32")


def test_truncated_files_are_checkpoint_errors(tmp_path):
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = write_official("fixed_single_stage", tmp_path / name, name)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="corrupt|truncated"):
            convert_checkpoint("official-titok", path, zoo_model("fixed_single_stage"))


def test_pickles_load_weights_only(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"latent_tokens": torch.zeros(1), "payload": object()}, path)  # needs full unpickling
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(path)
    torch.save({"state_dict": {"a": torch.ones(2)}}, tmp_path / "wrapped.bin")
    assert torch.equal(read_state_dict(tmp_path / "wrapped.bin")["a"], torch.ones(2))


def test_other_families_and_keys_are_named(tmp_path):
    encodec_like = {"encoder.model.0.conv.conv.weight": torch.zeros(32, 1, 7),
                    "quantizer.vq.layers.0._codebook.embed": torch.zeros(1024, 128)}
    save_file(encodec_like, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not an official TiTok checkpoint.*another family"):
        convert_checkpoint("official-titok", tmp_path, zoo_model("fixed_single_stage"))
    state = official_state("fixed_single_stage")
    del state["decoder.ln_post.weight"]
    state["encoder.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): \['decoder.ln_post.weight'\].*"
                                              r"unexpected 1 key\(s\): \['encoder.extra_head.weight'\]"):
        convert_titok_state_dict(state, zoo_model("fixed_single_stage"))
    with pytest.raises(ConfigError, match="unknown checkpoint source 'official-nope'"):
        convert_checkpoint("official-nope", tmp_path, "titok_nano_32")


def _official_nano(folder: Path, name: str = "model.safetensors") -> tuple[TiTok, Path]:
    """A titok_nano_32 (fixed layout, single stage) written in the official layout."""
    torch.manual_seed(5)
    ours = zoo.create("titok_nano_32").eval()
    official = {k: v for k, v in ours.state_dict().items() if not k.startswith("quantize.")}
    official["quantize.embedding.weight"] = ours.quantize.codebook * 3.0  # stored unnormalized upstream
    folder.mkdir(parents=True, exist_ok=True)
    if name.endswith(".bin"):
        torch.save(official, folder / name)
    else:
        save_file({k: v.contiguous() for k, v in official.items()}, str(folder / name))
    return ours, folder / name


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_zoo_convert_writes_a_pretrained_folder(name, tmp_path):
    assert "official-titok" in list_converters()
    ours, file = _official_nano(tmp_path / "official", name)
    source = str(file.parent) if name.endswith(".safetensors") else str(file)  # a folder or a file
    out = tmp_path / "converted"
    assert main(["convert", "--from", "official-titok", source, "--model", "titok_nano_32", "-o", str(out)]) == 0
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "official-titok" in card and file.name in card
    loaded = zoo.from_pretrained(str(out))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(x), ours.encode(x))


def test_zoo_convert_bad_input(tmp_path, capsys):
    _official_nano(tmp_path / "official")
    args = ["convert", "--from", "official-titok", str(tmp_path / "official"), "-o", str(tmp_path / "o")]
    assert main(args + ["--model", "dac_16khz" if "dac_16khz" in zoo.list_models() else "nope"]) == 2
    assert main(args[:3] + [str(tmp_path / "missing"), "--model", "titok_nano_32", "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(args + ["--model", "titok_s_128"]) == 2  # single-stage weights, two-stage variant
    assert "single-stage" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "--from", "official-nope", str(tmp_path / "official"), "--model", "titok_nano_32",
              "-o", str(tmp_path / "o")])
