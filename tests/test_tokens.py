"""Token shards (export, read-back, resume, atomicity, bad input) and the vocabulary helpers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_image_folder
from token_fakes import FakeCodec, FakeRaggedImage, write_clips
from zoo.data import load_image
from zoo.errors import ConfigError, InputError
from zoo.tokens import vocab as V
from zoo.tokens.dataset import TokenDataModule, TokenDataset, collate_tokens
from zoo.tokens.export import read_audio, tokenize_dataset
from zoo.tokens.shards import ShardError, read_manifest

QUIET = dict(num_workers=0, progress=False)


@pytest.fixture(scope="module")
def labelled_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    make_image_folder(root / "cats", 7, size=40, seed=1)
    make_image_folder(root / "dogs", 6, size=40, seed=2)
    return root


def export(model, data, out, **kw):
    return tokenize_dataset(model, data, out, **{"shard_size": 4, "batch_size": 3, **QUIET, **kw})


# -- export and read-back --------------------------------------------------------------------------
def test_export_reads_back_identical(nano, labelled_images, tmp_path):
    # on the CPU, like the expected ids below (a GPU may break near-ties between codes differently)
    manifest = export(nano, labelled_images, tmp_path / "t", model_id="nano", accelerator="cpu")
    files = sorted(p for p in labelled_images.rglob("*") if p.is_file())
    assert manifest["num_items"] == 13 and len(manifest["shards"]) == 4
    assert manifest["classes"] == ["cats", "dogs"]
    tok = manifest["tokenizer"]
    assert tok["vocab_size"] == 1024 and tok["token_shape"] == [16] and tok["variable_length"] is False
    assert manifest["items"]["file"] == [f.relative_to(labelled_images).as_posix() for f in files]
    assert manifest["items"]["sha256"][0] == hashlib.sha256(files[0].read_bytes()).hexdigest()
    ds = TokenDataset(tmp_path / "t")
    expected = nano.encode(torch.cat([load_image(f, 32) for f in files]))
    for i, f in enumerate(files):
        ids, n, label = ds[i]
        assert torch.equal(ids, expected[i]) and n == 16
        assert label == (0 if "cats" in f.parts else 1)
    assert json.loads((tmp_path / "t" / "manifest.json").read_text()) == read_manifest(tmp_path / "t")


def test_resume_skips_finished_shards(nano, labelled_images, tmp_path):
    out = tmp_path / "t"
    export(nano, labelled_images, out)
    calls = []
    original = nano.encode
    nano.encode = lambda x, **kw: calls.append(x.shape[0]) or original(x, **kw)
    try:
        export(nano, labelled_images, out)
        assert calls == []  # nothing left to do
        (out / "shard-00002.safetensors").unlink()
        manifest = export(nano, labelled_images, out)
        assert sum(calls) == 4  # only the missing shard was encoded
        export(nano, labelled_images, out, shard_size=5)  # other settings: every shard is redone
        assert sum(calls) == 4 + 13
    finally:
        del nano.encode
    assert manifest["num_items"] == 13


def test_failed_export_leaves_no_partial_files(nano, labelled_images, tmp_path):
    out = tmp_path / "t"
    original, seen = nano.encode, []

    def flaky(x, **kw):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("device lost")
        return original(x, **kw)

    nano.encode = flaky
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            export(nano, labelled_images, out)
    finally:
        del nano.encode
    names = sorted(p.name for p in out.iterdir())
    assert names == ["shard-00000.safetensors"]  # finished shard kept; no temp file, no manifest
    manifest = export(nano, labelled_images, out)
    assert manifest["num_items"] == 13


def test_unreadable_files_are_skipped_and_listed(nano, tmp_path):
    data = make_image_folder(tmp_path / "imgs", 5, size=36)
    (data / "broken.png").write_bytes(b"not an image")
    manifest = export(nano, data, tmp_path / "t")
    assert manifest["num_items"] == 5 and manifest["data"]["num_skipped"] == 1
    assert manifest["data"]["skipped"][0][0] == "broken.png"
    assert manifest["classes"] == [] and set(manifest["items"]["label"]) == {-1}


def test_corrupt_shard_is_named_and_others_stay_readable(nano, labelled_images, tmp_path):
    out = tmp_path / "t"
    export(nano, labelled_images, out)
    shard = out / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-50])  # truncated
    ds = TokenDataset(out)
    with pytest.raises(ShardError, match="shard-00001"):
        ds[5]
    assert ds[0][1] == 16 and ds[12][1] == 16
    shard.write_bytes(b"\x00" * 3)
    with pytest.raises(ShardError, match="shard-00001.*(corrupt|truncated)"):
        TokenDataset(out)[4]


def test_manifest_mismatch_and_out_of_range_ids(nano, labelled_images, tmp_path):
    out = tmp_path / "t"
    export(nano, labelled_images, out, model_id="nano")
    with pytest.raises(ConfigError, match="another tokenizer.*vocab_size"):
        TokenDataset(out, expect={"id": "nano", "vocab_size": 4096})
    with pytest.raises(ConfigError, match="unknown key"):
        TokenDataset(out, expect={"colour": 1})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tokenizer"]["vocab_size"] = 3  # ids written by a bigger tokenizer than declared
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"shard-00000.*outside the tokenizer's vocabulary \[0, 3\)"):
        TokenDataset(out)[0]
    (out / "manifest.json").write_text("{")
    with pytest.raises(ShardError, match="not valid JSON"):
        TokenDataset(out)
    with pytest.raises(ShardError, match="no manifest.json"):
        TokenDataset(tmp_path)


def test_bad_export_arguments(nano, labelled_images, tmp_path):
    with pytest.raises(InputError, match="fixed-length"):
        export(nano, labelled_images, tmp_path / "t", num_tokens=8)
    with pytest.raises(InputError, match="does not exist"):
        export(nano, tmp_path / "missing", tmp_path / "t")


# -- variable-length and residual ids --------------------------------------------------------------
def test_ragged_and_fixed_prefix_exports(tmp_path):
    data = make_image_folder(tmp_path / "imgs", 9, size=20)
    model = FakeRaggedImage()
    files = sorted(data.iterdir())
    images = torch.cat([load_image(f, 16) for f in files])
    m = export(model, data, tmp_path / "k3", num_tokens=3)
    assert m["tokenizer"]["token_shape"] == [3] and set(m["items"]["length"]) == {3}
    m = export(model, data, tmp_path / "ragged", target="psnr>=20")
    assert m["tokenizer"]["variable_length"] is True
    rows = model.encode(images, target="x")
    assert m["items"]["length"] == [len(r) for r in rows]
    ds = TokenDataset(tmp_path / "ragged", pad_id=-1)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    ids, lengths, labels = batch
    assert ids.shape == (9, max(len(r) for r in rows)) and lengths.tolist() == [len(r) for r in rows]
    for i, r in enumerate(rows):
        assert torch.equal(ids[i, :len(r)], r) and (ids[i, len(r):] == -1).all()


def test_residual_audio_export_and_patterns(tmp_path):
    paths = write_clips(tmp_path / "clips", 7)
    model = FakeCodec()
    m = export(model, tmp_path / "clips", tmp_path / "t")
    assert m["tokenizer"]["ids_layout"] == "BLT" and m["tokenizer"]["token_shape"] == [3, None]
    assert m["classes"] == ["music", "speech"]
    ds = TokenDataset(tmp_path / "t")
    order = sorted(paths)
    for i, p in enumerate(order):
        ref = model.encode(read_audio(p.read_bytes(), 8000)[None, None])[0]
        ids, n, _ = ds[i]
        assert torch.equal(ids, ref) and n == ref.shape[1]
    for pattern in ("interleave", "level_major", "delay"):
        flat = TokenDataset(tmp_path / "t", pattern=pattern)
        assert flat.vocab_size == V.flat_vocab_size(pattern, 32, 3)
        ids, n, _ = flat[2]
        assert ids.ndim == 1 and n == V.flat_length(pattern, 3, ds[2][1])
        assert torch.equal(V.unflatten_levels(ids[None], pattern, 3, 32)[0], ds[2][0])
    dm = TokenDataModule(str(tmp_path / "t"), batch_size=4, pattern="delay")
    dm.setup()
    ids, lengths, labels = next(iter(dm.train_dataloader()))
    assert ids.shape[0] == 4 and ids.shape[1] == int(lengths.max()) and (ids[0, lengths[0]:] == dm.dataset.pad_id).all()
    m2 = export(model, tmp_path / "clips", tmp_path / "bw", bandwidth=2)
    assert m2["tokenizer"]["num_levels"] == 2 and torch.equal(TokenDataset(tmp_path / "bw")[0][0], ds[0][0][:2])


def test_collate_pads_with_declared_id():
    batch = [(torch.tensor([1, 2, 3]), 3, 0), (torch.tensor([4]), 1, 2)]
    ids, lengths, labels = collate_tokens(batch, pad_id=99)
    assert ids.tolist() == [[1, 2, 3], [4, 99, 99]] and lengths.tolist() == [3, 1] and labels.tolist() == [0, 2]


def test_cli_tokenize_dataset(tmp_path, capsys):
    from zoo.cli import main

    data = make_image_folder(tmp_path / "imgs", 3, size=70)
    rc = main(["tokenize-dataset", "--model", "titok_nano_32", "--data", str(data), "--out", str(tmp_path / "t"),
               "--num-workers", "0", "--no-progress", "--accelerator", "cpu"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["items"] == 3 and report["tokens_per_item"] == [32, 32]
    rc = main(["tokenize-dataset", "--model", "titok_nano_32", "--data", str(tmp_path / "nope"), "--out",
               str(tmp_path / "t2"), "--no-progress"])
    assert rc == 2


# -- vocabulary helpers ------------------------------------------------------------------------------
ids_2d = st.integers(1, 3).flatmap(lambda b: st.integers(1, 6).flatmap(
    lambda n: st.lists(st.integers(0, 9), min_size=b * n, max_size=b * n).map(
        lambda v: torch.tensor(v).reshape(b, n))))


@settings(max_examples=60, deadline=None)
@given(ids=ids_2d, offset=st.integers(0, 1000))
def test_llm_ids_round_trip(ids, offset):
    llm = V.to_llm_ids(ids, offset, 10)
    assert llm.shape == (ids.shape[0], ids.shape[1] + 2)
    assert (llm[:, 0] == offset + 10).all() and (llm[:, -1] == offset + 11).all()
    assert torch.equal(V.from_llm_ids(llm, offset, 10), ids)
    text = torch.tensor([5, 6, 7])  # surrounded by text ids
    row = torch.cat([text, llm[0], text])
    assert torch.equal(V.from_llm_ids(row, offset, 10), ids[0])


def test_llm_ids_ragged_and_errors():
    rows = [torch.tensor([1, 2]), torch.tensor([3])]
    llm = V.to_llm_ids(rows, 100, 5)
    assert [r.tolist() for r in llm] == [[105, 101, 102, 106], [105, 103, 106]]
    assert [r.tolist() for r in V.from_llm_ids(llm, 100, 5)] == [[1, 2], [3]]
    with pytest.raises(InputError, match=r"ids must be in \[0, 5\)"):
        V.to_llm_ids(torch.tensor([[5]]), 100, 5)
    with pytest.raises(InputError, match="no begin"):
        V.from_llm_ids(torch.tensor([1, 2]), 100, 5)
    with pytest.raises(InputError, match="no end"):
        V.from_llm_ids(torch.tensor([105, 101]), 100, 5)
    with pytest.raises(InputError, match="between begin and end"):
        V.from_llm_ids(torch.tensor([105, 7, 106]), 100, 5)
    with pytest.raises(InputError, match="inside the token block"):
        V.to_llm_ids(torch.tensor([[1]]), 100, 5, begin_id=102)


grids = st.integers(1, 2).flatmap(lambda b: st.integers(1, 4).flatmap(lambda lv: st.integers(0, 5).flatmap(
    lambda t: st.lists(st.integers(0, 6), min_size=b * lv * t, max_size=b * lv * t).map(
        lambda v: torch.tensor(v, dtype=torch.long).reshape(b, lv, t)))))


@settings(max_examples=80, deadline=None)
@given(ids=grids, pattern=st.sampled_from(V.PATTERNS), offsets=st.booleans())
def test_level_patterns_round_trip(ids, pattern, offsets):
    flat = V.flatten_levels(ids, pattern, 7, level_offsets=offsets)
    levels, frames = ids.shape[1], ids.shape[2]
    if pattern != "parallel":
        assert flat.shape == (ids.shape[0], V.flat_length(pattern, levels, frames))
        assert V.frames_of(pattern, levels, flat.shape[1]) == frames
        if flat.numel():
            assert int(flat.max()) < V.flat_vocab_size(pattern, 7, levels, level_offsets=offsets)
    assert torch.equal(V.unflatten_levels(flat, pattern, levels, 7, level_offsets=offsets), ids)


@settings(max_examples=40, deadline=None)
@given(ids=grids)
def test_delay_pattern_is_exactly_inverted(ids):
    grid = V.delay_pattern(ids, pad_id=-1)
    assert grid.shape[-1] == ids.shape[-1] + ids.shape[1] - 1
    assert torch.equal(V.undelay_pattern(grid), ids)


def test_patterns_known_layout():
    ids = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # 2 levels x 3 frames, vocab 10
    assert V.flatten_levels(ids, "interleave", 10).tolist() == [[1, 14, 2, 15, 3, 16]]
    assert V.flatten_levels(ids, "level_major", 10).tolist() == [[1, 2, 3, 14, 15, 16]]
    assert V.delay_pattern(ids, 0).tolist() == [[[1, 2, 3, 0], [0, 4, 5, 6]]]
    assert V.flatten_levels(ids, "delay", 10).tolist() == [[1, 20, 2, 14, 3, 15, 20, 16]]  # pad = 2 * 10
    with pytest.raises(InputError, match="outside level 1"):
        V.unflatten_levels(torch.tensor([[1, 4]]), "interleave", 2, 10)
    with pytest.raises(InputError, match="unknown residual pattern"):
        V.flatten_levels(ids, "zigzag", 10)
    with pytest.raises(InputError, match="multiple of 2"):
        V.unflatten_levels(torch.tensor([[1, 14, 2]]), "interleave", 2, 10)


def test_every_tokenizer_offers_llm_ids(nano):
    ids = nano.encode(torch.rand(2, 3, 32, 32))
    llm = nano.to_llm_ids(ids, 50_000)
    assert llm.shape == (2, 18) and nano.llm_token_count() == 1026
    assert torch.equal(nano.from_llm_ids(llm, 50_000), ids)
