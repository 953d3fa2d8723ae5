"""``zoo tokenize-dataset``: encode a folder of images or audio into token shards.

Files are listed (sorted) and cut into shards of ``shard_size`` consecutive items; shard ``s`` is
encoded by rank ``s % world_size`` (Lightning's predict loop: one process per device, any
``strategy``/``num_nodes``). A DataLoader with workers reads and hashes the files; the tokenizer
encodes whole batches on the device; :class:`ShardWriter` writes each shard atomically as soon as
its last item is encoded. A rerun skips every shard already written by the same settings (resume);
rank 0 then writes ``manifest.json`` from the shard headers.

Any tokenizer with the zoo's contract works: image tokenizers (``encode(images)``, variable-length
ones with ``encode(images, num_tokens=k)`` or ``encode(images, target=...)`` returning ragged ids)
and audio tokenizers (``encode(wav, bandwidth=b)`` -> residual ids (B, L, T), or (B, T, L); the
layout is read from ``model.ids_layout`` or inferred from the frame rate).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data import IMAGE_EXTENSIONS, list_files, to_tensor
from zoo.errors import InputError
from zoo.tokens.shards import (FORMAT, SHARD_GLOB, ShardError, ShardItems, read_header, run_hash, shard_name,
                               write_manifest, write_shard)

log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


# -- sources -------------------------------------------------------------------------------------
def list_sources(root: str | Path, modality: str) -> tuple[list[Path], list[int], list[str]]:
    """Sorted files, their labels and the class names: when every file sits in a subfolder, the
    first folder level names its class (ImageNet layout), else every label is -1 and no classes."""
    root = Path(root)
    files = list_files(root, IMAGE_EXTENSIONS if modality == "image" else AUDIO_EXTENSIONS, modality)
    rel = [f.relative_to(root) for f in files]
    if all(len(r.parts) > 1 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        lookup = {c: i for i, c in enumerate(classes)}
        return files, [lookup[r.parts[0]] for r in rel], classes
    return files, [-1] * len(files), []


def read_audio(raw: bytes, sample_rate: int) -> torch.Tensor:
    """File bytes -> mono (T,) float32 at ``sample_rate``."""
    import soundfile as sf
    import torchaudio

    data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise InputError("the file holds no samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
    return wav if sr == sample_rate else torchaudio.functional.resample(wav, sr, sample_rate)


class SourceFiles(Dataset):
    """Items ``positions`` of ``files``: dict(x, pos, sha256, error); unreadable files come back with
    ``x=None`` and the reason (they are recorded as skipped, not fatal)."""

    def __init__(self, files: list[Path], positions: list[int], modality: str, *, size: int | None = None,
                 sample_rate: int | None = None):
        self.files, self.positions, self.modality = files, positions, modality
        self.size, self.sample_rate = size, sample_rate

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pos = self.positions[i]
        path = self.files[pos]
        try:
            raw = path.read_bytes()
            if self.modality == "image":
                from PIL import Image

                with Image.open(io.BytesIO(raw)) as im:
                    x = to_tensor(im.convert("RGB"), self.size)
            else:
                x = read_audio(raw, self.sample_rate)
            return {"x": x, "pos": pos, "sha256": hashlib.sha256(raw).hexdigest(), "error": None}
        except Exception as e:  # PIL/soundfile raise many types for bad files: all mean "unreadable"
            return {"x": None, "pos": pos, "sha256": "", "error": f"{type(e).__name__}: {e}"}


def collate_sources(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack readable images, or zero-pad audio to the longest clip (``num_samples`` keeps the truth)."""
    good = [it["x"] for it in items if it["x"] is not None]
    x = None
    if good and good[0].ndim == 3:
        x = torch.stack(good)
    elif good:
        longest = max(w.numel() for w in good)
        x = torch.zeros(len(good), 1, longest)
        for row, w in enumerate(good):
            x[row, 0, :w.numel()] = w
    return {"x": x, "num_samples": [int(w.shape[-1]) for w in good], "pos": [it["pos"] for it in items],
            "sha256": [it["sha256"] for it in items], "error": [it["error"] for it in items]}


