"""Regenerate tests/fixtures/one_d_piece/ by running the OFFICIAL One-D-Piece code at a tiny size.

    git clone https://github.com/turingmotors/One-D-Piece /tmp/One-D-Piece   # or any checkout
    pip install --target /tmp/odp_pkgs --no-deps omegaconf antlr4-python3-runtime
    PYTHONPATH=/tmp/odp_pkgs .venv/bin/python scripts/make_one_d_piece_fixtures.py /tmp/One-D-Piece

One-D-Piece's ``modeling/`` is TiTok's (its ``OneDPiece`` subclasses the official ``TiTok``), so the
official code is loaded at tiny sizes exactly as ``scripts/make_titok_fixtures.py`` does for
bytedance/1d-tokenizer (see its docstring: a "tiny" row in the size tables, 64 proxy codes, a tiny
MaskGIT-VQGAN quantizer and pixel decoder; nothing of the math changes, the checkout is not
modified and no official code enters the project), as a two-stage model (legacy encoder layout,
proxy head, VQGAN pixel decoder), the only kind One-D-Piece has. Weights are drawn and stored the
same way (int8 steps of a power of two, the official run uses exactly those values).

Written: ``official.safetensors`` (int8 official state dict, exponents in its metadata),
``io.safetensors`` (two 8-bit input images ``images_uint8`` (2, 3, 64, 64), the official ids (2, 16),
and ``decoded_k``: the
official ``decode_tokens(ids, length=k)`` -- Tail Token Drop's prefix decoding -- for k = 1, 5, 16,
unclamped fp32 pixels) and ``config.json`` (the zoo config and the tiny pixel decoder's size).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_titok_fixtures as titok_fixtures  # noqa: E402  (the shared tiny-size loader of the official code)

LAYOUT = "legacy_two_stage"  # One-D-Piece's only layout
PREFIXES = (1, 5, titok_fixtures.NUM_TOKENS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("official", type=Path, help="path to a turingmotors/One-D-Piece checkout")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/one_d_piece")
    args = p.parse_args()
    titok_fixtures.import_official(args.official.resolve())
    official = importlib.import_module("modeling.one_d_piece").OneDPiece
    # the TiTok fixture maker builds, draws, stores and runs the official model it is given
    titok_fixtures.make(types.SimpleNamespace(TiTok=official), LAYOUT, args.out)
    names = {f"{LAYOUT}.{part}": part for part in ("official.safetensors", "io.safetensors", "json")}
    for old, new in names.items():
        (args.out / old).replace(args.out / new.replace("json", "config.json"))
    # then the prefixes, by the official decode (its weights: exactly the stored int8 values)
    exponents = json.loads(safe_open(str(args.out / "official.safetensors"), "pt").metadata()["scale_exponents"])
    stored = load_file(str(args.out / "official.safetensors"))
    save_file(stored, str(args.out / "official.safetensors"),
              metadata={"source": "turingmotors/One-D-Piece", "scale_exponents": json.dumps(exponents)})
    state = {k: titok_fixtures.dequantize(v, exponents[k]) if k in exponents else v for k, v in stored.items()}
    config = titok_fixtures.official_config(LAYOUT)
    config["model"]["vq_model"]["strict_length_assertion"] = False  # as One-D-Piece's configs: any prefix
    model = official(config).eval()
    model.load_state_dict(state)
    io = load_file(str(args.out / "io.safetensors"))
    with torch.no_grad():
        for k in PREFIXES:
            io[f"decoded_{k}"] = model.decode_tokens(io["ids"][:, None], length=k).float().contiguous()
    assert torch.equal(io[f"decoded_{PREFIXES[-1]}"], io.pop("decoded"))  # the full-length decode, kept once
    save_file(io, str(args.out / "io.safetensors"))
    spec = json.loads((args.out / "config.json").read_text())
    (args.out / "config.json").write_text(json.dumps({**spec, "prefixes": list(PREFIXES)}, indent=2) + "\n")
    print(f"wrote {args.out}: ids {io['ids'].tolist()}")


if __name__ == "__main__":
    main()
