"""Shared contract of every quantizer, plus what is special to each (options, residual prefixes, errors)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from vector_quantize_pytorch import VectorQuantize

from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.quantize import (
    FiniteScalarQuantizer,
    FSQConfig,
    LookupFreeQuantizer,
    Quantizer,
    ResidualFiniteScalarQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
    VQConfig,
    make_quantizer,
)

SPECS = {
    "vq_cosine": ("vq", dict(dim=12, codebook_size=64)),
    "vq_euclidean_factorized": ("vq", dict(dim=16, codebook_size=48, codebook_dim=6, use_cosine=False)),
    "vq_learnable": ("vq", dict(dim=8, codebook_size=32, use_cosine=False, learnable_codebook=True)),
    "vq_rotation_kmeans_deadcode": ("vq", dict(dim=8, codebook_size=32, use_cosine=False, rotation_trick=True,
                                               kmeans_init=True, dead_code_threshold=1.0)),
    "fsq_flextok": ("fsq", dict(levels=(8, 8, 8, 5, 5, 5), dim=10)),
    "lfq": ("lfq", dict(dim=8, codebook_size=256)),
    "rvq_dropout": ("rvq", dict(dim=8, codebook_size=32, num_levels=3, quantizer_dropout=True)),
    "rfsq_dropout": ("rfsq", dict(dim=8, levels=(8, 5, 5), num_levels=3, quantizer_dropout=True)),
}


def build(name: str) -> Quantizer:
    kind, options = SPECS[name]
    torch.manual_seed(0)
    q = make_quantizer(kind, **options)
    q.train()
    q(torch.randn(2, 40, q.dim))  # one training step: k-means init, EMA
    q.spec_name = name
    return q.eval()


@pytest.fixture(params=sorted(SPECS))
def quantizer(request) -> Quantizer:
    return build(request.param)


def latents(q: Quantizer, b: int = 2, n: int = 30, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, n, q.dim, generator=torch.Generator().manual_seed(seed))


# -- the contract ------------------------------------------------------------------------------------
def test_shapes_and_id_range(quantizer):
    x = latents(quantizer)
    quantized, ids, aux = quantizer(x)
    assert quantized.shape == x.shape and quantized.dtype == x.dtype
    want = (2, 30) if quantizer.num_levels == 1 else (2, 30, quantizer.num_levels)
    assert ids.shape == want and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < quantizer.codebook_size
    assert aux.loss.ndim == 0 and float(aux.loss) == 0.0  # no loss in eval
    assert quantizer.bits_per_token == pytest.approx(quantizer.num_levels * math.log2(quantizer.codebook_size))


def test_ids_vectors_round_trip(quantizer):
    x = latents(quantizer)
    quantized, ids, _ = quantizer(x)
    vectors = quantizer.ids_to_vectors(ids)
    assert vectors.shape == x.shape
    torch.testing.assert_close(vectors, quantized, rtol=1e-5, atol=1e-6)


def test_deterministic_in_eval(quantizer):
    x = latents(quantizer)
    a, b = quantizer(x), quantizer(x)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.quantized, b.quantized)


def test_eval_ids_equal_library_forward(quantizer):
    """The fused/chunked eval path gives exactly the ids of vector-quantize-pytorch's own forward."""
    x = latents(quantizer, n=200, seed=2)
    ours = quantizer(x)
    quantizer.config.lookup_backend = "library"
    try:
        lib = quantizer(x)
    finally:
        quantizer.config.lookup_backend = "auto"
    assert torch.equal(ours.ids, lib.ids)
    torch.testing.assert_close(ours.quantized, lib.quantized, rtol=0, atol=0)