# -- the tokenizer contract ----------------------------------------------------------------------
def ragged_rows(out: Any, batch: int) -> list[torch.Tensor]:
    """Whatever a variable-length ``encode`` returns -> one 1D id tensor per item: (B, N) ids, a list
    of (N_i,) tensors, a nested tensor, ``(ids (B, N), lengths (B,))`` or an object/dict with
    ``ids`` and ``lengths``."""
    ids = lengths = None
    if isinstance(out, dict):
        ids, lengths = out.get("ids"), out.get("lengths")
    elif hasattr(out, "ids") and not isinstance(out, torch.Tensor):
        ids, lengths = out.ids, getattr(out, "lengths", None)
    elif isinstance(out, torch.Tensor) and out.is_nested:
        return list(out.unbind())
    elif isinstance(out, torch.Tensor):
        ids = out
    elif isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor) and out[0].ndim == 2:
        ids, lengths = out[0], out[1] if len(out) > 1 else None
    elif isinstance(out, (list, tuple)) and all(isinstance(t, torch.Tensor) and t.ndim == 1 for t in out):
        rows = list(out)
        ids = None
    else:
        raise InputError(f"encode returned {type(out).__name__}; expected ids (B, N), a list of (N_i,) tensors "
                         "or (ids, lengths)")
    if ids is not None:
        if isinstance(ids, torch.Tensor) and ids.is_nested:
            rows = list(ids.unbind())
        elif isinstance(ids, torch.Tensor) and ids.ndim == 2:
            n = [ids.shape[1]] * ids.shape[0] if lengths is None else [int(v) for v in torch.as_tensor(lengths)]
            rows = [ids[i, :n[i]] for i in range(ids.shape[0])]
        else:
            rows = list(ids)
    if len(rows) != batch:
        raise InputError(f"encode returned ids for {len(rows)} items, the batch has {batch}")
    return rows


def audio_layout(model: Any, ids: torch.Tensor, num_samples: int) -> str:
    """"BLT" (levels x frames, audiocraft) or "BTL": ``model.ids_layout`` if set, else the axis whose
    size is closest to the expected frame count (ties: "BLT")."""
    explicit = getattr(model, "ids_layout", None)
    if explicit in ("BLT", "BTL"):
        return explicit
    frames = math.ceil(num_samples * float(model.frame_rate) / int(model.sample_rate))
    return "BTL" if abs(ids.shape[1] - frames) < abs(ids.shape[2] - frames) else "BLT"


def encode_batch(model: Any, x: torch.Tensor, settings: dict[str, Any], num_samples: list[int]) -> tuple[
        list[np.ndarray], str | None]:
    """Encode one batch with the generic contract -> per item (N_i,) or (T_i, L) ids, and the audio layout."""
    if model.modality == "image":
        kw: dict[str, Any] = {}
        k, target = settings.get("num_tokens"), settings.get("target")
        if k is not None and getattr(model, "variable_length", False):
            kw["num_tokens"] = k
        elif k is not None and k != int(model.num_tokens):
            raise InputError(f"--num-tokens {k}: {model.name} is a fixed-length tokenizer with {model.num_tokens} tokens")
        if target is not None:
            kw["target"] = target
        rows = ragged_rows(model.encode(x, **kw), x.shape[0])
        return [r.to("cpu", torch.int64).numpy() for r in rows], None
    kw = {} if settings.get("bandwidth") is None else {"bandwidth": settings["bandwidth"]}
    channels = int(getattr(model, "channels", 1))
    if channels > 1:  # files are read as mono: the same signal on every channel
        x = x.expand(-1, channels, -1)
    if hasattr(model, "encode_padded") and x.shape[0] > 1:
        ids = model.encode_padded(x, num_samples, **kw)  # exact per-item ids despite the padding
    else:
        ids = model.encode(x, **kw)
    if ids.ndim != 3:
        raise InputError(f"{type(model).__name__}.encode returned ids of shape {tuple(ids.shape)}; residual audio "
                         "ids must be (B, L, T) or (B, T, L)")
    layout = audio_layout(model, ids, max(num_samples))
    ids = (ids if layout == "BTL" else ids.transpose(1, 2)).to("cpu", torch.int64)  # (B, T, L)
    rate = float(model.frame_rate) / int(model.sample_rate)
    return [ids[i, :min(ids.shape[1], math.ceil(n * rate))].numpy() for i, n in enumerate(num_samples)], layout


