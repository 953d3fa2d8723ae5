"""Regenerate tests/fixtures/one_d_piece/ by running the OFFICIAL One-D-Piece code at a tiny size.

    git clone https://github.com/turingmotors/One-D-Piece /tmp/One-D-Piece   # or any checkout
    pip install --target /tmp/odp_pkgs omegaconf                             # its only missing dependency
    PYTHONPATH=/tmp/odp_pkgs .venv/bin/python scripts/make_one_d_piece_fixtures.py /tmp/One-D-Piece

The official model sizes are fixed names ("small", "base", "large") inside its TiTokEncoder and
TiTokDecoder; to build a tiny model this script loads the official ``modeling/modules/blocks.py``
with one more entry ("tiny") in the width/depth/heads tables (nothing else of the file changes, and
no official code enters the project). The model is built as the official stage-1 tokenizer
(``finetune_decoder: False``): its decode returns the proxy decoder's 1024 MaskGIT-VQGAN code
logits per 16x16 patch; the VQGAN pixel decoder after it (30M parameters, hard-wired to 256 px)
is left out of the fixture.

Written (all fp32): ``official.safetensors`` (the official state dict), ``io.safetensors`` (input
images, the official ids, and the official decode of prefixes of 1, 3 and all 8 tokens), and
``config.json`` (the zoo overrides that build the same model from ``one_d_piece_s_256``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = {"width": 16, "num_layers": 2, "num_heads": 2}
IMAGE_SIZE, NUM_TOKENS, CODEBOOK, TOKEN_DIM = 32, 8, 64, 12
PREFIXES = (1, 3, NUM_TOKENS)

# The zoo model with the same numbers (overrides of one_d_piece_s_256).
ZOO_OVERRIDES = {"image_size": IMAGE_SIZE, "patch_size": 16, "num_tokens": NUM_TOKENS,
                 "encoder_width": TINY["width"], "encoder_depth": TINY["num_layers"], "encoder_heads": TINY["num_heads"],
                 "decoder_width": TINY["width"], "decoder_depth": TINY["num_layers"], "decoder_heads": TINY["num_heads"],
                 "codebook_size": CODEBOOK, "token_dim": TOKEN_DIM}


def import_official(root: Path) -> types.ModuleType:
    """Import the official ``modeling.one_d_piece`` with a "tiny" size added to blocks.py's tables."""
    sys.path.insert(0, str(root))
    source = (root / "modeling/modules/blocks.py").read_text()
    for table, value in TINY.items():
        anchor = f"self.{table} = {{"
        if source.count(anchor) != 2:
            raise SystemExit(f"{anchor!r} not found twice in blocks.py (encoder and decoder); has the code changed?")
        source = source.replace(anchor, f'{anchor}"tiny": {value}, ')
    spec = importlib.util.spec_from_loader("modeling.modules.blocks", loader=None,
                                           origin=str(root / "modeling/modules/blocks.py"))
    blocks = importlib.util.module_from_spec(spec)
    import modeling.modules  # noqa: F401  (the package; its __init__ imports the unpatched blocks first)
    exec(compile(source, str(root / "modeling/modules/blocks.py"), "exec"), blocks.__dict__)
    sys.modules["modeling.modules.blocks"] = blocks
    modeling_titok = importlib.import_module("modeling.titok")
    modeling_titok.TiTokEncoder, modeling_titok.TiTokDecoder = blocks.TiTokEncoder, blocks.TiTokDecoder
    return importlib.import_module("modeling.one_d_piece")


def official_config() -> dict:
    return {"model": {"vq_model": {
        "codebook_size": CODEBOOK, "token_size": TOKEN_DIM, "use_l2_norm": True, "commitment_cost": 0.25,
        "vit_enc_model_size": "tiny", "vit_dec_model_size": "tiny", "vit_enc_patch_size": 16,
        "vit_dec_patch_size": 16, "num_latent_tokens": NUM_TOKENS, "finetune_decoder": False,
        "strict_length_assertion": False}},
        "dataset": {"preprocessing": {"crop_size": IMAGE_SIZE}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("official", type=Path, help="path to a turingmotors/One-D-Piece checkout")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/one_d_piece")
    args = p.parse_args()
    one_d_piece = import_official(args.official.resolve())
    torch.manual_seed(0)
    model = one_d_piece.OneDPiece(official_config()).eval()
    # the official init (std 0.02) makes every image encode alike and the logits near-uniform:
    # redraw the matrices with unit-variance outputs so that ids and decodes differ clearly between
    # images and between prefix lengths (LayerNorms keep their init)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5 if p.shape[0] > 1 else 1.0)
    # two unlike images: a dark noisy one and a bright one with a gradient
    noise = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    ramp = torch.linspace(0, 1, IMAGE_SIZE)
    images = torch.stack([0.4 * noise[0], 0.5 + 0.25 * noise[1] + 0.25 * ramp[None, None, :] * ramp[:, None]])
    with torch.no_grad():
        # seed the codebook with the images' own latents (as a k-means init would), so that the two
        # images pick different codes
        latents = model.encoder(pixel_values=images, latent_tokens=model.latent_tokens)  # (B, D, 1, N)
        latents = latents.permute(0, 2, 3, 1).reshape(-1, TOKEN_DIM)
        model.quantize.embedding.weight[:latents.shape[0]] = latents
        _, result = model.encode(images)
        ids = result["min_encoding_indices"].reshape(images.shape[0], NUM_TOKENS)
        outputs = {f"decoded_{k}": model.decode_tokens(ids[:, None], length=k).contiguous() for k in PREFIXES}
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "official.safetensors"))
    save_file({"images": images, "ids": ids.long(), **outputs}, str(args.out / "io.safetensors"))
    (args.out / "config.json").write_text(json.dumps({"base": "one_d_piece_s_256", "overrides": ZOO_OVERRIDES,
                                                      "prefixes": list(PREFIXES)}, indent=2) + "\n")
    print(f"wrote {args.out}: {sum(v.numel() for v in state.values()):,} parameters, ids {ids.tolist()}")


if __name__ == "__main__":
    main()
