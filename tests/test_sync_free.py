"""No host synchronisation on the hot path: quantizer eval forwards, ids_to_vectors, encode/decode.

On a CPU the same code paths are proven sync-free by running them on the ``meta`` device, where any
operation that needs a tensor's values on the host (``.item()``, ``bool(tensor)``, ``nonzero``,
boolean-mask indexing, ``bincount``) raises. They also must give the same numbers as the simple
(syncing) reference computations they replaced. With CUDA, the forwards run under
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import InputError
from zoo.quantize import UsageTracker, make_quantizer
from zoo.quantize.base import code_counts
from zoo.validation import check_ids, check_images

SPECS = {
    "vq": dict(dim=12, codebook_size=64),
    "vq_euclidean_factorized": dict(dim=16, codebook_size=48, codebook_dim=6, use_cosine=False),
    "fsq": dict(levels=(8, 5, 5, 5), dim=10),
    "lfq": dict(dim=8, codebook_size=256),
    "rvq": dict(dim=8, codebook_size=32, num_levels=3),
    "rfsq": dict(dim=8, levels=(8, 5, 5), num_levels=3),
}


def _quantizer(name: str):
    torch.manual_seed(0)
    return make_quantizer(name.split("_")[0], **SPECS[name]).eval()


# -- reference statistics, computed the simple way (masks, per-level loop) ------------------------------
def reference_stats(ids: torch.Tensor, k: int) -> dict[str, float]:
    flat = ids.reshape(-1, ids.shape[-1]) if ids.ndim == 3 else ids.reshape(-1, 1)
    out, usages, perps = {}, [], []
    for level in range(flat.shape[1]):
        col = flat[:, level]
        col = col[col >= 0]
        if col.numel() == 0 and flat.shape[1] > 1:
            continue
        counts = torch.bincount(col, minlength=k).double()
        probs = counts / counts.sum().clamp_min(1)
        perp = float(torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum()))
        usage = float((counts > 0).double().mean())
        usages.append(usage)
        perps.append(perp)
        if flat.shape[1] > 1:
            out[f"usage_l{level}"], out[f"perplexity_l{level}"] = usage, perp
    out["usage"], out["perplexity"] = sum(usages) / len(usages), sum(perps) / len(perps)
    return out


@pytest.mark.parametrize("levels", [1, 3])
def test_usage_stats_equal_simple_reference(levels):
    g = torch.Generator().manual_seed(levels)
    k = 50
    tracker = UsageTracker(k, levels).eval()
    for trial in range(4):
        shape = (3, 40) if levels == 1 else (3, 40, levels)
        ids = torch.randint(0, k if trial != 1 else 4, shape, generator=g)  # trial 1: a collapsed codebook
        if levels > 1 and trial >= 2:
            ids[..., 2] = -1  # level dropped by quantizer dropout
        if levels > 1 and trial == 3:
            ids[:, :10, 1] = -1  # some rows dropped
        stats = tracker.update(ids)
        ref = reference_stats(ids, k)
        for key, value in ref.items():
            assert float(stats[key]) == pytest.approx(value, rel=1e-6, abs=1e-7), key


def test_code_counts_equal_bincount_per_level():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(-1, 7, (4, 9, 3), generator=g)
    counts = code_counts(ids, 7)
    for level in range(3):
        col = ids[..., level].reshape(-1)
        assert torch.equal(counts[level], torch.bincount(col[col >= 0], minlength=7).float())
    single = torch.randint(0, 7, (4, 9), generator=g)
    assert torch.equal(code_counts(single, 7)[0], torch.bincount(single.reshape(-1), minlength=7).float())


def test_training_usage_window_matches_reference():
    tracker = UsageTracker(10, 1, window=2).train()
    seen = []
    for step, code_set in enumerate(([0, 1], [2], [3], [3])):
        ids = torch.tensor([code_set])
        stats = tracker.update(ids)
        seen.append(set(code_set))
        recent = set().union(*seen[-2:])  # codes hit in the last 2 calls
        assert float(stats["usage"]) == pytest.approx(len(recent) / 10), step


# -- sync-free by construction: the meta device has no values to read --------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_quantizer_eval_needs_no_values_on_host(name):
    q = _quantizer(name)
    x = torch.randn(2, 30, q.dim)
    ref = q(x)
    q_meta = q.to("meta")
    out = q_meta(x.to("meta"))  # would raise on .item()/bool()/nonzero/mask indexing/bincount
    assert out.ids.shape == ref.ids.shape and out.quantized.shape == ref.quantized.shape
    assert set(out.aux.stats) == set(ref.aux.stats)
    vectors = q_meta.ids_to_vectors(ref.ids.to("meta"))
    assert vectors.shape == x.shape


def test_titok_encode_decode_need_no_values_on_host(nano):
    images = torch.rand(2, 3, 32, 32)
    ids = nano.encode(images)
    model = zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval().to("meta")
    assert model.encode(images.to("meta")).shape == ids.shape
    assert model.decode(ids.to("meta")).shape == images.shape


def test_value_checks_run_on_cpu_and_follow_the_setting(monkeypatch):
    q = _quantizer("fsq")
    bad = torch.randn(1, 4, q.dim)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or Inf"):
        q(bad)
    with pytest.raises(InputError, match=r"\[0, 64\)"):
        check_ids(torch.tensor([[0, 64]]), 64, None)
    with pytest.raises(InputError, match="range"):
        check_images(torch.full((1, 3, 4, 4), 2.0), 4)
    # tensors on another device skip the value checks by default (no GPU sync): meta stands in here
    check_ids(torch.tensor([[0, 64]], device="meta"), 64, None)
    check_images(torch.full((1, 3, 4, 4), 2.0, device="meta"), 4)
    monkeypatch.setenv("ZOO_VALUE_CHECKS", "off")
    q(bad)  # no check at all
    monkeypatch.setenv("ZOO_VALUE_CHECKS", "sometimes")
    with pytest.raises(InputError, match="ZOO_VALUE_CHECKS"):
        q(torch.randn(1, 4, q.dim))


# -- CUDA: the real thing --------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _NoSync:
    def __enter__(self):
        torch.cuda.synchronize()
        self.before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(self.before)


@cuda
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_quantizer_eval_without_sync(name, dtype):
    q = _quantizer(name).cuda()
    x = torch.randn(4, 257, q.dim, device="cuda", dtype=dtype)
    warm = q(x)  # compiles kernels, caches constants on the device
    ids_ref = warm.ids.clone()
    with _NoSync():
        out = q(x)
        vectors = q.ids_to_vectors(out.ids)
        stats = dict(out.aux.stats)
    assert torch.equal(out.ids, ids_ref)
    assert vectors.shape == x.shape and set(stats) >= {"usage", "perplexity"}


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_titok_encode_decode_without_sync(dtype):
    torch.manual_seed(0)
    model = zoo.create("titok_nano_32").eval().cuda().to(dtype)
    images = torch.rand(8, 3, 64, 64, device="cuda", dtype=dtype)
    ids = model.encode(images)
    model.decode(ids)
    with _NoSync():
        ids2 = model.encode(images)
        recon = model.decode(ids2)
    assert torch.equal(ids, ids2) and recon.shape == images.shape


def test_code_usage_counts_on_the_ids_device_and_reports_bad_ids_later():
    from zoo.metrics.codebook import CodeUsage

    cpu, meta = CodeUsage(8), CodeUsage(8)
    ids = torch.tensor([[0, 1], [2, 3]])
    cpu.update(ids)
    meta.update(ids.to("meta"))  # no host read: the counts stay on the meta device
    assert meta.counts.device.type == "meta" and cpu.usage() == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"\[0, 8\)"):  # CPU ids: at once
        cpu.update(torch.tensor([[8]]))
    lazy = CodeUsage(8)
    lazy.counts = torch.zeros(1, 9, dtype=torch.float64)
    lazy.counts[0, -1] = 2  # as an update of device ids outside the vocabulary leaves it
    with pytest.raises(InputError, match="2 token id"):
        lazy.usage()