# -- Lightning: predict loop and shard writer ----------------------------------------------------
class TokenizeModule(L.LightningModule):
    """Wraps a tokenizer for ``trainer.predict``: batches of files -> per-item ids (on the CPU)."""

    def __init__(self, model: torch.nn.Module, settings: dict[str, Any]):
        super().__init__()
        self.model = model.eval()
        self.settings = settings
        self.layout: str | None = None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        rows: list[np.ndarray] = []
        if batch["x"] is not None:
            rows, layout = encode_batch(self.model, batch["x"], self.settings, batch["num_samples"])
            self.layout = layout or self.layout
        it = iter(rows)
        tokens = [None if err else next(it) for err in batch["error"]]
        return {"pos": batch["pos"], "tokens": tokens, "sha256": batch["sha256"], "error": batch["error"]}


class ShardPlan:
    """Which items go to which shard and which shards this rank still has to write."""

    def __init__(self, files: list[Path], root: Path, labels: list[int], out: Path, shard_size: int,
                 settings: dict[str, Any]):
        if shard_size < 1:
            raise InputError(f"--shard-size must be >= 1, got {shard_size}")
        self.files, self.root, self.labels, self.out = files, root, labels, out
        self.shard_size, self.settings = shard_size, settings
        self.num_shards = math.ceil(len(files) / shard_size)

    def members(self, s: int) -> range:
        return range(s * self.shard_size, min(len(self.files), (s + 1) * self.shard_size))

    def rel(self, pos: int) -> str:
        return self.files[pos].relative_to(self.root).as_posix()

    def run(self, s: int) -> str:
        return run_hash(self.settings, [self.rel(p) for p in self.members(s)])

    def finished(self, s: int) -> bool:
        path = self.out / shard_name(s)
        if not path.is_file():
            return False
        try:
            return read_header(path)["run"] == self.run(s)
        except ShardError as e:
            log.warning("%s; it will be rewritten", e)
            return False

    def pending(self, rank: int, world: int) -> list[int]:
        return [s for s in range(rank, self.num_shards, world) if not self.finished(s)]


class SourceDataModule(L.LightningDataModule):
    """The per-rank DataLoader over the unfinished shards of this rank (computed on each rank)."""

    def __init__(self, plan: ShardPlan, modality: str, batch_size: int, num_workers: int, **reader: Any):
        super().__init__()
        self.plan, self.modality, self.batch_size, self.num_workers, self.reader = \
            plan, modality, batch_size, num_workers, reader
        self.shards: list[int] = []

    def predict_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        self.shards = self.plan.pending(rank, world)
        positions = [p for s in self.shards for p in self.plan.members(s)]
        done = len(range(rank, self.plan.num_shards, world)) - len(self.shards)
        if done:
            log.info("rank %d: %d finished shard(s) kept, %d to encode", rank, done, len(self.shards))
        ds = SourceFiles(self.plan.files, positions, self.modality, **self.reader)
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_sources,
                          pin_memory=torch.cuda.is_available())


class ShardWriter(L.Callback):
    """Collects predicted items and writes each shard (atomically) once all its items are in."""

    def __init__(self, plan: ShardPlan, vocab_size: int):
        self.plan, self.vocab_size = plan, vocab_size
        self.pending: dict[int, dict[int, tuple]] = {}
        self.written: list[int] = []
        self.layout: str | None = None

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        plan = self.plan
        self.layout = getattr(pl_module, "layout", None)
        for pos, tok, sha, err in zip(outputs["pos"], outputs["tokens"], outputs["sha256"], outputs["error"]):
            s = pos // plan.shard_size
            got = self.pending.setdefault(s, {})
            got[pos] = (tok, sha, err)
            if len(got) == len(plan.members(s)):
                self._write(s, self.pending.pop(s))

    def _write(self, s: int, got: dict[int, tuple]) -> None:
        plan = self.plan
        ok = [p for p in plan.members(s) if got[p][2] is None]
        skipped = [(plan.rel(p), got[p][2]) for p in plan.members(s) if got[p][2] is not None]
        for f, why in skipped:
            log.warning("skipping %s: %s", f, why)
        items = ShardItems(tokens=[got[p][0] for p in ok], labels=[plan.labels[p] for p in ok], index=ok,
                           files=[plan.rel(p) for p in ok], sha256=[got[p][1] for p in ok], skipped=skipped)
        write_shard(plan.out / shard_name(s), items, vocab_size=self.vocab_size, run=plan.run(s),
                    extra={"ids_layout": self.layout} if self.layout else None)
        self.written.append(s)


