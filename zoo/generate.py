"""``zoo generate``: sample a trained AR generator and decode with the tokenizer it was trained on.

>>> gen = load_generator("runs/gpt_nano/export")          # or a training .ckpt
>>> tok = load_tokenizer_of(gen)                          # the tokenizer recorded in its config
>>> out = sample(gen, labels=torch.tensor([3] * 16), seed=0, cfg_scale=2.0)
>>> images = decode_samples(gen, tok, out)                # (16, 3, H, W) in [0, 1] (audio: list of (C, T))
>>> generation_fid(images, "data/eval")                   # gFID against a folder of real images
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import torch

from zoo.errors import CheckpointError, InputError
from zoo.models.generator import ARGenerator, ARGeneratorConfig, Generated
from zoo.tokens.vocab import unflatten_levels


# -- loading -------------------------------------------------------------------------------------
def load_generator(path: str | Path, *, map_location: str | torch.device = "cpu") -> ARGenerator:
    """An :class:`ARGenerator` from an export folder (``config.json`` + ``model.safetensors``) or a
    training checkpoint (``.ckpt``, read with ``weights_only=True``)."""
    from zoo import hub

    path = Path(path)
    if path.is_dir():
        cfg = hub.read_config(path)
        if cfg.get("family") != ARGenerator.family:
            raise CheckpointError(f"{path} holds a {cfg.get('family')!r} model, not an AR generator "
                                  "(train one with recipes/gpt_nano.yaml)")
        config, state, name = cfg["config"], hub.read_weights(path / hub.WEIGHTS_NAME), cfg.get("variant")
    elif path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle/zip errors of a corrupt or foreign file
            raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(ckpt, dict) or "generator_config" not in ckpt:
            raise CheckpointError(f"{path} is not an ar_generator training checkpoint (no generator_config)")
        config = ckpt["generator_config"]
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        name = (ckpt.get("hyper_parameters") or {}).get("size")
    else:
        raise CheckpointError(f"generator {path} does not exist (an export folder or a .ckpt file)")
    try:
        config = ARGeneratorConfig(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid generator config: {e}") from None
    model = ARGenerator(config, name=name)
    hub.load_state(model, state, source=str(path))
    return model.to(map_location).eval()


def load_tokenizer_of(gen: ARGenerator, tokenizer: str | None = None, *, device: str | torch.device = "cpu"):
    """The tokenizer recorded in the generator's config (or ``tokenizer`` to override it)."""
    import zoo

    info = gen.config.tokens.get("tokenizer") or {}
    name = tokenizer or info.get("id")
    if not name:
        raise CheckpointError("the generator does not record its tokenizer; pass --tokenizer NAME_OR_PATH")
    tok = zoo.from_pretrained(name, revision=info.get("revision") if tokenizer is None else None,
                              map_location=str(device))
    if int(tok.vocab_size) != int(gen.config.tokens.get("token_vocab_size", tok.vocab_size)):
        raise CheckpointError(f"tokenizer {name} has {tok.vocab_size} codes, the generator was trained on "
                              f"{gen.config.tokens.get('token_vocab_size')}")
    shape = info.get("token_shape") or [None]
    if tok.modality == "image" and shape[0] is not None and not getattr(tok, "variable_length", False) \
            and int(tok.num_tokens) != int(shape[0]):
        raise CheckpointError(f"tokenizer {name} makes {tok.num_tokens} tokens per image, the generator was trained "
                              f"on {shape[0]}")
    return tok


# -- sampling and decoding -----------------------------------------------------------------------
def class_labels(gen: ARGenerator, cls: int | str | None, n: int) -> torch.Tensor:
    """(n,) labels: one class (index or name) for all, or every class in turn when ``cls`` is None."""
    classes = list(gen.config.tokens.get("classes") or [])
    if cls is None:
        return torch.arange(n) % gen.config.num_classes
    if isinstance(cls, str) and not cls.lstrip("-").isdigit():
        if cls not in classes:
            raise InputError(f"class {cls!r} is not one of the generator's classes {classes}")
        cls = classes.index(cls)
    cls = int(cls)
    if not 0 <= cls < gen.config.num_classes:
        raise InputError(f"class {cls} out of range: the generator has {gen.config.num_classes} class(es)"
                         + (f" {classes}" if classes else ""))
    return torch.full((n,), cls, dtype=torch.long)