def test_gradient_flows_through_straight_through(quantizer):
    quantizer.train()
    x = latents(quantizer).requires_grad_(True)
    quantized, ids, aux = quantizer(x)
    weights = torch.randn_like(quantized)
    ((quantized * weights).sum() + aux.loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_usage_statistics(quantizer):
    quantizer.train()
    for seed in range(3):
        out = quantizer(latents(quantizer, seed=seed))
    stats = out.aux.stats
    assert 0.0 < float(stats["usage"]) <= 1.0
    assert 1.0 <= float(stats["perplexity"]) <= quantizer.codebook_size
    if quantizer.num_levels > 1:
        assert "usage_l0" in stats and "perplexity_l0" in stats
    quantizer.eval()
    eval_stats = quantizer(latents(quantizer)).aux.stats
    if quantizer.num_levels > 1:
        assert {f"usage_l{i}" for i in range(quantizer.num_levels)} <= set(eval_stats)


def test_bad_latents(quantizer):
    d = quantizer.dim
    for bad in (torch.randn(30, d), torch.randn(2, 30, d + 1), torch.ones(2, 3, d, dtype=torch.long)):
        with pytest.raises(InputError):
            quantizer(bad)
    for value in (float("nan"), float("inf")):
        x = latents(quantizer)
        x[0, 3, 0] = value
        with pytest.raises(InputError, match="NaN or Inf"):
            quantizer(x)


def test_bad_ids(quantizer):
    _, ids, _ = quantizer(latents(quantizer))
    too_big = ids.clone()
    too_big.view(-1)[0] = quantizer.codebook_size
    negative = ids.clone()
    negative.view(-1)[0] = -1
    for bad in (too_big, negative, ids.float(), ids[0]):
        with pytest.raises(InputError):
            quantizer.ids_to_vectors(bad)


def test_mismatched_codebook_on_load(quantizer):
    kind, options = SPECS[quantizer.spec_name]
    bigger = dict(options)
    if "codebook_size" in bigger:
        bigger["codebook_size"] *= 2
    elif "levels" in bigger:
        bigger["levels"] = tuple(bigger["levels"]) + (5,)
    other = make_quantizer(kind, **bigger)
    state = other.state_dict()
    if not state:
        pytest.skip("no tensors in the state dict")
    with pytest.raises(CheckpointError, match="shape"):
        quantizer.load_state_dict(state)
    quantizer.load_state_dict(quantizer.state_dict())  # its own state still loads


# -- VQ specifics --------------------------------------------------------------------------------------
def test_titok_configuration_keeps_library_layout():
    q = VectorQuantizer(VQConfig(dim=12, codebook_size=4096, use_cosine=True))
    lib = VectorQuantize(dim=12, codebook_size=4096, use_cosine_sim=True)
    assert {f"vq.{k}" for k in lib.state_dict()} == set(q.state_dict())
    assert q.vq._codebook.embed.shape == (1, 4096, 12) and q.codebook.shape == (4096, 12)
    assert (q.codebook_size, q.dim, q.num_levels, q.bits_per_token) == (4096, 12, 1, 12.0)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(4096))


@pytest.mark.parametrize("cosine", [True, False])
def test_vq_eval_matches_library_on_many_vectors(cosine):
    torch.manual_seed(3)
    q = VectorQuantizer(VQConfig(dim=32, codebook_size=1000, use_cosine=cosine)).eval()
    x = torch.randn(4, 2048, 32)
    lib = q.vq(x)[1]
    assert torch.equal(q(x).ids, lib)


def test_vq_eval_exact_ties_match_library():
    torch.manual_seed(4)
    q = VectorQuantizer(VQConfig(dim=6, codebook_size=40, use_cosine=False)).eval()
    base = torch.randint(-2, 3, (10, 6)).float()
    q.vq._codebook.embed.copy_(torch.cat([base] * 4)[None])
    x = torch.randint(-2, 3, (1, 300, 6)).float()
    ours = q(x).ids
    assert torch.equal(ours, q.vq(x)[1]) and (ours < 10).all()


def test_vq_bf16_model_matches_library():
    torch.manual_seed(5)
    q = VectorQuantizer(VQConfig(dim=16, codebook_size=128, use_cosine=False)).eval().to(torch.bfloat16)
    x = torch.randn(2, 64, 16).to(torch.bfloat16)
    out = q(x)
    assert out.quantized.dtype == torch.bfloat16
    assert torch.equal(out.ids, q.vq(x)[1])


def test_vq_options_take_effect():
    torch.manual_seed(6)
    learn = VectorQuantizer(VQConfig(dim=8, codebook_size=16, use_cosine=False, learnable_codebook=True)).train()
    out = learn(torch.randn(2, 20, 8))
    out.aux.loss.backward()
    assert isinstance(learn.vq._codebook.embed, torch.nn.Parameter) and learn.vq._codebook.embed.grad is not None

    km = VectorQuantizer(VQConfig(dim=8, codebook_size=16, use_cosine=False, kmeans_init=True))
    assert not bool(km.vq._codebook.initted)
    data = torch.randn(1, 256, 8) * 5
    km.train()(data)
    assert bool(km.vq._codebook.initted) and km.codebook.abs().sum() > 0

    dead = VectorQuantizer(VQConfig(dim=8, codebook_size=64, use_cosine=False, dead_code_threshold=2.0,
                                    ema_decay=0.5)).train()
    before = dead.codebook.clone()
    for _ in range(5):
        dead(torch.randn(1, 32, 8) + 10.0)  # far from every code: unused codes expire and restart
    moved = (dead.codebook - before).norm(dim=-1) > 1.0
    assert moved.sum() > 32
    with pytest.raises(ConfigError):
        VQConfig(dim=8, codebook_size=16, use_cosine=True, learnable_codebook=True)


