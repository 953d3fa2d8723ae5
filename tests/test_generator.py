"""The reference AR generator: training on tokens of a nano tokenizer, sampling, CLI round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder
from token_fakes import FakeCodec, FakeRaggedImage, write_clips
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.generate import class_labels, decode_samples, generation_fid, load_generator, sample
from zoo.models.generator import ARGenerator, generator_config, sample_logits
from zoo.tokens.dataset import TokenDataModule
from zoo.tokens.export import tokenize_dataset
from zoo.training.generator import config_for

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gpt_nano.yaml"
QUIET = dict(num_workers=0, progress=False, shard_size=8, batch_size=8)


@pytest.fixture(scope="module")
def nano_tokens(tmp_path_factory, nano):
    root = tmp_path_factory.mktemp("gen")
    make_image_folder(root / "imgs" / "a", 10, size=36, seed=3)
    make_image_folder(root / "imgs" / "b", 10, size=36, seed=4)
    tokenize_dataset(nano, root / "imgs", root / "tokens", model_id="titok_nano_32", **QUIET)
    return root / "tokens"


def tiny(dm: TokenDataModule, **kw) -> ARGenerator:
    torch.manual_seed(0)
    return ARGenerator(config_for(dm.dataset, "gpt_nano", {"width": 32, "depth": 2, "num_heads": 2, **kw}))


def train_steps(gen: ARGenerator, dm: TokenDataModule, steps: int) -> list[float]:
    dm.setup()
    opt = torch.optim.AdamW(gen.parameters(), lr=3e-3)
    batch = next(iter(dm.train_dataloader()))
    losses = []
    for _ in range(steps):
        loss = gen.loss(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_cross_entropy_falls_and_samples_are_valid(nano_tokens):
    dm = TokenDataModule(str(nano_tokens), batch_size=16)
    gen = tiny(dm)
    assert gen.config.vocab_size == 1024 and gen.config.max_len == 16 and gen.config.num_classes == 2
    losses = train_steps(gen, dm, 25)
    assert losses[-1] < losses[0] - 0.5, losses
    gen.eval()
    out = gen.generate(torch.tensor([0, 1, 1]), generator=torch.Generator().manual_seed(0))
    assert out.ids.shape == (3, 16) and out.ids.dtype == torch.long
    assert int(out.ids.min()) >= 0 and int(out.ids.max()) < 1024 and out.lengths.tolist() == [16] * 3


@pytest.mark.parametrize("kw", [dict(), dict(top_k=20, temperature=0.8), dict(top_p=0.9, cfg_scale=3.0),
                                dict(temperature=0.0)])
def test_cached_and_uncached_sampling_agree(nano_tokens, kw):
    dm = TokenDataModule(str(nano_tokens), batch_size=16)
    gen = tiny(dm)
    train_steps(gen, dm, 3)
    gen.eval()
    labels = torch.tensor([0, 1, 0, 1])
    a = gen.generate(labels, use_cache=True, generator=torch.Generator().manual_seed(7), **kw)
    b = gen.generate(labels, use_cache=False, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.ids, b.ids)


def test_variable_length_generation_stops_at_end(tmp_path):
    data = make_image_folder(tmp_path / "imgs", 12, size=20)
    tokenize_dataset(FakeRaggedImage(), data, tmp_path / "t", target="psnr>=1", **QUIET)
    dm = TokenDataModule(str(tmp_path / "t"), batch_size=12)
    gen = tiny(dm)
    assert gen.config.variable_length and gen.num_outputs == 51
    losses = train_steps(gen, dm, 40)
    assert losses[-1] < losses[0]
    gen.eval()
    g = torch.Generator().manual_seed(0)
    out = gen.generate(torch.zeros(8, dtype=torch.long), generator=g)
    for row, n in zip(out.ids, out.lengths.tolist()):
        assert 1 <= n <= 8 and (row[:n] < 50).all() and (row[n:] == gen.end_id).all()
    fixed = gen.generate(torch.zeros(3, dtype=torch.long), length=4, min_length=4, generator=g)
    assert fixed.ids.shape == (3, 4) and fixed.lengths.tolist() == [4, 4, 4]
    images = decode_samples(gen, FakeRaggedImage(), out)
    assert images.shape == (8, 3, 16, 16)


def test_audio_tokens_train_and_decode_to_waveforms(tmp_path):
    write_clips(tmp_path / "clips", 6)
    tokenize_dataset(FakeCodec(), tmp_path / "clips", tmp_path / "t", **QUIET)
    with pytest.raises(ConfigError, match="pattern"):
        config_for(TokenDataModule(str(tmp_path / "t")).dataset, "gpt_nano")
    dm = TokenDataModule(str(tmp_path / "t"), batch_size=6, pattern="delay")
    gen = tiny(dm)
    assert gen.config.vocab_size == 3 * 32 + 1 and gen.config.variable_length
    train_steps(gen, dm, 5)
    gen.eval()
    out = gen.generate(torch.tensor([0, 1]), length=3 * 6, min_length=3 * 6, temperature=0.0)
    clips = decode_samples(gen, FakeCodec(), out)
    assert len(clips) == 2 and clips[0].shape == (1, 4 * 80)  # 6 delayed steps of 3 levels = 4 frames


def test_sample_logits_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    for u in torch.linspace(0, 0.999, 9):
        assert int(sample_logits(logits, u[None], top_k=2)) in (2, 3)
        assert int(sample_logits(logits, u[None], top_p=0.5)) == 3
    assert int(sample_logits(logits, torch.tensor([0.5]), temperature=0.0)) == 3


def test_bad_generation_input(nano_tokens):
    dm = TokenDataModule(str(nano_tokens))
    gen = tiny(dm).eval()
    with pytest.raises(InputError, match="class labels"):
        gen.generate(torch.tensor([5]))
    with pytest.raises(InputError, match="length must be"):
        gen.generate(torch.tensor([0]), length=99)
    with pytest.raises(InputError, match="not one of"):
        class_labels(gen, "zebra", 2)
    with pytest.raises(InputError, match="unknown generator"):
        generator_config("gpt_huge")
    with pytest.raises(ConfigError, match="another tokenizer"):
        TokenDataModule(str(nano_tokens), expect={"name": "titok_l_32"})


def test_recipe_export_and_generate_cli(nano, nano_tokens, tmp_path, capsys, monkeypatch):
    from zoo.cli import main
    from zoo.training.recipe import train

    monkeypatch.chdir(tmp_path)
    sets = [f"data.root={nano_tokens}", f"output_dir={tmp_path / 'run'}", "trainer.max_steps=6",
            "data.batch_size=8", "trainer.val_check_interval=3", "trainer.enable_progress_bar=false",
            "module.warmup_steps=2", "module.generator_overrides={width: 32, depth: 1, num_heads: 2}",
            "trainer.enable_model_summary=false", "model.name=titok_nano_32"]
    trainer = train(RECIPE, overrides=sets)
    assert trainer.global_step == 6
    export = tmp_path / "run" / "export"
    gen = load_generator(export)
    assert gen.config.tokens["tokenizer"]["id"] == "titok_nano_32" and gen.config.tokens["classes"] == ["a", "b"]
    ckpt_gen = load_generator(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), ckpt_gen.state_dict().values()))
    rc = main(["generate", "--generator", str(export), "--class", "b", "-n", "4", "-o", str(tmp_path / "g.png"),
               "--device", "cpu"])
    assert rc == 2 and "makes 32 tokens per image, the generator was trained on 16" in capsys.readouterr().err
    nano.save_pretrained(tmp_path / "nano")  # the (random) tokenizer these shards came from
    rc = main(["generate", "--generator", str(export), "--class", "b", "-n", "4", "-o", str(tmp_path / "g.png"),
               "--cfg", "1.5", "--device", "cpu", "--tokenizer", str(tmp_path / "nano")])
    assert rc == 0 and (tmp_path / "g.png").is_file()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["lengths"] == [16] * 4 and report["tokenizer"] == "titok_nano_32"
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "missing")


def test_generation_fid_uses_the_eval_fid_code(tmp_path):
    data = make_image_folder(tmp_path / "real", 6, size=40)
    feats = lambda x: torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double()  # noqa: E731 (cheap stand-in)
    same = generation_fid(torch.stack([torch.rand(3, 32, 32) for _ in range(6)]), data, feature_extractor=feats)
    assert same["num_real"] == 6 and same["gfid"] > 0 and "biased" in same["note"]
    with pytest.raises(InputError, match="at least 2"):
        generation_fid(torch.rand(1, 3, 32, 32), data, feature_extractor=feats)


def test_sampling_in_batches_is_seeded(nano_tokens):
    gen = tiny(TokenDataModule(str(nano_tokens))).eval()
    labels = torch.tensor([0, 1, 0, 1, 1])
    a = sample(gen, labels, seed=3, batch_size=2)
    b = sample(gen, labels, seed=3, batch_size=2)
    assert torch.equal(a.ids, b.ids) and a.ids.shape == (5, 16)


def test_shipped_nano_generator_decodes_with_its_tokenizer():
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    gen = load_generator(root / "gpt_nano_titok_nano_32")
    from zoo.generate import load_tokenizer_of

    tok = load_tokenizer_of(gen)
    assert tok.name == "titok_nano_32" and gen.config.tokens["classes"][0] == "astronaut"
    out = sample(gen, class_labels(gen, "rocket", 2), seed=0, cfg_scale=2.0)
    images = decode_samples(gen, tok, out)
    assert images.shape == (2, 3, 64, 64) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert images[..., 2, :, :].mean() > images[..., 0, :, :].mean()  # the rocket class is sky blue


def test_save_audio_writes_one_wav_per_clip(tmp_path):
    import soundfile as sf

    from zoo.generate import save_audio

    clips = [torch.zeros(1, 800), torch.full((1, 400), 0.5)]
    paths = save_audio(clips, tmp_path / "gen.wav", 8000)
    assert [p.name for p in paths] == ["gen_000.wav", "gen_001.wav"]
    data, sr = sf.read(paths[1])
    assert sr == 8000 and data.shape == (400,) and abs(float(data.mean()) - 0.5) < 1e-3
    assert save_audio(clips[:1], tmp_path / "one.wav", 8000) == [tmp_path / "one.wav"]
