"""Reliability sweep: run bad-input and fault cases against the zoo and classify each outcome.

    python scripts/reliability_sweep.py [--only api,config,checkpoint,image,cli,training] [--out sweep.json]

Classes: ``ok`` (unusual but valid input handled correctly), ``clear`` (refused with a zoo error
naming the problem), ``silent`` (accepted but the result is wrong), ``traceback`` (a raw exception
that is not a ZooError, or a CLI run that prints a traceback), ``data-loss`` (a fault left a
checkpoint that no longer loads or lost saved state). Prints one JSON line per case and a summary;
exits 1 when any case is silent, traceback or data-loss. CPU only, no network (the Hub endpoint is
pointed at a closed local port), about two minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # closed port: no network at any time
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import zoo  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

OK, CLEAR, SILENT, TRACEBACK, LOSS = "ok", "clear", "silent", "traceback", "data-loss"
CASES: list[tuple[str, str, Callable[[], tuple[str, str]]]] = []


def case(category: str, name: str):
    def wrap(fn):
        CASES.append((category, name, fn))
        return fn
    return wrap


def refused(fn: Callable[[], Any]) -> tuple[str, str]:
    """Bad input: must raise a ZooError."""
    try:
        result = fn()
    except ZooError as e:
        return CLEAR, f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - classifying is the point
        return TRACEBACK, f"{type(e).__name__}: {e}"
    return SILENT, f"accepted, returned {_short(result)}"


def works(fn: Callable[[], Any], check: Callable[[Any], bool]) -> tuple[str, str]:
    """Unusual but valid input: must work and pass ``check`` (refusing it clearly also counts)."""
    try:
        result = fn()
    except ZooError as e:
        return CLEAR, f"refused: {type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001
        return TRACEBACK, f"{type(e).__name__}: {e}"
    return (OK, "works") if check(result) else (SILENT, f"wrong result {_short(result)}")


def _short(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype}"
    return repr(x)[:80]


# -- fixtures -----------------------------------------------------------------------------------------
TMP = Path(tempfile.mkdtemp(prefix="zoo-sweep-"))
torch.manual_seed(0)
MODEL = zoo.create("titok_nano_32", image_size=32, num_tokens=16).eval()
X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
IDS = MODEL.encode(X)
SAVED = MODEL.save_pretrained(TMP / "saved")


def fresh_copy(name: str) -> Path:
    return MODEL.save_pretrained(TMP / name)


def img(name: str, array: np.ndarray | None = None, mode: str | None = None, size: int = 48) -> Path:
    path = TMP / "img" / name
    path.parent.mkdir(exist_ok=True)
    if array is None:
        array = (np.random.default_rng(len(name)).random((size, size, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(array)
    (im.convert(mode) if mode else im).save(path)
    return path


# -- Python API: encode/decode --------------------------------------------------------------------
def _same_ids(x):
    return lambda ids: isinstance(ids, torch.Tensor) and torch.equal(ids, IDS)


for label, bad in {
    "3-D image (no batch dim)": X[0], "1 channel": X[:, :1], "4 channels": torch.rand(2, 4, 32, 32),
    "wrong size 33x33": torch.rand(2, 3, 33, 33), "uint8 image": (X * 255).byte(), "int64 image": X.long(),
    "bool image": X > 0.5, "complex image": X.to(torch.complex64), "NaN pixel": X.clone().index_put_(
        (torch.tensor([0]),), torch.tensor(float("nan"))), "Inf pixel": X + float("inf"),
    "range [-1, 1]": X * 2 - 1, "range [0, 255]": X * 255, "numpy array": X.numpy(), "list": X.tolist(),
    "None": None, "5-D": X[None],
}.items():
    case("api", f"encode: {label}")(lambda bad=bad: refused(lambda: MODEL.encode(bad)))

for label, good in {"float64": X.double(), "float16": X.half(), "bfloat16": X.bfloat16(),
                    "non-contiguous": X.transpose(2, 3).contiguous().transpose(2, 3),
                    "channels_last": X.contiguous(memory_format=torch.channels_last),
                    "requires_grad": X.clone().requires_grad_()}.items():
    check = (lambda ids: ids.shape == IDS.shape) if label in ("float16", "bfloat16") else _same_ids(good)
    case("api", f"encode: {label} image")(lambda good=good, check=check: works(lambda: MODEL.encode(good), check))
case("api", "encode: empty batch")(lambda: works(lambda: MODEL.encode(X[:0]), lambda ids: ids.shape == (0, 16)))

for label, bad in {"float ids": IDS.float(), "bool ids": IDS > 3, "id = vocab": IDS.clamp(min=1024),
                   "negative id": IDS - 2000, "15 tokens": IDS[:, :15], "17 tokens": torch.cat([IDS, IDS[:, :1]], 1),
                   "1-D ids": IDS[0], "3-D ids": IDS[..., None], "numpy ids": IDS.numpy(), "list ids": IDS.tolist(),
                   "id 2**40": IDS.clone().fill_(2**40)}.items():
    case("api", f"decode: {label}")(lambda bad=bad: refused(lambda: MODEL.decode(bad)))
for label, good in {"int32 ids": IDS.int(), "int16 ids": IDS.short(), "empty batch": IDS[:0]}.items():
    case("api", f"decode: {label}")(lambda good=good: works(
        lambda: MODEL.decode(good), lambda y: y.shape == (good.shape[0], 3, 32, 32) and bool((y >= 0).all() & (y <= 1).all())))


@case("api", "encode with all-NaN weights names the weights")
def _():
    broken = copy.deepcopy(MODEL)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    status, detail = refused(lambda: broken.encode(X))
    return (status, detail) if status != CLEAR or "weight" in detail else (SILENT, f"misleading: {detail}")


@case("api", "device 'cuda' without CUDA")
def _():
    if torch.cuda.is_available():
        return OK, "CUDA present: not applicable"
    status, detail = refused(lambda: zoo.from_pretrained(str(SAVED), map_location="cuda"))
    return (status, detail) if status != CLEAR or "CUDA is not available" in detail else (SILENT, f"misleading: {detail}")


# -- configs -----------------------------------------------------------------------------------------
for field, value in [("num_tokens", 8.7), ("num_tokens", "16"), ("num_tokens", True), ("num_tokens", 0),
                     ("image_size", -64), ("encoder_heads", 5), ("decoder_heads", 3), ("ema_decay", 2.0),
                     ("ema_decay", -0.1), ("decoder_head", "pix"), ("use_cosine", "yes"), ("use_cosine", 1),
                     ("patch_size", 7), ("mlp_ratio", float("nan")), ("codebook_size", 1), ("token_dim", 0),
                     ("commitment_weight", -1.0), ("num_tokns", 16), ("legacy_layout", None)]:
    case("config", f"TiTokConfig {field}={value!r}")(lambda f=field, v=value: refused(
        lambda: zoo.create("titok_nano_32", **{f: v})))


def _quantizer(kind: str, **kw):
    from zoo.quantize import make_quantizer
    return make_quantizer(kind, **kw)


for label, kind, kw in [("FSQ levels=[8.7, 5]", "fsq", {"levels": [8.7, 5]}), ("FSQ levels=[]", "fsq", {"levels": []}),
                        ("VQ ema_decay=2.0", "vq", {"dim": 4, "codebook_size": 16, "ema_decay": 2.0}),
                        ("VQ codebook_size=0", "vq", {"dim": 4, "codebook_size": 0}),
                        ("LFQ codebook_size=1000", "lfq", {"dim": 10, "codebook_size": 1000}),
                        ("unknown quantizer kind", "pq", {}), ("VQ unknown option", "vq", {"dim": 4, "codebook_size": 8,
                                                                                           "decay": 0.9})]:
    case("config", f"quantizer {label}")(lambda kind=kind, kw=kw: refused(lambda: _quantizer(kind, **kw)))


@case("config", "RVQ empty batch")
def _():
    q = _quantizer("rvq", dim=4, codebook_size=16, num_levels=2).eval()
    return works(lambda: q(torch.rand(0, 5, 4)).ids, lambda ids: ids.shape[0] == 0)


@case("config", "FSQ float16 latents")
def _():
    q = _quantizer("fsq", levels=[8, 5, 5]).eval()
    return works(lambda: q(torch.rand(2, 5, 3).half()).ids, lambda ids: ids.shape == (2, 5))


# -- checkpoints -------------------------------------------------------------------------------------
def edit_config(folder: Path, **fields) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"].update(fields)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def edit_bytes(path: Path, fn: Callable[[bytearray], bytes]) -> None:
    path.write_bytes(fn(bytearray(path.read_bytes())))


def _flip(b: bytearray) -> bytes:
    b[-50] ^= 0x10
    return bytes(b)


CKPT_FAULTS: dict[str, Callable[[Path], Any]] = {
    "config.json encoder_heads edited (same shapes)": lambda d: edit_config(d, encoder_heads=2),
    "config.json num_tokens edited": lambda d: edit_config(d, num_tokens=8),
    "config.json unknown field": lambda d: edit_config(d, depth_typo=3),
    "config.json wrong type": lambda d: edit_config(d, num_tokens="16"),
    "config.json not JSON": lambda d: (d / "config.json").write_text("{nope"),
    "config.json missing": lambda d: (d / "config.json").unlink(),
    "config.json unknown family": lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "family": "nope"})),
    "weights flipped byte": lambda d: edit_bytes(d / "model.safetensors", _flip),
    "weights truncated": lambda d: edit_bytes(d / "model.safetensors", lambda b: bytes(b[: len(b) // 2])),
    "weights empty file": lambda d: (d / "model.safetensors").write_bytes(b""),
    "weights missing": lambda d: (d / "model.safetensors").unlink(),
    "weights are a text file": lambda d: (d / "model.safetensors").write_text("hello"),
}
for label, fault in CKPT_FAULTS.items():
    def run(label=label, fault=fault):
        d = fresh_copy("ck_" + str(abs(hash(label))))
        fault(d)
        return refused(lambda: zoo.from_pretrained(str(d)))
    case("checkpoint", label)(run)

case("checkpoint", "missing folder path")(lambda: refused(lambda: zoo.from_pretrained(str(TMP / "no" / "such"))))
case("checkpoint", "unknown bare name")(lambda: refused(lambda: zoo.from_pretrained("titok_nanoo_32")))


@case("checkpoint", "mistyped a/b local path (fast, says folder missing)")
def _():
    start = time.monotonic()
    status, detail = refused(lambda: zoo.from_pretrained("runs/exprt"))
    took = time.monotonic() - start
    if status == CLEAR and ("not a local folder" not in detail or took > 10):
        return SILENT, f"misleading or slow ({took:.0f} s): {detail}"
    return status, f"{took:.1f} s: {detail}"


@case("checkpoint", "older checkpoint without metadata loads")
def _():
    from safetensors.torch import load_file, save_file
    d = fresh_copy("old")
    save_file(load_file(d / "model.safetensors"), str(d / "model.safetensors"))
    return works(lambda: zoo.from_pretrained(str(d)).encode(X), _same_ids(X))


@case("checkpoint", "save fails between weights and config")
def _():
    from zoo import hub
    d = fresh_copy("swap")
    other = zoo.create("titok_nano_32", image_size=32, num_tokens=8)
    real = hub.atomic_write_text

    def fail(path, text):
        if Path(path).name == "config.json":
            raise OSError("disk full")
        return real(path, text)

    hub.atomic_write_text = fail
    try:
        other.save_pretrained(d)
    except OSError:
        pass
    finally:
        hub.atomic_write_text = real
    try:
        ok = torch.equal(zoo.from_pretrained(str(d)).encode(X), IDS)
    except Exception as e:  # noqa: BLE001
        return LOSS, f"folder no longer loads: {e}"
    return (OK, "old pair intact") if ok else (LOSS, "folder holds other weights")


@case("checkpoint", "save over an existing checkpoint with another config")
def _():
    d = fresh_copy("over")
    zoo.create("titok_nano_32", image_size=32, num_tokens=8).save_pretrained(d)
    return works(lambda: zoo.from_pretrained(str(d)), lambda m: m.num_tokens == 8)


# -- images ------------------------------------------------------------------------------------------
def _levels_match(path: Path, expect: float, tol: float = 0.02):
    from zoo.data import load_image
    return works(lambda: load_image(path, 32), lambda x: abs(float(x.mean()) - expect) < tol)


RAMP = np.linspace(0, 1, 48 * 48).reshape(48, 48)
case("image", "16-bit grayscale PNG")(lambda: _levels_match(img("g16.png", (RAMP * 65535).astype(np.uint16)), 0.5))
case("image", "32-bit float TIFF")(lambda: _levels_match(img("f.tif", RAMP.astype(np.float32)), 0.5))
case("image", "32-bit int TIFF (16-bit values)")(lambda: _levels_match(img("i.tif", (RAMP * 65535).astype(np.int32)), 0.5))
for mode in ("L", "LA", "P", "CMYK", "RGBA", "1", "I;16"):
    ext = "tif" if mode in ("CMYK", "I;16") else "png"
    arr = (np.full((48, 48, 3), 128, np.uint8))
    case("image", f"mode {mode}")(lambda mode=mode, ext=ext, arr=arr: _levels_match(
        img(f"m_{mode.replace(';', '')}.{ext}", arr, mode if mode != "I;16" else "L"), 128 / 255, 0.06 if mode == "1" else 0.02))


def _load(path):
    from zoo.data import load_image
    return refused(lambda: load_image(path, 32))


case("image", "truncated PNG")(lambda: (lambda p: (edit_bytes(p, lambda b: bytes(b[: len(b) // 2])), _load(p))[1])(img("t.png")))
case("image", "text file named .png")(lambda: (lambda p: (p.write_text("hi"), _load(p))[1])(TMP / "img" / "x.png"))
case("image", "missing file")(lambda: _load(TMP / "img" / "missing.png"))
case("image", "a folder")(lambda: _load(TMP / "img"))


@case("image", "decompression bomb")
def _():
    p = img("bomb.png", size=200)
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 200 * 200 // 4
    try:
        return _load(p)
    finally:
        Image.MAX_IMAGE_PIXELS = old


# -- CLI (in process; exit codes and messages) -------------------------------------------------------
def cli(*argv: str) -> tuple[int, str]:
    from zoo.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    return rc, err.getvalue()


def cli_refused(*argv: str, output: Path | None = None) -> tuple[str, str]:
    try:
        rc, err = cli(*argv)
    except Exception as e:  # noqa: BLE001
        return TRACEBACK, f"{type(e).__name__}: {e}"
    if rc == 0:
        return SILENT, "exit 0" + (f", wrote {output}" if output and output.exists() else "")
    if "Traceback" in err or "error" not in err:
        return TRACEBACK, err[-200:]
    return CLEAR, err.strip().splitlines()[-1]


A, B = img("a.png"), img("b.png")
CLI_OUT = TMP / "cli"
CLI_OUT.mkdir()
(CLI_OUT / "dir.npy").mkdir()


@case("cli", "tokenize a a b -o ids.npy gives 3 rows")
def _():
    out = CLI_OUT / "ids.npy"
    rc, err = cli("tokenize", str(A), str(A), str(B), "--model", str(SAVED), "-o", str(out))
    return (OK, "3 rows") if rc == 0 and np.load(out).shape == (3, 16) else (SILENT, f"rc {rc} {err[-100:]}")


@case("cli", "-o ids.NPY writes .npy")
def _():
    out = CLI_OUT / "ids.NPY"
    rc, err = cli("tokenize", str(A), "--model", str(SAVED), "-o", str(out))
    try:
        return (OK, "npy") if rc == 0 and np.load(out).shape == (1, 16) else (SILENT, err[-100:])
    except Exception as e:  # noqa: BLE001
        return SILENT, f"not a .npy file: {e}"


@case("cli", "reconstruct -o out.webp writes WebP")
def _():
    out = CLI_OUT / "out.webp"
    rc, err = cli("reconstruct", str(A), "--model", str(SAVED), "-o", str(out))
    with contextlib.suppress(Exception), Image.open(out) as im:
        if rc == 0 and im.format == "WEBP":
            return OK, "webp"
    return SILENT, f"rc {rc}, not WebP"


@case("cli", "output file respects the umask")
def _():
    out = CLI_OUT / "mode.json"
    old = os.umask(0o022)
    try:
        cli("tokenize", str(A), "--model", str(SAVED), "-o", str(out))
    finally:
        os.umask(old)
    mode = out.stat().st_mode & 0o777
    return (OK, oct(mode)) if mode == 0o644 else (SILENT, f"mode {oct(mode)} under umask 022")


for label, argv in {
    "-o ids.txt": ["tokenize", str(A), "--model", str(SAVED), "-o", str(CLI_OUT / "ids.txt")],
    "-o a folder": ["tokenize", str(A), "--model", str(SAVED), "-o", str(CLI_OUT / "dir.npy")],
    "-o under a file": ["tokenize", str(A), "--model", str(SAVED), "-o", str(A / "ids.npy")],
    "--batch-size 0": ["tokenize", str(A), "--model", str(SAVED), "--batch-size", "0"],
    "--batch-size -1": ["tokenize", str(A), "--model", str(SAVED), "--batch-size", "-1"],
    "--batch-size abc": ["tokenize", str(A), "--model", str(SAVED), "--batch-size", "abc"],
    "missing image": ["tokenize", str(TMP / "nope.png"), "--model", str(SAVED)],
    "image is a folder": ["tokenize", str(TMP), "--model", str(SAVED)],
    "missing model folder": ["tokenize", str(A), "--model", str(TMP / "nomodel")],
    "--device cuda (no CUDA)": ["tokenize", str(A), "--model", str(SAVED), "--device", "cuda"],
    "--device gpu0": ["tokenize", str(A), "--model", str(SAVED), "--device", "gpu0"],
    "reconstruct -o out.xyz": ["reconstruct", str(A), "--model", str(SAVED), "-o", str(CLI_OUT / "o.xyz")],
    "reconstruct -o a folder": ["reconstruct", str(A), "--model", str(SAVED), "-o", str(CLI_OUT)],
    "train missing recipe": ["train", str(TMP / "none.yaml")],
}.items():
    if label.startswith("--device cuda") and torch.cuda.is_available():
        continue
    case("cli", label)(lambda argv=argv: cli_refused(*argv))


# -- training ----------------------------------------------------------------------------------------
DATA = TMP / "data"
DATA.mkdir()
for i in range(10):
    img(f"../data/im{i}.png", size=40)
RUN = TMP / "run"
RECIPE = ROOT / "recipes" / "titok_nano.yaml"
FAST = [f"data.root={DATA}", f"output_dir={RUN}", "module.perceptual_weight=0", "model.overrides.image_size=32",
        "model.overrides.num_tokens=16", "data.batch_size=4", "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=1000", "trainer.val_check_interval=1000", "logger=none"]


def build_refused(*overrides: str) -> tuple[str, str]:
    from zoo.training.recipe import build, load_recipe
    return refused(lambda: build(load_recipe(RECIPE, FAST + list(overrides))))


for override in ["model.overides.num_tokens=16", "model.overrides.num_tokns=16", "data.batch_size=0",
                 "data.batch_size=-4", "data.num_workers=-1", "data.val_fraction=1.5", "module.lr=-0.001",
                 "module.lr=fast", "module.betas=[0.9]", "module.lr_schedule=linear", "checkpoint.every_n_train_step=5",
                 "checkpoint.dirpath=/tmp", "trainer.max_step=5", "trainer.max_steps=0", "trainer.max_steps=1.5",
                 "modle.name=x", "seed=0.5", "logger=wandb", "model.name=titok_nanoo", "task=flow",
                 f"data.root={TMP / 'nodata'}", f"data.root={TMP / 'img' / 'a.png'}", "badoverride"]:
    case("training", f"--set {override.replace(str(TMP), '$TMP')}")(lambda o=override: build_refused(o))


@case("training", "invalid YAML recipe")
def _():
    from zoo.training.recipe import load_recipe
    bad = TMP / "bad.yaml"
    bad.write_text("model: {name: [unclosed\n")
    return refused(lambda: load_recipe(bad))


@case("training", "corrupt and bomb images in the training folder are skipped")
def _():
    from zoo.training.data import readable_images
    d = TMP / "mixed"
    d.mkdir()
    for i in range(3):
        img(f"../mixed/ok{i}.png", size=40)
    img("../mixed/bomb.png", size=200)
    (d / "bad.jpg").write_bytes(b"\xff\xd8 nope")
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 200 * 200 // 4
    try:
        return works(lambda: readable_images(d), lambda files: len(files) == 3)
    finally:
        Image.MAX_IMAGE_PIXELS = old


@case("training", "--resume last without last.ckpt")
def _():
    from zoo.training.recipe import load_recipe, resolve_resume
    return refused(lambda: resolve_resume("last", load_recipe(RECIPE, FAST + [f"output_dir={TMP / 'fresh'}"])))


@case("training", "SIGTERM during zoo train: checkpoint at the current step, non-zero exit, resume loses none")
def _():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "zoo.cli", "train", str(RECIPE)]
    for o in FAST + ["trainer.max_steps=100000", "trainer.log_every_n_steps=1", "logger=csv"]:
        argv += ["--set", o]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    metrics = RUN / "logs" / "version_0" / "metrics.csv"
    while time.monotonic() < deadline and p.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > 4:
            break
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=240)
    last = RUN / "checkpoints" / "last.ckpt"
    if p.returncode == 0:
        return SILENT, "exit 0 after SIGTERM"
    if not last.is_file():
        return LOSS, f"no checkpoint after SIGTERM (rc {p.returncode}): {err[-200:]}"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    from zoo.training.recipe import train
    trainer = train(RECIPE, overrides=FAST + [f"trainer.max_steps={step + 2}"], resume="last")
    if trainer.global_step != step + 2:
        return LOSS, f"saved step {step}, resumed run ended at {trainer.global_step}"
    return CLEAR, f"rc {p.returncode}, saved step {step}, resumed to {step + 2}; " + err.strip().splitlines()[-1]


@case("training", "--resume a truncated checkpoint")
def _():
    from zoo.training.recipe import train
    last = RUN / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return OK, "skipped: no checkpoint from the SIGTERM case"
    cut = TMP / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    return refused(lambda: train(RECIPE, overrides=FAST + ["trainer.max_steps=3"], resume=str(cut)))


@case("training", "--resume another model's checkpoint")
def _():
    from zoo.training.recipe import train
    last = RUN / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return OK, "skipped: no checkpoint from the SIGTERM case"
    return refused(lambda: train(RECIPE, overrides=FAST + ["trainer.max_steps=3", "model.overrides.num_tokens=8"],
                                 resume=str(last)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=None, help="comma-separated categories (api, config, checkpoint, image, cli, training)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON lines here")
    args = p.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = []
    import logging
    logging.disable(logging.WARNING)
    for category, name, fn in CASES:
        if only and category not in only:
            continue
        try:
            status, detail = fn()
        except Exception as e:  # noqa: BLE001 - a fault in the case itself
            status, detail = TRACEBACK, f"case crashed: {type(e).__name__}: {e}"
        rows.append({"category": category, "case": name, "class": status, "detail": detail.replace(str(TMP), "$TMP")[:300]})
        print(json.dumps(rows[-1]), flush=True)
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["category"], {}).setdefault(r["class"], 0)
        counts[r["category"]][r["class"]] += 1
    classes = [OK, CLEAR, SILENT, TRACEBACK, LOSS]
    print(f"\n| category | cases | {' | '.join(classes)} |", file=sys.stderr)
    print("|---|---:|" + "---:|" * len(classes), file=sys.stderr)
    for cat, c in counts.items():
        print(f"| {cat} | {sum(c.values())} | " + " | ".join(str(c.get(k, 0)) for k in classes) + " |", file=sys.stderr)
    total = {k: sum(c.get(k, 0) for c in counts.values()) for k in classes}
    print(f"| all | {len(rows)} | " + " | ".join(str(total[k]) for k in classes) + " |", file=sys.stderr)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 1 if total[SILENT] or total[TRACEBACK] or total[LOSS] else 0


if __name__ == "__main__":
    sys.exit(main())