# -- the whole export ----------------------------------------------------------------------------
def tokenizer_info(model: Any, model_id: str, revision: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest's description of the tokenizer and of the token shape it produced."""
    info: dict[str, Any] = {"id": model_id, "name": getattr(model, "name", None), "family": getattr(model, "family", None),
                            "revision": revision, "modality": model.modality, "vocab_size": int(model.vocab_size),
                            "num_parameters": sum(p.numel() for p in model.parameters())}
    if model.modality == "image":
        variable = bool(getattr(model, "variable_length", False))
        fixed = settings.get("num_tokens") if variable else int(model.num_tokens)
        if variable and settings.get("target") is not None:
            fixed = None
        info.update(num_levels=1, input_size=int(model.input_size), variable_length=fixed is None,
                    token_shape=[fixed], max_tokens=int(model.num_tokens))
    else:
        info.update(num_levels=int(getattr(model, "num_levels", 1)), sample_rate=int(model.sample_rate),
                    frame_rate=float(model.frame_rate), variable_length=True,
                    token_shape=[int(getattr(model, "num_levels", 1)), None])
    return info


def tokenize_dataset(model: Any, data: str | Path, out: str | Path, *, model_id: str | None = None,
                     revision: str | None = None, num_tokens: int | None = None, target: Any = None,
                     bandwidth: float | None = None, shard_size: int = 1024, batch_size: int = 32,
                     num_workers: int = 2, accelerator: str = "auto", devices: Any = "auto",
                     strategy: str = "auto", num_nodes: int = 1, progress: bool = True) -> dict[str, Any]:
    """Encode every file under ``data`` into token shards under ``out``; returns the manifest (rank 0)."""
    modality = getattr(model, "modality", "")
    if modality not in ("image", "audio"):
        raise InputError(f"{type(model).__name__} has modality {modality!r}; tokenize-dataset takes image or audio "
                         "tokenizers")
    if num_tokens is not None and target is not None:
        raise InputError("give --num-tokens or --target, not both")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    data, out = Path(data), Path(out)
    model_id = model_id or getattr(model, "name", type(model).__name__)
    files, labels, classes = list_sources(data, modality)
    settings = {"format": FORMAT, "model": model_id, "revision": revision, "num_tokens": num_tokens,
                "target": target, "bandwidth": bandwidth, "shard_size": shard_size}
    reader = {"size": int(model.input_size)} if modality == "image" else {"sample_rate": int(model.sample_rate)}
    settings.update(reader)
    out.mkdir(parents=True, exist_ok=True)
    plan = ShardPlan(files, data, labels, out, shard_size, settings)
    writer = ShardWriter(plan, int(model.vocab_size))
    module = TokenizeModule(model, settings)
    dm = SourceDataModule(plan, modality, batch_size, num_workers, **reader)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                        logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        enable_progress_bar=progress, enable_model_summary=False, callbacks=[writer])
    trainer.predict(module, datamodule=dm, return_predictions=False)
    if writer.pending:
        raise ShardError(f"shards {sorted(writer.pending)} did not receive all their items")
    trainer.strategy.barrier("tokenize-dataset")
    if not trainer.is_global_zero:
        return {}
    return build_manifest(out, plan, tokenizer_info(model, model_id, revision, settings), classes, settings)


