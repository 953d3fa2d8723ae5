"""Official EnCodec / DAC weights: output parity with fixtures made by the official packages, key maps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.convert.dac import convert_dac_state_dict
from zoo.convert.encodec import convert_encodec_state_dict
from zoo.errors import CheckpointError
from zoo.hub import load_state
from zoo.models.codec import AudioCodec, CodecConfig
from zoo.registry import make_config

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(os.environ.get("ZOO_SHARED_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))
CONVERTERS = {"encodec": convert_encodec_state_dict, "dac": convert_dac_state_dict}
CASES = sorted((family, p.name) for family in CONVERTERS for p in (FIXTURES / family).iterdir() if p.is_dir())


def _load(family: str, case: str):
    folder = FIXTURES / family / case
    meta = json.loads((folder / "case.json").read_text())
    model = AudioCodec(make_config(CodecConfig, meta["zoo_config"]), name=f"{family}_{case}")
    load_state(model, CONVERTERS[family](load_file(str(folder / "official.safetensors")), model), source=str(folder))
    return model.eval(), load_file(str(folder / "io.safetensors"))


@pytest.mark.parametrize("family,case", CASES)
def test_official_output_parity(family, case):
    model, io = _load(family, case)
    for n in sorted(int(k.split("_")[1]) for k in io if k.startswith("codes_")):
        ids = model.encode(io["wav"], num_levels=n)
        assert torch.equal(ids, io[f"codes_{n}"].long()), f"{family}/{case}: codes differ at {n} levels"
    full = io[f"codes_{model.num_levels}"].long()
    decoded = model.decode(full)
    assert decoded.shape == io["decoded"].shape and decoded.shape[-1] == model.decoded_length(full.shape[-1])
    assert (decoded - io["decoded"]).abs().max() <= 1e-4


def test_encodec_bandwidths_select_official_levels():
    model, io = _load("encodec", "causal_weight_norm_mono")
    for n, bw in zip((1, 2, 4), model.bandwidths):
        assert torch.equal(model.encode(io["wav"], bandwidth=bw), io[f"codes_{n}"].long())


def test_converted_round_trip_through_save_pretrained(tmp_path):
    model, io = _load("dac", "rates_2_5")
    model.save_pretrained(tmp_path / "m")
    assert torch.equal(zoo.from_pretrained(tmp_path / "m").encode(io["wav"]), io["codes_3"].long())


def test_wrong_checkpoints_are_named():
    model, _ = _load("dac", "rates_2_4")
    encodec_state = load_file(str(FIXTURES / "encodec" / "causal_weight_norm_mono" / "official.safetensors"))
    with pytest.raises(CheckpointError, match="not an official DAC checkpoint"):
        convert_dac_state_dict(encodec_state, model)
    dac_state = load_file(str(FIXTURES / "dac" / "rates_2_4" / "official.safetensors"))
    with pytest.raises(CheckpointError, match="not an official EnCodec checkpoint"):
        convert_encodec_state_dict(dac_state)
    dac_state["encoder.block.9.alpha"] = torch.ones(1)
    with pytest.raises(CheckpointError, match="encoder.block.9.alpha"):
        convert_dac_state_dict(dac_state, model)
    enc_model, _ = _load("encodec", "causal_weight_norm_mono")
    bad = dict(encodec_state)
    del bad["encoder.model.0.conv.conv.weight_g"]
    with pytest.raises(CheckpointError, match="missing"):
        load_state(enc_model, convert_encodec_state_dict(bad), source="test")


def _official_keys(name: str) -> dict[str, torch.Tensor]:
    lines = (REFERENCE / name).read_text().splitlines()[1:]
    out = {}
    for line in lines:
        key, shape, dtype = line.split("\t")
        out[key] = torch.zeros(json.loads(shape), dtype=torch.bool if dtype == "bool" else torch.float32)
    return out


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the shared reference key lists are not present")
@pytest.mark.parametrize("variant,keys", [("encodec_24khz", "official_encodec_24khz.keys.tsv"),
                                          ("encodec_48khz", "official_encodec_48khz.keys.tsv"),
                                          ("dac_44khz", "official_dac_44khz.keys.tsv"),
                                          ("dac_16khz", "official_dac_16khz.keys.tsv")])
def test_every_official_key_maps_with_its_shape(variant, keys):
    model = zoo.create(variant)
    conv = CONVERTERS[variant.split("_")[0]]
    state = conv(_official_keys(keys), model)
    own = model.state_dict()
    assert set(state) == set(own)
    assert all(tuple(state[k].shape) == tuple(own[k].shape) for k in own)


def test_zoo_convert_reads_official_dac_pickle(tmp_path):
    from zoo.convert import convert_checkpoint

    folder = FIXTURES / "dac" / "rates_2_5"
    meta = json.loads((folder / "case.json").read_text())
    state = load_file(str(folder / "official.safetensors"))
    torch.save({"state_dict": state, "metadata": {"kwargs": meta["official"]["kwargs"]}}, tmp_path / "weights.pth")
    model = AudioCodec(make_config(CodecConfig, meta["zoo_config"]), name="dac_case")
    model = convert_checkpoint("official-dac", tmp_path, model)
    io = load_file(str(folder / "io.safetensors"))
    assert torch.equal(model.encode(io["wav"]), io["codes_3"].long())


def test_zoo_convert_reads_the_official_encodec_th_file(tmp_path):
    """The official EnCodec release is a pickle named ``*.th``: it converts as it is (weights_only)."""
    from zoo.convert import convert_checkpoint

    case = sorted(p for p in (FIXTURES / "encodec").iterdir() if p.is_dir())[0]
    meta = json.loads((case / "case.json").read_text())
    torch.save(load_file(str(case / "official.safetensors")), tmp_path / "encodec_24khz-d7cc33bc.th")
    model = AudioCodec(make_config(CodecConfig, meta["zoo_config"]), name="encodec_case")
    model = convert_checkpoint("official-encodec", tmp_path, model)  # found by its official file name
    reference, _ = _load("encodec", case.name)
    wav = 0.1 * torch.randn(1, model.channels, 4 * model.hop_length, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.encode(wav), reference.encode(wav))
