"""Property-based tests of the image tokenizer contract (hypothesis): over shapes, dtypes, value
ranges and ids, ``encode``/``decode`` either work (right shape, dtype and range) or raise the
zoo's own error class; never another exception, never a silent wrong shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import zoo  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SIZE, TOKENS = 32, 16
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OTHER_DTYPES = [torch.uint8, torch.int64, torch.bool, torch.complex64]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.create("titok_nano_32", image_size=SIZE, num_tokens=TOKENS).eval()


@st.composite
def image_inputs(draw):
    """(tensor or other object, whether it is a valid image batch)."""
    kind = draw(st.sampled_from(["tensor"] * 8 + ["numpy", "list", "none"]))
    b = draw(st.integers(0, 3))
    shape = [b, 3, SIZE, SIZE]
    if draw(st.booleans()):  # break the shape in one place
        i = draw(st.integers(0, 4))
        if i == 4:
            shape = shape[1:]
        else:
            shape[i] = draw(st.sampled_from([1, 2, 4, SIZE - 1, SIZE + 1]))
    dtype = draw(st.sampled_from(FLOAT_DTYPES * 2 + OTHER_DTYPES))
    lo, hi = draw(st.sampled_from([(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (0.0, 1.001)]))
    x = torch.rand(shape) * (hi - lo) + lo
    special = draw(st.sampled_from([None, None, None, float("nan"), float("inf"), -float("inf")]))
    if special is not None and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = special
    x = x.to(dtype) if dtype.is_floating_point or dtype.is_complex else (x.clamp(0, 255)).to(dtype)
    if kind == "numpy":
        return x.float().numpy()
    if kind == "list":
        return x.float().tolist()
    if kind == "none":
        return None
    return x


@st.composite
def id_inputs(draw):
    b = draw(st.integers(0, 3))
    n = draw(st.sampled_from([TOKENS, TOKENS, TOKENS, 0, 1, TOKENS - 1, TOKENS + 1]))
    shape = draw(st.sampled_from([(b, n), (b, n), (n,), (b, n, 1)]))
    dtype = draw(st.sampled_from([torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8, torch.float32,
                                  torch.bool]))
    lo, hi = draw(st.sampled_from([(0, 1024), (0, 1024), (-3, 10), (1000, 1030), (0, 2**40)]))
    ids = torch.randint(lo, hi, shape, dtype=torch.int64)
    if dtype is torch.bool:
        return ids.bool()
    return ids.to(dtype) if dtype.is_floating_point else ids.clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max).to(dtype)


def _expected_ok(call):
    try:
        return call(), None
    except ZooError as e:
        assert str(e), "zoo errors must say what was wrong"
        return None, e


@SETTINGS
@given(images=image_inputs())
def test_encode_works_or_raises_a_zoo_error(model, images):
    ids, err = _expected_ok(lambda: model.encode(images))
    if err is None:
        assert isinstance(images, torch.Tensor) and images.ndim == 4
        assert ids.shape == (images.shape[0], TOKENS) and ids.dtype == torch.int64
        if ids.numel():
            assert 0 <= int(ids.min()) and int(ids.max()) < model.vocab_size


@SETTINGS
@given(ids=id_inputs())
def test_decode_works_or_raises_a_zoo_error(model, ids):
    images, err = _expected_ok(lambda: model.decode(ids))
    if err is None:
        assert ids.ndim == 2 and ids.shape[1] == TOKENS
        assert images.shape == (ids.shape[0], 3, SIZE, SIZE) and images.dtype == torch.float32
        if images.numel():
            assert float(images.min()) >= 0 and float(images.max()) <= 1


@SETTINGS
@given(dtype=st.sampled_from(FLOAT_DTYPES), b=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_other_float_dtypes_are_converted(model, dtype, b, seed):
    x = torch.rand(b, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    x = x.to(dtype)
    assert torch.equal(model.encode(x), model.encode(x.float()))


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(["num_tokens", "image_size", "encoder_heads", "codebook_size",
                                               "ema_decay", "use_cosine", "decoder_head", "mlp_ratio"]),
                              st.one_of(st.integers(-4, 80), st.floats(-2, 80), st.just(float("nan")), st.booleans(),
                                        st.sampled_from(["pixel", "proxy", "x", "16", None])), max_size=3))
def test_config_values_are_accepted_or_refused_with_config_error(values):
    from zoo.models.titok import TiTokConfig
    try:
        cfg = zoo.get_config("titok_nano_32", **values)
    except zoo.ConfigError as e:
        assert e.field is None or e.field in {f for f in TiTokConfig.__dataclass_fields__}
        return
    for k, v in values.items():  # accepted values are kept as given (no silent coercion)
        assert getattr(cfg, k) == v and type(getattr(cfg, k)) is type(v), (k, v, getattr(cfg, k))