def test_vq_usage_reports_collapse():
    torch.manual_seed(7)
    q = VectorQuantizer(VQConfig(dim=4, codebook_size=64, use_cosine=False)).eval()
    code = q.codebook[5]
    collapsed = code.expand(1, 100, 4).clone()
    stats = q(collapsed).aux.stats
    assert float(stats["usage"]) == pytest.approx(1 / 64) and float(stats["perplexity"]) == pytest.approx(1.0)


# -- FSQ / LFQ specifics -----------------------------------------------------------------------------
def test_fsq_flextok_levels():
    q = FiniteScalarQuantizer(FSQConfig())
    assert q.codebook_size == 64_000 and q.codebook.shape == (64_000, 6)
    assert torch.unique(q.codebook, dim=0).shape[0] == 64_000 and q.codebook.abs().max() <= 1
    ids = torch.tensor([[0, 63_999, 12_345]])
    torch.testing.assert_close(q.ids_to_vectors(ids)[0], q.codebook[ids[0]])


def test_lfq_entropy_loss_in_training():
    q = make_quantizer("lfq", dim=6, entropy_loss_weight=0.5).train()
    out = q(torch.randn(2, 50, 6))
    assert q.codebook_size == 64 and "entropy" in out.aux.losses
    assert torch.isfinite(out.aux.loss) and float(out.aux.loss) != 0.0
    torch.testing.assert_close(out.aux.loss, 0.5 * out.aux.losses["entropy"])


# -- residual specifics ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rvq_dropout", "rfsq_dropout"])
def test_residual_prefix_decoding(name):
    q = build(name)
    x = latents(q, n=64)
    quantized, ids, _ = q(x)
    errors = []
    for levels in range(1, q.num_levels + 1):
        partial = q.ids_to_vectors(ids[..., :levels])
        assert partial.shape == x.shape
        errors.append(float((partial - x).pow(2).mean().detach()))
    torch.testing.assert_close(q.ids_to_vectors(ids), quantized, rtol=1e-5, atol=1e-6)
    if name.startswith("rfsq"):  # finer grids: each level can only help
        assert errors == sorted(errors, reverse=True)
    with pytest.raises(InputError):
        q.ids_to_vectors(ids[..., :0])
    with pytest.raises(InputError):
        q.ids_to_vectors(torch.cat([ids, ids[..., :1]], dim=-1))


@pytest.mark.parametrize("name", ["rvq_dropout", "rfsq_dropout"])
def test_quantizer_dropout_trains_with_random_levels(name):
    q = build(name).train()
    used = set()
    for seed in range(12):
        ids = q(latents(q, seed=seed)).ids
        kept = (ids >= 0).all(dim=(0, 1))
        assert kept[0]  # level 0 always runs
        dropped = ~kept
        assert (ids[..., dropped] == -1).all()
        used.add(int(kept.sum()))
    assert len(used) > 1  # a random number of levels


def test_per_level_stats_and_losses():
    q = make_quantizer("rvq", dim=8, codebook_size=16, num_levels=4).train()
    out = q(torch.randn(2, 50, 8))
    assert {"usage_l3", "perplexity_l3", "commitment_l0", "commitment_l3"} <= set(out.aux.stats) | set(out.aux.losses)
    assert out.aux.loss > 0


# -- factory -------------------------------------------------------------------------------------------
def test_make_quantizer_kinds_and_errors():
    assert isinstance(make_quantizer("fsq"), FiniteScalarQuantizer)
    assert isinstance(make_quantizer("lfq", dim=4), LookupFreeQuantizer)
    assert isinstance(make_quantizer("rvq", dim=4), ResidualVectorQuantizer)
    assert isinstance(make_quantizer("rfsq", dim=4), ResidualFiniteScalarQuantizer)
    with pytest.raises(ConfigError, match="unknown quantizer"):
        make_quantizer("pq")
    with pytest.raises(ConfigError, match="unknown option"):
        make_quantizer("vq", dim=4, codebook_size=8, levels=3)
    with pytest.raises(ConfigError):
        make_quantizer("vq", dim=4)
    with pytest.raises(ConfigError):
        make_quantizer("lfq", dim=4, codebook_size=12)
    with pytest.raises(ConfigError):
        make_quantizer("fsq", levels=(8, 1))
    with pytest.raises(ConfigError):
        make_quantizer("vq", dim=4, codebook_size=8, lookup_backend="cuda")


