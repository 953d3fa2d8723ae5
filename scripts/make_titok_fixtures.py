"""Regenerate tests/fixtures/titok/ by running the OFFICIAL TiTok code (bytedance/1d-tokenizer) at tiny sizes.

    git clone https://github.com/bytedance/1d-tokenizer /tmp/1d-tokenizer      # or any checkout
    pip install --target /tmp/titok_pkgs --no-deps omegaconf antlr4-python3-runtime accelerate
    PYTHONPATH=/tmp/titok_pkgs .venv/bin/python scripts/make_titok_fixtures.py /tmp/1d-tokenizer

Two official layouts, one fixture each:

- ``legacy_two_stage``: ``is_legacy`` left at its default (True) and ``finetune_decoder: True``, as
  in every two-stage config (titok_s128 / b64 / l32): the encoder's legacy reshape, the proxy head
  predicting MaskGIT-VQGAN code logits, the VQGAN codebook and pixel decoder; cosine codes.
- ``fixed_single_stage``: ``is_legacy: False``, ``finetune_decoder: False``, ``use_l2_norm: False``
  as in the vq8k configs: the fixed layout, pixel head, Euclidean codes.

Only sizes are changed, nothing of the math: the official size tables in
``modeling/modules/blocks.py`` get one more entry ("tiny": width 32, 1 layer, 2 heads) and the proxy
head's hard-wired 1024 VQGAN codes become 64, by editing that source text as it is loaded (the
checkout is not modified and no official code enters the project); the VQGAN quantizer and pixel
decoder that ``modeling/titok.py`` builds from literal configs are built with 64 codes of dim 16 and
32 hidden channels (all levels x1) by wrapping their constructors. The official packages'
``__init__`` files (which import training losses) are bypassed: ``modeling``,
``modeling.modules`` and ``modeling.quantizer`` are made namespace packages.

Weights are drawn in fp32 (matrices redrawn at unit output variance so that images differ, the
codebook seeded with the images' own latents), then every tensor is rounded to 8-bit steps of a
power of two (``q * 2**-e``, ``q`` int8, ``e`` per tensor) and the official model runs in fp32 from
exactly those values. They are stored as int8 under the official key names
(``<name>.official.safetensors``, the exponents in its metadata ``scale_exponents``): a third of the
size of fp32, and the tests run the zoo in fp32 from the very weights the official code ran
(``dequantize``). ``<name>.io.safetensors`` holds the input images (B, 3, 32, 32), the official ids
(B, 16) and the official decode of those ids (unclamped, fp32). ``<name>.json`` holds the zoo config.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = {"width": 32, "num_layers": 1, "num_heads": 2}
PATCH, NUM_TOKENS, CODEBOOK = 16, 16, 64
PROXY_CODES, PROXY_DIM, PIXEL_HIDDEN, PIXEL_MULT = 64, 16, 32, (1, 1, 1, 1, 1)
LAYOUTS = {
    "legacy_two_stage": {"token_size": 12, "use_l2_norm": True, "finetune_decoder": True},
    "fixed_single_stage": {"token_size": 8, "use_l2_norm": False, "finetune_decoder": False, "is_legacy": False},
}
# 64 px for the two-stage model: at 32 px its VQGAN decoder starts from 2x2 maps, whose GroupNorm
# (one channel per group at 32 channels) magnifies float rounding of the proxy logits 100-fold.
IMAGE_SIZES = {"legacy_two_stage": 64, "fixed_single_stage": 32}


def zoo_config(layout: str) -> dict:
    """The zoo TiTokConfig fields of the same model (the pixel decoder's size is set in the test)."""
    v = LAYOUTS[layout]
    two_stage = v["finetune_decoder"]
    return {"image_size": IMAGE_SIZES[layout], "patch_size": PATCH, "num_tokens": NUM_TOKENS,
            "encoder_width": TINY["width"], "encoder_depth": TINY["num_layers"], "encoder_heads": TINY["num_heads"],
            "decoder_width": TINY["width"], "decoder_depth": TINY["num_layers"], "decoder_heads": TINY["num_heads"],
            "codebook_size": CODEBOOK, "token_dim": v["token_size"], "use_cosine": v["use_l2_norm"],
            "decoder_head": "proxy" if two_stage else "pixel", "legacy_layout": two_stage,
            **({"proxy_codes": PROXY_CODES, "proxy_dim": PROXY_DIM} if two_stage else {})}


def _namespace(name: str, path: Path) -> None:
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod


def import_official(root: Path) -> types.ModuleType:
    """``modeling.titok`` of the checkout at ``root``, with the tiny sizes described above."""
    sys.path.insert(0, str(root))
    for name in ("modeling", "modeling.modules", "modeling.quantizer"):
        _namespace(name, root / name.replace(".", "/"))
    path = root / "modeling/modules/blocks.py"
    source = path.read_text(encoding="utf-8")
    for table, value in TINY.items():
        anchor = f"self.{table} = {{"
        if source.count(anchor) != 2:
            raise SystemExit(f"{anchor!r} not found twice in {path} (encoder and decoder); has the code changed?")
        source = source.replace(anchor, f'{anchor}"tiny": {value}, ')
    head = "nn.Conv2d(2 * self.width, 1024, 1, padding=0, bias=True)"
    if source.count(head) != 1:
        raise SystemExit(f"the proxy head {head!r} not found once in {path}; has the code changed?")
    source = source.replace(head, head.replace("1024", str(PROXY_CODES)))
    blocks = importlib.util.module_from_spec(importlib.util.spec_from_loader("modeling.modules.blocks", loader=None,
                                                                            origin=str(path)))
    blocks.__file__ = str(path)
    exec(compile(source, str(path), "exec"), blocks.__dict__)
    sys.modules["modeling.modules.blocks"] = blocks
    titok = importlib.import_module("modeling.titok")
    vqgan_decoder, vqgan_quantizer, OmegaConf = titok.Pixel_Decoder, titok.Pixel_Quantizer, titok.OmegaConf

    def tiny_decoder(conf):
        return vqgan_decoder(OmegaConf.merge(conf, {"hidden_channels": PIXEL_HIDDEN, "channel_mult": list(PIXEL_MULT),
                                                     "z_channels": PROXY_DIM}))

    def tiny_quantizer(num_embeddings, embedding_dim, commitment_cost):
        return vqgan_quantizer(num_embeddings=PROXY_CODES, embedding_dim=PROXY_DIM, commitment_cost=commitment_cost)

    titok.Pixel_Decoder, titok.Pixel_Quantizer = tiny_decoder, tiny_quantizer
    return titok


def official_config(layout: str) -> dict:
    v = LAYOUTS[layout]
    return {"model": {"vq_model": {
        "codebook_size": CODEBOOK, "commitment_cost": 0.25, "vit_enc_model_size": "tiny",
        "vit_dec_model_size": "tiny", "vit_enc_patch_size": PATCH, "vit_dec_patch_size": PATCH,
        "num_latent_tokens": NUM_TOKENS, **v}},
        "dataset": {"preprocessing": {"crop_size": IMAGE_SIZES[layout]}}}


def test_images(size: int) -> torch.Tensor:
    """Two unlike 8-bit images (2, 3, size, size) uint8: a dark noisy one and a bright one with a gradient."""
    noise = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    ramp = torch.linspace(0, 1, size)
    images = torch.stack([0.4 * noise[0], 0.5 + 0.25 * noise[1] + 0.25 * ramp[None, None, :] * ramp[:, None]])
    return torch.round(images * 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1], as the tests compute it."""
    return images.float() / 255


def quantize(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t -> (q int8, e) with q * 2**-e the nearest 8-bit value of t on a per-tensor power-of-two grid."""
    top = float(t.abs().max())
    e = 12 if top == 0 else min(12, int(torch.floor(torch.log2(torch.tensor(127.0 / top)))))
    return torch.round(t * 2.0 ** e).clamp(-127, 127).to(torch.int8), e


def dequantize(q: torch.Tensor, e: int) -> torch.Tensor:
    return q.float() * 2.0 ** -e


def make(titok: types.ModuleType, layout: str, out: Path) -> None:
    torch.manual_seed(0)
    model = titok.TiTok(official_config(layout)).eval()
    images_uint8 = test_images(IMAGE_SIZES[layout])
    images = to_float(images_uint8)
    with torch.no_grad():
        # the official init (std 0.02) makes every image encode alike: redraw the matrices with
        # unit-variance outputs (norms keep their init) so that ids differ between images and tokens
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5 if p.shape[0] > 1 else 1.0)
        latents = model.encoder(pixel_values=images, latent_tokens=model.latent_tokens)  # (B, D, 1, N)
        latents = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        model.quantize.embedding.weight[: latents.shape[0]] = latents  # as a k-means init would
        stored, exponents = {}, {}
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                stored[k], exponents[k] = quantize(v)
                v.copy_(dequantize(stored[k], exponents[k]))  # the official run uses exactly the stored values
            else:
                stored[k] = v.clone()
        _, result = model.encode(images)
        ids = result["min_encoding_indices"].reshape(images.shape[0], NUM_TOKENS).long()
        decoded = model.decode_tokens(ids[:, None]).float().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in stored.items()}
    save_file(state, str(out / f"{layout}.official.safetensors"),
              metadata={"source": "bytedance/1d-tokenizer", "scale_exponents": json.dumps(exponents)})
    save_file({"images_uint8": images_uint8, "ids": ids, "decoded": decoded}, str(out / f"{layout}.io.safetensors"))
    (out / f"{layout}.json").write_text(json.dumps({
        "zoo_config": zoo_config(layout), "official_vq_model": official_config(layout)["model"]["vq_model"],
        "pixel_decoder": {"z_channels": PROXY_DIM, "hidden": PIXEL_HIDDEN, "channel_mult": list(PIXEL_MULT)}
        if LAYOUTS[layout]["finetune_decoder"] else None}, indent=2) + "\n")
    n = sum(v.numel() for v in state.values())
    print(f"{layout}: {n:,} parameters, {len(set(ids.flatten().tolist()))} distinct ids, "
          f"decoded range [{decoded.min():.3g}, {decoded.max():.3g}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("official", type=Path, help="path to a bytedance/1d-tokenizer checkout")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/titok")
    args = p.parse_args()
    titok = import_official(args.official.resolve())
    for layout in LAYOUTS:
        make(titok, layout, args.out)


if __name__ == "__main__":
    main()
