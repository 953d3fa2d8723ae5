"""Property-based tests: any input to a quantizer either works or raises the zoo's own error class.

Over config values, latent shapes, dtypes and value ranges, and id tensors, for every quantizer's
constructor, forward (eval and train) and ``ids_to_vectors``: the only exceptions allowed are
subclasses of :class:`zoo.errors.ZooError`. Kept small (few examples, tiny tensors) to stay fast.
"""

from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from zoo.errors import ZooError  # noqa: E402
from zoo.quantize import make_quantizer  # noqa: E402

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

KINDS = {
    "vq": dict(dim=6, codebook_size=16),
    "vq_factorized": dict(dim=6, codebook_size=16, codebook_dim=3, use_cosine=False),
    "fsq": dict(levels=(5, 4, 3), dim=6),
    "lfq": dict(dim=6, codebook_size=16),
    "rvq": dict(dim=6, codebook_size=16, num_levels=3, quantizer_dropout=True),
    "rfsq": dict(dim=6, levels=(5, 3), num_levels=3),
}
_BUILT: dict = {}


def quantizer(name: str):
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = make_quantizer(name.split("_")[0], **KINDS[name])
    return _BUILT[name]


def works_or_zoo_error(fn, *args):
    try:
        return fn(*args)
    except ZooError:
        return None


# -- configs -----------------------------------------------------------------------------------------------
anything = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=3), st.lists(st.integers(-1, 9), max_size=4),
                     st.lists(st.floats(0, 9), max_size=3))
FIELDS = {
    "vq": ("dim", "codebook_size", "codebook_dim", "use_cosine", "commitment_weight", "ema_decay",
           "learnable_codebook", "kmeans_iters", "dead_code_threshold", "usage_window", "lookup_backend"),
    "fsq": ("levels", "dim", "lookup_backend", "usage_window"),
    "lfq": ("dim", "codebook_size", "entropy_loss_weight", "diversity_gamma", "codebook_scale"),
    "rvq": ("dim", "codebook_size", "num_levels", "dropout_min_levels", "quantizer_dropout", "ema_decay"),
    "rfsq": ("dim", "levels", "num_levels", "dropout_min_levels"),
}


@pytest.mark.parametrize("kind", sorted(FIELDS))
@SETTINGS
@given(data=st.data())
def test_any_config_value_builds_or_raises_config_error(kind, data):
    options = dict(KINDS[kind])
    field = data.draw(st.sampled_from(FIELDS[kind]))
    value = data.draw(anything)
    if field in ("codebook_size", "dim", "levels") and isinstance(value, int) and value > 12:
        value = 12  # keep the codebook (and the usage histogram) small
    if isinstance(value, list) and field == "levels" and math.prod(v for v in value if isinstance(v, (int, float))) > 4096:
        value = value[:2]
    options[field] = value
    q = works_or_zoo_error(lambda: make_quantizer(kind, **options))
    if q is not None:
        works_or_zoo_error(q.eval(), torch.randn(1, 3, q.dim))


# -- latents -----------------------------------------------------------------------------------------------
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool, torch.complex64]
special = st.sampled_from([0.0, -0.0, 1e-30, 1e4, -1e4, 1e30, float("nan"), float("inf"), float("-inf")])


@st.composite
def latents(draw, dim: int):
    b, n = draw(st.integers(0, 3)), draw(st.integers(0, 6))
    d = draw(st.sampled_from([dim, dim, dim, dim - 1, dim + 2]))
    ndim = draw(st.sampled_from([3, 3, 3, 2, 4]))
    shape = {3: (b, n, d), 2: (n, d), 4: (b, n, 1, d)}[ndim]
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([1e-6, 1.0, 100.0]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99)))) * scale
    if x.numel() and draw(st.booleans()):
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(special)
    return x.to(dtype)


@pytest.mark.parametrize("name", sorted(KINDS))
@SETTINGS
@given(data=st.data())
def test_any_latents_work_or_raise_input_error(name, data):
    q = quantizer(name)
    q.train(data.draw(st.booleans()))
    x = data.draw(latents(q.dim))
    out = works_or_zoo_error(q, x)
    q.eval()
    if out is not None:
        assert out.quantized.shape == x.shape and out.quantized.dtype == x.dtype
        assert out.ids.shape[:2] == x.shape[:2] and out.ids.dtype == torch.int64


def test_non_tensor_latents():
    for bad in (None, [[0.0] * 6], "latents", 3.0):
        with pytest.raises(ZooError):
            quantizer("vq")(bad)


# -- ids ---------------------------------------------------------------------------------------------------
@st.composite
def id_tensors(draw, k: int, levels: int):
    b, n = draw(st.integers(0, 3)), draw(st.integers(0, 5))
    ndim = draw(st.sampled_from([2, 3, 1] if levels == 1 else [3, 3, 2]))
    shape = (b, n) if ndim == 2 else (b, n, draw(st.integers(0, levels + 1))) if ndim == 3 else (n,)
    dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.int16, torch.uint8, torch.float32, torch.bool]))
    lo = draw(st.sampled_from([0, 0, -1, k - 1]))
    hi = draw(st.sampled_from([k, k, k + 1, 2 ** 31]))
    hi = min(hi, torch.iinfo(dtype).max + 1) if not (dtype.is_floating_point or dtype == torch.bool) else min(hi, k)
    lo = max(lo, 0) if dtype in (torch.uint8, torch.bool) else lo
    ids = torch.randint(lo, max(hi, lo + 1), shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))),
                        dtype=torch.int64)
    return ids.to(dtype)


@pytest.mark.parametrize("name", sorted(KINDS))
@SETTINGS
@given(data=st.data())
def test_any_ids_work_or_raise_input_error(name, data):
    q = quantizer(name).eval()
    ids = data.draw(id_tensors(q.codebook_size, q.num_levels))
    vectors = works_or_zoo_error(q.ids_to_vectors, ids)
    if vectors is not None:
        assert vectors.shape == (*ids.shape[:2], q.dim)
        assert not ids.numel() or (int(ids.min()) >= 0 and int(ids.max()) < q.codebook_size)