# -- configs are checked on construction ---------------------------------------------------------------
@pytest.mark.parametrize("kind,options,match", [
    ("fsq", dict(levels=[8.7, 5]), "levels"),                       # refused, never truncated to 8
    ("fsq", dict(levels=[8, True]), "levels"),
    ("fsq", dict(levels="885"), "levels"),
    ("fsq", dict(levels=[]), "levels"),
    ("fsq", dict(levels=[8, 5], dim=2.5), "dim"),
    ("rfsq", dict(dim=4, levels=[3, 1]), "levels"),
    ("vq", dict(dim=4, codebook_size=8, ema_decay=2.0), "ema_decay"),
    ("vq", dict(dim=4, codebook_size=8, ema_decay=float("nan")), "ema_decay"),
    ("vq", dict(dim=4, codebook_size=0), "codebook_size"),
    ("vq", dict(dim=4, codebook_size=-3), "codebook_size"),
    ("vq", dict(dim=4, codebook_size="8"), "codebook_size"),
    ("vq", dict(dim=4, codebook_size=8.0), "codebook_size"),
    ("vq", dict(dim=4, codebook_size=8, use_cosine="yes"), "use_cosine"),
    ("vq", dict(dim=4, codebook_size=8, commitment_weight=-1), "commitment_weight"),
    ("vq", dict(dim=4, codebook_size=8, usage_window=0), "usage_window"),
    ("vq", dict(dim=True, codebook_size=8), "dim"),
    ("lfq", dict(dim=4, codebook_scale=0.0), "codebook_scale"),
    ("lfq", dict(dim=100), "codebook_size"),
    ("rvq", dict(dim=4, ema_decay=2.0), "ema_decay"),
    ("rvq", dict(dim=4, num_levels=0), "num_levels"),
    ("rvq", dict(dim=4, num_levels=2, dropout_min_levels=3), "dropout_min_levels"),
    ("rvq", dict(dim=4, quantizer_dropout=1), "quantizer_dropout"),
    ("rfsq", dict(dim=4, num_levels=2.0), "num_levels"),
])
def test_bad_config_values_are_refused_clearly(kind, options, match):
    with pytest.raises(ConfigError, match=match):
        make_quantizer(kind, **options)


def test_good_config_values_still_accepted():
    import numpy as np
    assert make_quantizer("fsq", levels=[np.int64(8), 5, 5]).levels == [8, 5, 5]
    assert make_quantizer("vq", dim=4, codebook_size=8, ema_decay=1, commitment_weight=0).config.ema_decay == 1.0
    assert make_quantizer("rfsq", dim=4, levels=[2, 3]).codebook_size == 6


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_work(name, dtype):
    q = build(name)
    x = latents(q)
    ref = q(x)
    out = q(x.to(dtype))
    assert out.quantized.dtype == dtype and out.ids.dtype == torch.int64 and out.ids.shape == ref.ids.shape
    if dtype == torch.float64:  # fp64 is computed in fp32: the same ids
        assert torch.equal(out.ids, ref.ids)


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("train", [False, True])
def test_empty_batches(name, train):
    q = build(name).train(train)
    for shape in ((0, 5, q.dim), (2, 0, q.dim)):
        quantized, ids, aux = q(torch.randn(*shape))
        assert quantized.shape == shape and ids.shape[:2] == shape[:2]
        assert torch.isfinite(aux.loss) and torch.isfinite(aux.stats["usage"])


# -- benchmark script ----------------------------------------------------------------------------------
def test_bench_script_prints_json_lines_and_table():
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_quantize.py"
    cases = ["vq-euclidean:300:70:8:float32", "vq-cosine:300:70:8:float32", "fsq:300:64000:6:float32",
             "lfq:300:256:8:float32", "rvq:200:32:8:float32:2", "rfsq:300:1000:3:float32:2"]
    proc = subprocess.run([sys.executable, str(script), "--reps", "1", "--device", "cpu", "--cases", *cases],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TRITON_INTERPRET": "0"})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["quantizer"] for r in rows] == [c.split(":")[0] for c in cases]
    for r in rows:  # no timing asserts: a busy machine can make any ratio round to 0.0
        assert r["ids_equal"] and r["speedup"] >= 0 and r["ours_ms"] > 0 and r["library_ms"] > 0
    assert {"vs_matmul", "lookup_peak_mib", "naive_peak_mib", "mem_vs_naive"} <= set(rows[0])
    assert "| quantizer |" in proc.stderr


def test_bench_models_script_prints_json_lines(capsys):
    import runpy
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_models.py"
    main = runpy.run_path(str(script))["main"]  # in-process: no second torch import
    code = main(["--models", "titok_nano_32", "--batch", "2", "--reps", "1", "--warmup", "0", "--device", "cpu",
                 "--threads", str(torch.get_num_threads()), "--dtypes", "float32", "bfloat16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(r["model"], r["dtype"]) for r in rows] == [("titok_nano_32", "float32"), ("titok_nano_32", "bfloat16")]
    assert all(r["encode_images_per_s"] > 0 and r["decode_images_per_s"] > 0 and r["num_tokens"] == 32 for r in rows)
    assert "encode_vs_fp32" in rows[1] and "| model |" in err
