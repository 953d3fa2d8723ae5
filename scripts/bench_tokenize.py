"""Throughput of ``zoo tokenize-dataset`` against a plain encode loop on preloaded tensors.

    python scripts/bench_tokenize.py [--models titok_nano_32,...] [--data DIR] [--n 512] [--batch-size 64]
                                     [--num-workers 2] [--device auto] [--repeats 2]

For each model: (a) the whole export (file reading/decoding in DataLoader workers, encode through
Lightning's predict loop, shard writing, manifest) on a fresh output folder, and (b) a loop that
calls ``model.encode`` one batch at a time on tensors already in memory (on the device: no data
loading at all). Prints one JSON line per model with items/s (and audio seconds/s) of both and
their ratio (a / b; the target on a GPU is >= 0.9). Without ``--data`` it writes ``--n`` synthetic
images (64 px PNGs) or 2 s noise clips into a temporary folder. Best of ``--repeats`` runs each.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_data(root: Path, modality: str, n: int, size: int, sample_rate: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if modality == "image":
            img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"img_{i:05d}.png")
        else:
            import soundfile as sf

            sf.write(root / f"clip_{i:05d}.wav", rng.uniform(-0.5, 0.5, 2 * sample_rate).astype(np.float32), sample_rate)
    return root


def preload(model, files: list[Path]) -> list[torch.Tensor]:
    from zoo.tokens.export import SourceFiles

    ds = SourceFiles(files, list(range(len(files))), model.modality,
                     **({"size": int(model.input_size)} if model.modality == "image" else
                        {"sample_rate": int(model.sample_rate)}))
    return [ds[i]["x"] for i in range(len(ds))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, items: list[torch.Tensor], batch_size: int, device: torch.device) -> float:
    """Seconds to encode every item, a batch at a time, tensors already on the device."""
    if model.modality == "image":
        batches = [torch.stack(items[i:i + batch_size]).to(device) for i in range(0, len(items), batch_size)]
    else:  # equal-length clips here: one tensor per batch
        batches = [torch.stack(items[i:i + batch_size])[:, None].to(device) for i in range(0, len(items), batch_size)]
    model.encode(batches[0])  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        model.encode(b)
    sync(device)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="titok_nano_32")
    ap.add_argument("--data", type=Path, default=None, help="folder of images/audio (default: synthetic)")
    ap.add_argument("--n", type=int, default=512, help="synthetic items when --data is not given")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--random-init", action="store_true", help="registered names without weights: fresh weights")
    args = ap.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    import zoo
    from zoo.data import IMAGE_EXTENSIONS, list_files
    from zoo.tokens.export import AUDIO_EXTENSIONS, tokenize_dataset

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    for name in args.models.split(","):
        if args.random_init and name in zoo.list_models():
            model = zoo.create(name).eval().to(device)
        else:
            model = zoo.from_pretrained(name, map_location=str(device))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = args.data or synthetic_data(tmp / "data", model.modality, args.n,
                                               int(getattr(model, "input_size", 64) or 64),
                                               int(getattr(model, "sample_rate", 16000) or 16000))
            exts = IMAGE_EXTENSIONS if model.modality == "image" else AUDIO_EXTENSIONS
            files = list_files(data, exts, model.modality)
            items = preload(model, files)
            seconds = sum(x.shape[-1] for x in items) / float(model.sample_rate) if model.modality == "audio" else None
            loop = min(plain_loop(model, items, args.batch_size, device) for _ in range(args.repeats))
            export = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                tokenize_dataset(model, data, tmp / f"out{r}", model_id=name, batch_size=args.batch_size,
                                 num_workers=args.num_workers, progress=False,
                                 accelerator="gpu" if device.type == "cuda" else "cpu", devices=1)
                export.append(time.perf_counter() - t0)
            best = min(export)
            row = {"model": name, "modality": model.modality, "device": torch.cuda.get_device_name(device)
                   if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
                   "items": len(files), "batch_size": args.batch_size, "num_workers": args.num_workers,
                   "tokenize_dataset_items_per_s": round(len(files) / best, 2),
                   "plain_loop_items_per_s": round(len(files) / loop, 2),
                   "ratio": round(loop / best, 3)}
            if seconds is not None:
                row["tokenize_dataset_audio_s_per_s"] = round(seconds / best, 2)
                row["plain_loop_audio_s_per_s"] = round(seconds / loop, 2)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