def build_manifest(out: Path, plan: ShardPlan, info: dict[str, Any], classes: list[str],
                   settings: dict[str, Any]) -> dict[str, Any]:
    """Read every shard header (not the tokens) and write ``manifest.json``."""
    shards, cols = [], {"file": [], "sha256": [], "label": [], "length": []}
    skipped: list[list[str]] = []
    data_hash = hashlib.sha256()
    for s in range(plan.num_shards):
        header = read_header(out / shard_name(s))
        if header["run"] != plan.run(s):
            raise ShardError(f"token shard {out / shard_name(s)} was written with other settings or files")
        shards.append({"name": shard_name(s), "num_items": len(header["lengths"]),
                       "num_tokens": int(header["lengths"].sum())})
        for (f, sha), lab, n in zip(header["items"], header["labels"].tolist(), header["lengths"].tolist()):
            cols["file"].append(f)
            cols["sha256"].append(sha)
            cols["label"].append(int(lab))
            cols["length"].append(int(n))
            data_hash.update(f.encode() + b"\0" + bytes.fromhex(sha))
        skipped += header["skipped"]
        if len(header["shape"]) == 2:  # residual ids: the levels actually kept (a bandwidth keeps a prefix)
            info.update(num_levels=int(header["shape"][1]), token_shape=[int(header["shape"][1]), None])
        if header["metadata"].get("ids_layout"):  # how the tokenizer laid out its (B, ., .) ids
            info["ids_layout"] = header["metadata"]["ids_layout"]
    stray = sorted(p.name for p in out.glob(SHARD_GLOB) if p.name not in {s["name"] for s in shards})
    if stray:
        log.warning("%s holds shards not in this export (left alone, not in the manifest): %s", out, stray[:5])
    manifest = {"format": FORMAT, "tokenizer": info, "settings": settings,
                "data": {"root": str(plan.root), "num_files": len(plan.files), "hash": "sha256:" + data_hash.hexdigest(),
                         "num_skipped": len(skipped), "skipped": skipped[:100]},
                "classes": classes, "num_items": len(cols["file"]), "shards": shards, "items": cols}
    write_manifest(out, manifest)
    return manifest


# -- command line --------------------------------------------------------------------------------
def add_tokenize_dataset_args(s) -> None:
    """Arguments of ``zoo tokenize-dataset``."""
    s.add_argument("--model", required=True, help="local dir, checkpoints/ name, Hub repo id, or registered name")
    s.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    s.add_argument("--random-init", action="store_true", help="allow a registered name with fresh weights")
    s.add_argument("--data", required=True, type=Path, help="folder of images or audio (class subfolders = labels)")
    s.add_argument("--out", required=True, type=Path, help="output folder for shard-*.safetensors + manifest.json")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--num-tokens", type=int, default=None, help="tokens per image (variable-length models)")
    g.add_argument("--target", default=None, help="adaptive length per image, e.g. 'psnr>=25' (ragged tokens)")
    s.add_argument("--bandwidth", type=float, default=None, help="kbps for audio codecs (a prefix of levels)")
    s.add_argument("--shard-size", type=int, default=1024, help="items per shard (default 1024)")
    s.add_argument("--batch-size", type=int, default=32, help="items encoded at once (audio: clips, zero-padded)")
    s.add_argument("--num-workers", type=int, default=2, help="DataLoader workers reading files")
    s.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    s.add_argument("--devices", default="auto", help="Lightning devices: auto, 1, 4, '0,1'")
    s.add_argument("--strategy", default="auto", help="Lightning strategy for several devices: ddp, ...")
    s.add_argument("--num-nodes", type=int, default=1)
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_tokenize_dataset_cli(args) -> int:
    import json
    import sys

    import zoo

    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.random_init and args.model in zoo.list_models():
        log.warning("%s: using RANDOM weights (--random-init)", args.model)
        model = zoo.create(args.model).eval()
    else:
        model = zoo.from_pretrained(args.model, revision=args.revision)
    manifest = tokenize_dataset(model, args.data, args.out, model_id=args.model, revision=args.revision,
                                num_tokens=args.num_tokens, target=args.target, bandwidth=args.bandwidth,
                                shard_size=args.shard_size, batch_size=args.batch_size, num_workers=args.num_workers,
                                accelerator=args.accelerator, devices=devices, strategy=args.strategy,
                                num_nodes=args.num_nodes, progress=not args.no_progress)
    if manifest:
        lengths = manifest["items"]["length"]
        print(json.dumps({"out": str(args.out), "items": manifest["num_items"], "shards": len(manifest["shards"]),
                          "skipped": manifest["data"]["num_skipped"], "classes": len(manifest["classes"]),
                          "vocab_size": manifest["tokenizer"]["vocab_size"],
                          "tokens_per_item": [min(lengths), max(lengths)] if lengths else None}))
        print(f"wrote {manifest['num_items']} item(s) in {len(manifest['shards'])} shard(s) to {args.out}",
              file=sys.stderr)
    return 0
