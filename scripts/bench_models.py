#!/usr/bin/env python
"""Benchmark encode/decode throughput (images/s) of the zoo's registered image tokenizers.

For every selected model (fresh weights; throughput does not depend on them) and every dtype,
times ``model.encode(images)`` and ``model.decode(ids)`` at ``--batch`` (eval, no grad; on CUDA
with a synchronize around each timed call) and prints one JSON line per (model, implementation,
dtype): images/s, ms per batch, and the ratios against the baselines measured in the same run
(``vs_fp32`` for other dtypes; ``vs_official`` for the zoo's rows when ``--official`` is given).

``--official PATH`` (a checkout of bytedance/1d-tokenizer; its code imports omegaconf and accelerate) also times the
official TiTok implementation with the same weights (the official model is built from the
variant's config and its state dict converted with ``zoo.convert.titok``) and says whether the
ids are identical. Only the official ViT sizes (small/base/large) exist there.

    python scripts/bench_models.py                                   # every image model, batch 32
    python scripts/bench_models.py --models titok_nano_32 --batch 8 --device cpu
    python scripts/bench_models.py --models 'titok_*' --official ~/src/1d-tokenizer --dtypes bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(HERE), HERE):  # the zoo, and bench_quantize beside this script
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_quantize import device_name, sync  # noqa: E402
from zoo.registry import create, get_entry, list_models  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def time_ms(fn, device: str, reps: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def image_models(patterns: list[str] | None) -> list[str]:
    names = [n for n in list_models() if getattr(get_entry(n).model_class, "modality", "") == "image"]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return names


# -- the official TiTok -------------------------------------------------------------------------------------
_VIT = {512: "small", 768: "base", 1024: "large"}


def official_titok(path: str, model):
    """The official TiTok with the zoo model's weights, or None when the variant has no official sizes."""
    c = model.config
    if model.family != "titok" or c.encoder_width not in _VIT or c.decoder_width not in _VIT:
        return None
    if path not in sys.path:
        sys.path.insert(0, path)
    from modeling.titok import TiTok as OfficialTiTok  # the checkout's code, not the zoo's

    from zoo.convert.titok import convert_titok_state_dict

    cfg = {"model": {"vq_model": {
        "codebook_size": c.codebook_size, "token_size": c.token_dim, "use_l2_norm": c.use_cosine,
        "commitment_cost": c.commitment_weight, "vit_enc_model_size": _VIT[c.encoder_width],
        "vit_dec_model_size": _VIT[c.decoder_width], "vit_enc_patch_size": c.patch_size,
        "vit_dec_patch_size": c.patch_size, "num_latent_tokens": c.num_tokens,
        "finetune_decoder": c.decoder_head == "proxy", "is_legacy": bool(c.legacy_layout), "quantize_mode": "vq"}},
        "dataset": {"preprocessing": {"crop_size": c.image_size}}}
    official = OfficialTiTok(cfg).eval()
    model.load_state_dict(convert_titok_state_dict(official.state_dict(), model))
    return official


def official_calls(official):
    def encode(images):
        return official.encode(images)[1]["min_encoding_indices"].reshape(images.shape[0], -1)

    def decode(ids):
        return official.decode_tokens(ids[:, None, :]).clamp(0.0, 1.0)

    return encode, decode


# -- one model ----------------------------------------------------------------------------------------------
@torch.no_grad()
def bench_model(name: str, args, device: str) -> list[dict]:
    torch.manual_seed(0)
    model = create(name).eval()
    official = official_titok(args.official, model) if args.official else None
    size = model.input_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    base = torch.rand(args.batch, 3, *size, generator=torch.Generator().manual_seed(0))
    rows, fp32 = [], {}
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        impls = {"zoo": (model.to(device, dtype).encode, model.decode)}
        if official is not None:
            impls["official"] = official_calls(official.to(device, dtype))
        images = base.to(device, dtype)
        ids = {}
        for impl, (encode, decode) in impls.items():
            ids[impl] = encode(images)
            enc_ms = time_ms(lambda: encode(images), device, args.reps, args.warmup)
            dec_ms = time_ms(lambda: decode(ids[impl]), device, args.reps, args.warmup)
            rec = dict(model=name, impl=impl, dtype=dtype_name, batch=args.batch, image_size=list(size),
                       num_tokens=int(ids[impl].shape[1]), device=device_name(device),
                       encode_ms=round(enc_ms, 3), decode_ms=round(dec_ms, 3),
                       encode_images_per_s=round(args.batch / enc_ms * 1000, 2),
                       decode_images_per_s=round(args.batch / dec_ms * 1000, 2))
            rows.append(rec)
        if official is not None:
            ours, theirs = rows[-2], rows[-1]
            same = ids["zoo"].shape == ids["official"].shape and torch.equal(ids["zoo"].long(), ids["official"].long())
            ours["ids_equal_official"] = theirs["ids_equal_official"] = bool(same)
            ours["encode_vs_official"] = round(theirs["encode_ms"] / ours["encode_ms"], 3)
            ours["decode_vs_official"] = round(theirs["decode_ms"] / ours["decode_ms"], 3)
    for rec in rows:  # other dtypes against fp32 of the same implementation
        if rec["dtype"] == "float32":
            fp32[rec["impl"]] = rec
    for rec in rows:
        ref = fp32.get(rec["impl"])
        if ref is not None and rec is not ref:
            rec["encode_vs_fp32"] = round(ref["encode_ms"] / rec["encode_ms"], 3)
            rec["decode_vs_fp32"] = round(ref["decode_ms"] / rec["decode_ms"], 3)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | impl | dtype | batch | encode img/s | decode img/s | vs official (enc / dec) | ids equal |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | - | - | - | error: {r['error'][:60]} | | | |")
            continue
        vs = (f"{r['encode_vs_official']:.2f}x / {r['decode_vs_official']:.2f}x" if "encode_vs_official" in r else "-")
        lines.append(f"| {r['model']} | {r['impl']} | {r['dtype']} | {r['batch']} | {r['encode_images_per_s']:.1f} "
                     f"| {r['decode_images_per_s']:.1f} | {vs} | {r.get('ids_equal_official', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="names or glob patterns (default: every registered image model)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per measurement (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--official", metavar="PATH", help="a bytedance/1d-tokenizer checkout: also time the official TiTok")
    ap.add_argument("--no-table", action="store_true", help="do not print the Markdown table to stderr")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.reps < 1 or args.warmup < 0:
        ap.error("--batch and --reps must be >= 1, --warmup >= 0")
    if args.official and not os.path.isdir(os.path.join(args.official, "modeling")):
        ap.error(f"--official {args.official!r} is not a 1d-tokenizer checkout (no modeling/ folder)")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    names = image_models(args.models)
    if not names:
        ap.error(f"no registered image model matches {args.models}")
    rows = []
    for name in names:
        try:
            new = bench_model(name, args, args.device)
        except Exception as e:  # one model failing (a missing extra, out of memory) must not stop the rest
            new = [dict(model=name, error=f"{type(e).__name__}: {e}")]
        with contextlib.suppress(Exception):
            if args.device == "cuda":
                torch.cuda.empty_cache()
        for rec in new:
            print(json.dumps(rec), flush=True)
        rows.extend(new)
    if not args.no_table:
        print("\n" + markdown(rows), file=sys.stderr)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