def sample(gen: ARGenerator, labels: torch.Tensor, *, seed: int = 0, batch_size: int = 64, **kwargs: Any) -> Generated:
    """``gen.generate`` in batches with one seeded ``torch.Generator`` (kwargs: length, temperature,
    top_k, top_p, cfg_scale, use_cache, min_length)."""
    g = torch.Generator().manual_seed(seed)
    parts = [gen.generate(labels[i:i + batch_size], generator=g, **kwargs) for i in range(0, len(labels), batch_size)]
    width = max(p.ids.shape[1] for p in parts)
    ids = torch.cat([torch.nn.functional.pad(p.ids, (0, width - p.ids.shape[1]), value=gen.end_id) for p in parts])
    return Generated(ids, torch.cat([p.lengths for p in parts]), gen.end_id)


def to_tokenizer_ids(gen: ARGenerator, row: torch.Tensor) -> torch.Tensor:
    """One generated sequence -> the tokenizer's ids: (1, N) for images, (1, L, T) for residual audio."""
    tokens = gen.config.tokens
    pattern = tokens.get("pattern")
    info = tokens.get("tokenizer") or {}
    if info.get("modality") != "audio" and int(tokens.get("num_levels") or 1) == 1:
        return row[None]
    ids = unflatten_levels(row[None].cpu(), pattern, int(tokens["num_levels"]), int(tokens["token_vocab_size"]))
    return ids.transpose(1, 2) if info.get("ids_layout") == "BTL" else ids


@torch.no_grad()
def decode_samples(gen: ARGenerator, tokenizer: Any, out: Generated) -> torch.Tensor | list[torch.Tensor]:
    """Images (n, 3, H, W) in [0, 1] (grouped by length for variable-length tokens), or a list of
    audio clips (C, T) for audio tokenizers."""
    device = next(tokenizer.parameters()).device
    rows = out.rows()
    if any(len(r) == 0 for r in rows):
        raise InputError("a sample ended before its first token; sample with min_length >= 1")
    if tokenizer.modality == "audio":
        return [tokenizer.decode(to_tokenizer_ids(gen, r).to(device))[0].float().cpu() for r in rows]
    images: list[torch.Tensor | None] = [None] * len(rows)
    for n in sorted({len(r) for r in rows}):
        idx = [i for i, r in enumerate(rows) if len(r) == n]
        dec = tokenizer.decode(torch.stack([rows[i] for i in idx]).to(device)).float().cpu()
        for j, i in enumerate(idx):
            images[i] = dec[j]
    return torch.stack(images)  # type: ignore[arg-type]


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """(n, 3, H, W) in [0, 1] -> one PNG grid of ``nrow`` columns (default: about square), atomically."""
    from torchvision.utils import make_grid

    from zoo.data import save_image

    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    return save_image(make_grid(images, nrow=nrow, padding=2, pad_value=1.0), path)


def save_audio(clips: list[torch.Tensor], path: str | Path, sample_rate: int) -> list[Path]:
    """Clips (C, T) -> ``path`` (one clip) or ``path_000.wav``, ``path_001.wav``, ... (atomically)."""
    import soundfile as sf

    from zoo.io import atomic_write

    path = Path(path)
    targets = [path] if len(clips) == 1 else [path.with_name(f"{path.stem}_{i:03d}{path.suffix or '.wav'}")
                                              for i in range(len(clips))]
    for clip, target in zip(clips, targets):
        data = clip.clamp(-1, 1).T.numpy()
        atomic_write(target, lambda p, d=data: sf.write(str(p), d, sample_rate, format="WAV"))
    return targets


