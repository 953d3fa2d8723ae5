"""The audio half of ``zoo tokenize`` / ``zoo reconstruct`` (called by :mod:`zoo.cli` for audio inputs).

    zoo tokenize speech.wav --model codec_nano_16khz [--bandwidth 2 | --num-levels 4] [-o ids.json|.jsonl|.npy]
    zoo reconstruct speech.wav --model codec_nano_16khz -o out.wav [--bandwidth 2]

Files are read with soundfile, turned to the model's channel count and resampled to its rate (the
command says so on stderr); ``reconstruct`` writes the decoded audio back at the input's rate.
Long files go through ``encode_long`` / ``decode_long`` (bounded memory) when the model has them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zoo.audio import AUDIO_EXTENSIONS, load_audio, resample, save_audio
from zoo.errors import InputError

LONG_SECONDS = 30.0  # files longer than this are encoded / decoded in chunks


def is_audio_input(paths: list[Any]) -> bool:
    """True when every path has an audio extension (a mix of audio and images is an error)."""
    kinds = {Path(p).suffix.lower() in AUDIO_EXTENSIONS for p in paths}
    if kinds == {True, False}:
        raise InputError("give either audio files or images, not both")
    return kinds == {True}


def _read(path: Path, model) -> tuple[torch.Tensor, int]:
    import soundfile as sf

    try:
        orig = int(sf.info(str(path)).samplerate)
    except Exception as e:  # soundfile's LibsndfileError / RuntimeError
        raise InputError(f"cannot read audio file {path} (truncated or not wav/flac/ogg?): {e}") from None
    wav, _ = load_audio(path, model.sample_rate, model.channels)
    if orig != model.sample_rate:
        print(f"{path}: resampled {orig} Hz -> {model.sample_rate} Hz for {model.name}", file=sys.stderr)
    return wav, orig


def _encode(model, wav: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    x = wav[None].to(next(model.parameters()).device)
    kw = dict(bandwidth=getattr(args, "bandwidth", None), num_levels=getattr(args, "num_levels", None))
    if hasattr(model, "encode_long") and wav.shape[-1] > LONG_SECONDS * model.sample_rate:
        return model.encode_long(x, **kw)
    return model.encode(x, **kw)


def _decode(model, ids: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "decode_long") and ids.shape[-1] > LONG_SECONDS * model.frame_rate:
        return model.decode_long(ids)
    return model.decode(ids)


def cmd_tokenize_audio(args: argparse.Namespace, load_model: Callable[..., Any]) -> int:
    """ids per file: (levels, frames) lists, as JSON lines on stdout or into ``-o``."""
    from zoo.io import atomic_path

    out = None if args.output is None else Path(args.output)
    if out is not None and out.suffix.lower() not in (".json", ".jsonl", ".npy"):
        raise InputError(f"cannot write ids to {out}: use .json, .jsonl or .npy")
    model = load_model(args.model, revision=args.revision, random_init=args.random_init, device=args.device)
    rows = []
    for path in args.images:
        ids = _encode(model, _read(Path(path), model)[0], args)[0].cpu()
        rows.append({"audio": str(path), "ids": ids.tolist(), "levels": int(ids.shape[0]), "frames": int(ids.shape[1]),
                     "frame_rate": model.frame_rate, "kbps": round(model.bitrate(int(ids.shape[0])), 4)})
    if out is None:
        print("\n".join(json.dumps(r) for r in rows))
        return 0
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            if len(rows) != 1:
                raise InputError("a .npy file holds the ids of one audio file ((levels, frames)); use .json or "
                                 ".jsonl for several")
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(rows[0]["ids"], dtype=np.int64))
        elif out.suffix.lower() == ".jsonl":
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        else:
            tmp.write_text(json.dumps({"model": args.model, "vocab_size": model.vocab_size, "audio": rows}) + "\n",
                           encoding="utf-8")
    print(f"wrote ids of {len(rows)} audio file(s) to {out}", file=sys.stderr)
    return 0


def cmd_reconstruct_audio(args: argparse.Namespace, load_model: Callable[..., Any]) -> int:
    """Encode one file at ``--bandwidth`` / ``--num-levels`` and write the decoded audio at the input's rate."""
    out = Path(args.output)
    if out.suffix.lower() not in AUDIO_EXTENSIONS:
        raise InputError(f"output {out} must be an audio file ({', '.join(AUDIO_EXTENSIONS)})")
    model = load_model(args.model, revision=args.revision, random_init=args.random_init, device=args.device)
    wav, orig = _read(Path(args.image), model)
    ids = _encode(model, wav, args)
    rec = _decode(model, ids)[0, :, : wav.shape[-1]].cpu()
    if orig != model.sample_rate:
        rec = resample(rec, model.sample_rate, orig)
        print(f"resampled the reconstruction back to {orig} Hz", file=sys.stderr)
    save_audio(out, rec, orig)
    levels = int(ids.shape[1])
    print(f"wrote {out} ({levels} levels x {ids.shape[-1]} frames, {model.bitrate(levels):.3g} kbps)", file=sys.stderr)
    return 0


__all__ = ["cmd_reconstruct_audio", "cmd_tokenize_audio", "is_audio_input"]
