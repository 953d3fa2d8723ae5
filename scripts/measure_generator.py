"""Grid and gFID of a trained AR generator, next to the FID of its tokenizer's own reconstructions.

    python scripts/measure_generator.py --generator checkpoints/gpt_nano_titok_nano_32 \
        --tokens TOKENS_DIR --data DATA_DIR --out results/gpt_nano_titok_nano_32 [--cfg 2.0]
        [--real-per-class 40] [--gen-per-class 20] [--grid-per-class 8]

Writes OUT_grid.png (one row per class) and OUT.json: gFID (generated vs real crops) and the FID of
the tokenizer's reconstructions of those real crops' tokens (the floor a generator of these tokens
can reach on the same data and counts), with the Inception features of ``zoo eval``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zoo.data import load_image
from zoo.generate import decode_samples, load_generator, load_tokenizer_of, sample, save_grid
from zoo.metrics.fid import FIDAccumulator, load_fid_extractor
from zoo.tokens.dataset import TokenDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--tokens", required=True, type=Path, help="the shard folder the generator trained on")
    ap.add_argument("--data", required=True, type=Path, help="the image folder those shards came from")
    ap.add_argument("--out", required=True, help="output prefix")
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--real-per-class", type=int, default=40)
    ap.add_argument("--gen-per-class", type=int, default=20)
    ap.add_argument("--grid-per-class", type=int, default=8)
    ap.add_argument("--fid-weights", default=None)
    args = ap.parse_args()

    t0 = time.time()
    gen = load_generator(args.generator)
    tok = load_tokenizer_of(gen)
    classes = gen.config.tokens["classes"] or ["all"]
    k = len(classes)
    grid = decode_samples(gen, tok, sample(gen, torch.arange(k).repeat_interleave(args.grid_per_class), seed=0,
                                           cfg_scale=args.cfg))
    save_grid(grid, args.out + "_grid.png", nrow=args.grid_per_class)

    ds = TokenDataset(args.tokens)
    files = ds.manifest["items"]["file"]
    labels = ds.manifest["items"]["label"]
    real_idx = [i for c in range(k) for i in [j for j, lab in enumerate(labels) if lab in (c, -1)][:args.real_per_class]]
    size = int(tok.input_size)
    real = torch.cat([load_image(args.data / files[i], size) for i in real_idx])
    recon = torch.cat([tok.decode(torch.stack([ds[i][0] for i in real_idx[s:s + 64]]))
                       for s in range(0, len(real_idx), 64)])[::2]
    generated = decode_samples(gen, tok, sample(gen, torch.arange(k).repeat_interleave(args.gen_per_class), seed=1,
                                                cfg_scale=args.cfg))
    extractor = load_fid_extractor(args.fid_weights)
    acc = FIDAccumulator(extractor)
    for name, x in (("real", real), ("generated", generated), ("recon", recon)):
        for s in range(0, len(x), 32):
            acc.update(name, x[s:s + 32])
    result = {"generator": str(args.generator), "tokenizer": tok.name, "classes": classes, "cfg_scale": args.cfg,
              "temperature": 1.0, "num_real": len(real), "num_generated": len(generated), "num_recon": len(recon),
              "gfid": acc.compute("real", "generated"), "fid_token_reconstructions": acc.compute("real", "recon"),
              "fid_extractor": getattr(extractor, "source", None), "seconds": round(time.time() - t0, 1),
              "note": "FID on a few hundred 64-px images is biased far upward (the protocol uses 50,000 at 256 px); "
                      "compare only runs on the same data and counts"}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
