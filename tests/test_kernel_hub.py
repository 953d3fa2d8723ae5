"""The quantizer kernels as a universal Hub kernel: layout, offline loading, layer swapping."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # the Hub kernel is Triton: on a CPU it runs under the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")
kernels = pytest.importorskip("kernels")
pytest.importorskip("triton")

from zoo.kernels import HUB_KERNEL_DIR, builtin_kernel, kernelize_quantizers, nearest_code  # noqa: E402
from zoo.kernels.layers import LAYER_NAMES  # noqa: E402
from zoo.quantize import make_quantizer  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
VARIANT = HUB_KERNEL_DIR / "build" / "torch-universal"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """These tests load kernels from local paths only: no Hub access (only for this module's tests)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_universal_layout_and_metadata():
    assert (VARIANT / "zoo_quantize" / "__init__.py").is_file()
    assert (VARIANT / "__init__.py").is_file()
    meta = kernels.Metadata.read_from_file(VARIANT / "metadata.json")
    assert meta.name.python_name == "zoo_quantize" and meta.version == 1
    raw = json.loads((VARIANT / "metadata.json").read_text())
    assert raw["python-depends"] == []


def test_builtin_default_is_the_hub_kernel():
    mod = builtin_kernel()
    assert Path(mod.__file__).resolve() == (VARIANT / "zoo_quantize" / "__init__.py").resolve()
    assert mod.KERNEL_VERSION == 1


def _local_kernel():
    return kernels.get_local_kernel(HUB_KERNEL_DIR)


def test_get_local_kernel_same_ids_as_builtin():
    hub = _local_kernel()
    assert hub.__name__ != builtin_kernel().__name__  # a separate import of the same files
    g = torch.Generator().manual_seed(0)
    x = torch.randn(70, 20, generator=g).to(DEV)
    c = torch.randn(90, 20, generator=g).to(DEV)
    for metric in ("euclidean", "dot"):
        ids, vectors = hub.nearest_code(x, c, metric)
        ref, _ = nearest_code(x, c, metric, backend="torch")
        assert torch.equal(ids, ref) and torch.equal(vectors, c[ids])
    z = torch.randn(5, 9, 6, generator=g).to(DEV)
    assert torch.equal(hub.fsq_quantize(z, [8, 8, 8, 5, 5, 5])[1],
                       builtin_kernel().fsq_quantize(z, [8, 8, 8, 5, 5, 5])[1])
    assert torch.equal(hub.lfq_quantize(z)[1], builtin_kernel().lfq_quantize(z)[1])


def test_hub_layers_exist():
    hub = _local_kernel()
    for kernel_name in LAYER_NAMES.values():
        assert issubclass(getattr(hub.layers, kernel_name), torch.nn.Module)


@pytest.mark.parametrize("kind,options", [
    ("vq", dict(dim=12, codebook_size=64)),
    ("vq", dict(dim=12, codebook_size=64, use_cosine=False, codebook_dim=8)),
    ("fsq", dict(levels=(8, 5, 5, 5), dim=8)),
    ("lfq", dict(dim=8, codebook_size=64)),
    ("rvq", dict(dim=8, codebook_size=32, num_levels=3)),
    ("rfsq", dict(dim=8, levels=(8, 5, 5), num_levels=2)),
])
def test_kernelize_swaps_layers_and_keeps_ids(kind, options):
    torch.manual_seed(1)
    q = make_quantizer(kind, **options, lookup_backend="torch").to(DEV).eval()
    x = torch.randn(2, 40, q.dim, device=DEV)
    before = q(x)
    layer = next(m for m in q.modules() if hasattr(type(m), "kernel_layer_name"))
    original = layer.forward
    kernelize_quantizers(q, path=HUB_KERNEL_DIR, device=DEV)
    assert layer.forward.__func__ is not original.__func__          # the Hub layer's forward now runs
    assert layer.forward.__func__.__module__.endswith("layers")
    assert "zoo_quantize" in sys.modules[layer.forward.__func__.__module__].__name__
    after = q(x)
    assert torch.equal(after.ids, before.ids)
    torch.testing.assert_close(after.quantized, before.quantized, rtol=1e-6, atol=1e-6)


def test_push_script_collects_the_kernel_repo(tmp_path):
    spec = importlib.util.spec_from_file_location("push_kernels", ROOT / "scripts" / "push_kernels.py")
    push = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(push)
    (VARIANT / "zoo_quantize" / "__pycache__").mkdir(exist_ok=True)
    files = push.kernel_files(HUB_KERNEL_DIR)
    names = {str(p) for p in files}
    assert "build/torch-universal/metadata.json" in names
    assert "build/torch-universal/zoo_quantize/_vq.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    staged = push.stage(HUB_KERNEL_DIR, tmp_path / "repo")
    assert (staged / "README.md").is_file()
    # the staged copy loads like the original
    mod = kernels.get_local_kernel(staged)
    assert mod.KERNEL_VERSION == 1