# -- gFID ----------------------------------------------------------------------------------------
def generation_fid(images: torch.Tensor, data_dir: str | Path, *, limit: int | None = None,
                   feature_extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   fid_weights: str | Path | None = None, device: str | torch.device = "cpu",
                   batch_size: int = 32) -> dict[str, Any]:
    """gFID: FID between generated ``images`` (n, 3, H, W) in [0, 1] and the images under ``data_dir``
    (center-cropped to the same size), with the Inception features and Fréchet distance of ``zoo eval``
    (:mod:`zoo.metrics.fid`)."""
    from zoo.data import list_images, load_image
    from zoo.metrics.fid import FIDAccumulator, load_fid_extractor

    if images.ndim != 4 or images.shape[0] < 2:
        raise InputError(f"gFID needs at least 2 generated images (n, 3, H, W), got {tuple(images.shape)}")
    extractor = feature_extractor or load_fid_extractor(fid_weights, device=device)
    acc = FIDAccumulator(extractor)
    files = list_images(data_dir)[:limit]
    size = images.shape[-1]
    for i in range(0, len(files), batch_size):
        acc.update("real", torch.cat([load_image(f, size) for f in files[i:i + batch_size]]))
    for i in range(0, images.shape[0], batch_size):
        acc.update("generated", images[i:i + batch_size])
    n = min(len(files), images.shape[0])
    return {"gfid": acc.compute("real", "generated"), "num_generated": int(images.shape[0]), "num_real": len(files),
            "extractor": getattr(extractor, "source", None) or getattr(extractor, "name", type(extractor).__name__),
            "note": f"FID on {n} images is biased upward (the protocol uses 50,000); compare only runs on the "
                    "same data and counts" if n < 2048 else None}


def generator_summary(gen: ARGenerator) -> dict[str, Any]:
    c = dataclasses.asdict(gen.config)
    c.pop("tokens")
    return {"generator": gen.name, "params": sum(p.numel() for p in gen.parameters()), **c}


# -- command line --------------------------------------------------------------------------------
def add_generate_args(s) -> None:
    """Arguments of ``zoo generate``."""
    s.add_argument("--generator", required=True, type=Path, help="export folder (config.json) or a training .ckpt")
    s.add_argument("--class", dest="cls", default=None, help="class index or name (default: every class in turn)")
    s.add_argument("-n", "--num-samples", type=int, default=16)
    s.add_argument("-o", "--output", required=True, type=Path, help="grid .png (images) or .wav (audio)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=0, help="0 = off")
    s.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    s.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    s.add_argument("--num-tokens", type=int, default=None, help="generate exactly this many tokens")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-cache", action="store_true", help="recompute every step (same ids, slower)")
    s.add_argument("--tokenizer", default=None, help="decode with this tokenizer instead of the recorded one")
    s.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, ...")
    s.add_argument("--fid-data", type=Path, default=None, help="folder of real images: report gFID against it")
    s.add_argument("--fid-weights", default=None, help="Inception FID weights file (see zoo eval)")
    s.add_argument("--fid-limit", type=int, default=None, help="use at most this many real images")


def run_generate_cli(args) -> int:
    import json
    import sys

    if args.num_samples < 1:
        raise InputError(f"-n must be >= 1, got {args.num_samples}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gen = load_generator(args.generator, map_location=device)
    tok = load_tokenizer_of(gen, args.tokenizer, device=device)
    labels = class_labels(gen, args.cls, args.num_samples)
    out = sample(gen, labels, seed=args.seed, length=args.num_tokens, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg, use_cache=not args.no_cache)
    decoded = decode_samples(gen, tok, out)
    report: dict[str, Any] = {"generator": str(args.generator), "tokenizer": tok.name, "n": args.num_samples,
                              "class": args.cls, "lengths": out.lengths.tolist()}
    if isinstance(decoded, list):
        report["files"] = [str(p) for p in save_audio(decoded, args.output, int(tok.sample_rate))]
    else:
        report["files"] = [str(save_grid(decoded, args.output))]
        if args.fid_data is not None:
            report.update(generation_fid(decoded, args.fid_data, limit=args.fid_limit, fid_weights=args.fid_weights,
                                         device=device))
    print(json.dumps(report))
    print(f"wrote {', '.join(report['files'][:3])}", file=sys.stderr)
    return 0
