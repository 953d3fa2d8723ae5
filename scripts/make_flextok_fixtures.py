"""Make FlexTok output-parity fixtures with the OFFICIAL code (apple/ml-flextok) at a tiny size.

    PYTHONPATH=/path/to/ml-flextok:/path/to/deps python scripts/make_flextok_fixtures.py /path/to/ml-flextok \
        [--out tests/fixtures/flextok]

Needs the official checkout and its imports (hydra-core, omegaconf, mup, diffusers, einops; e.g.
``pip install --target /tmp/deps --no-deps hydra-core omegaconf antlr4-python3-runtime==4.9.3 mup diffusers``).
Nothing of the official code is copied into the zoo: this script builds the official modules with a
tiny configuration laid out as the released models (encoder: 2x2 patch embedding, sin-cos posemb,
registers, prefix-causal packing, FlexTransformer, LN + linear head; FSQ [8,8,8,5,5,5]; decoder:
linear from tokens, nested dropout, learned null condition, patch embedding + posemb, full attention,
time embedder with adaLN (expansion 2: patches and registers), adaLN linear head; MinRF pipeline),
randomises every parameter (the official init zeroes adaLN and heads), and saves:

- ``official.safetensors``: the official state dict (official key names);
- ``io.safetensors``: input latents, the official token ids, fixed start noise, and the decoded
  latents of several (k, guidance) settings;
- ``config.json``: the zoo FlexTokConfig fields of the same model and the decode settings.

Two things are switched for a CPU and are not part of the math: attention runs the official SDPA
fallback (``use_flex_attention=False``) with the packer's materialised mask
(``return_materialized_mask=True``), and the VAE is an identity stub (the fixtures work on latents;
the VAE is diffusers' own AutoencoderKL on both sides).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

C, LATENT, PATCH, WIDTH, DEPTH, HEAD_DIM, REGISTERS = 3, 16, 2, 32, 2, 16, 64
LEVELS = [8, 8, 8, 5, 5, 5]
STEPS = 4
#: (k kept tokens, guidance scale, APG?) decoded from the fixed noise
SETTINGS = [(REGISTERS, 1.0, False), (3, 1.0, False), (7, 2.5, False), (7, 3.0, True)]


def build_official(root: Path):
    sys.path.insert(0, str(root))
    from torch import nn

    from flextok.flextok_wrapper import FlexTok
    from flextok.flow_matching.noise_modules import MinRFNoiseModule
    from flextok.flow_matching.pipelines import MinRFPipeline
    from flextok.model.layers.attention import FlexAttention
    from flextok.model.postprocessors.heads import LinearHead, ToPatchesLinearHead
    from flextok.model.postprocessors.seq_unpacking import SequenceUnpacker
    from flextok.model.preprocessors.flex_seq_packing import BlockWiseSequencePacker
    from flextok.model.preprocessors.linear import LinearLayer
    from flextok.model.preprocessors.nullcond import LearnedNullCond
    from flextok.model.preprocessors.patching import PatchEmbedder
    from flextok.model.preprocessors.registers import Registers1D
    from flextok.model.preprocessors.time_embedding import TimestepEmbedder
    from flextok.model.preprocessors.token_dropout import MaskedNestedDropout
    from flextok.model.trunks.transformers import FlexTransformer
    from flextok.model.utils.dict_ops import PerSampleOp, channels_first_to_last, channels_last_to_first
    from flextok.model.utils.posembs import PositionalEmbeddingAdder
    from flextok.model.utils.wrappers import SequentialModuleDictWrapper
    from flextok.regularizers.quantize_fsq import FSQ

    g = LATENT // PATCH
    encoder = SequentialModuleDictWrapper({
        "enc_channels_to_last": PerSampleOp("vae_latents", "vae_latents_bhwc", channels_first_to_last),
        "enc_patch_emb": PatchEmbedder("vae_latents_bhwc", "enc_patches", "enc_n_patches", [PATCH, PATCH], C,
                                       WIDTH, flatten_patches=False),
        "enc_posemb_module": PositionalEmbeddingAdder("enc_patches", "enc_patches", WIDTH, [g, g]),
        "enc_register_module": Registers1D("enc_patches", "register_sizes", "enc_registers", WIDTH,
                                           REGISTERS, REGISTERS),
        "enc_seq_packer": BlockWiseSequencePacker(["enc_patches", "enc_registers"], "enc_packed_seq",
                                                  "enc_block_mask", "enc_ps_inner", "enc_ps_outer",
                                                  mask_mode="causal_last", pad_to_multiple=128,
                                                  return_materialized_mask=True),
        "enc_transformer": FlexTransformer("enc_packed_seq", "enc_packed_seq", dim=WIDTH, depth=DEPTH,
                                           head_dim=HEAD_DIM, block_mask_read_key="enc_block_mask"),
        "enc_unpacker": SequenceUnpacker("enc_packed_seq", ["enc_patches", "enc_registers"], "enc_ps_inner",
                                         "enc_ps_outer"),
        "enc_to_latents": LinearHead("enc_registers", "enc_latents", WIDTH, len(LEVELS), use_mup_readout=False),
    })
    decoder = SequentialModuleDictWrapper({
        "dec_from_latents": LinearLayer("quants", "dec_quants", len(LEVELS), WIDTH),
        "dec_nested_dropout": MaskedNestedDropout("dec_quants", WIDTH, eval_keep_k_read_key="eval_keep_k"),
        "dec_nullcond": LearnedNullCond("dec_quants", WIDTH, eval_drop_flag_read_key="eval_dropout_mask",
                                        dropout_prob=0.1),
        "dec_noise_channels_to_last": PerSampleOp("noised", "noised_bhwc", channels_first_to_last),
        "dec_patch_emb": PatchEmbedder("noised_bhwc", "dec_patches", "dec_n_patches", [PATCH, PATCH], C, WIDTH,
                                       flatten_patches=False),
        "dec_posemb_module": PositionalEmbeddingAdder("dec_patches", "dec_patches", WIDTH, [g, g]),
        "dec_seq_packer": BlockWiseSequencePacker(["dec_patches", "dec_quants"], "dec_packed_seq", "dec_block_mask",
                                                  "dec_ps_inner", "dec_ps_outer", mask_mode="full",
                                                  pad_to_multiple=128, emb_packing_fn_write_key="dec_emb_packing",
                                                  per_subseq_embs=True, return_materialized_mask=True),
        "dec_time_embedder": TimestepEmbedder("timesteps", "dec_temb", WIDTH),
        "dec_transformer": FlexTransformer("dec_packed_seq", "dec_packed_seq", dim=WIDTH, depth=DEPTH,
                                           head_dim=HEAD_DIM, block_mask_read_key="dec_block_mask",
                                           adaLN_emb_read_key="dec_temb", adaLN_packing_fn_read_key="dec_emb_packing",
                                           adaLN_expansion=2),
        "dec_unpacker": SequenceUnpacker("dec_packed_seq", ["dec_patches", "dec_quants"], "dec_ps_inner",
                                         "dec_ps_outer"),
        "dec_head": ToPatchesLinearHead("dec_patches", "dec_out_bhwc", WIDTH, C, [PATCH, PATCH],
                                        use_mup_readout=False, adaLN_emb_read_key="dec_temb"),
        "dec_channels_to_first": PerSampleOp("dec_out_bhwc", "velocity", channels_last_to_first),
    })

    class IdentityVAE(nn.Module):
        """Stub: the fixtures start from latents; the VAE is diffusers' own code on both sides."""

        images_read_key, images_reconst_write_key, downsample_factor = "rgb", "images_reconst", 1

        def encode(self, data_dict):
            data_dict["vae_latents"] = list(data_dict["rgb"])
            return data_dict

        def decode(self, data_dict, **kwargs):
            data_dict["images_reconst"] = data_dict["velocity"]
            return data_dict

    def pipeline(model):
        return MinRFPipeline(model, noise_read_key="noise", latents_read_key="quants", timesteps_read_key="timesteps",
                             noised_images_read_key="noised", reconst_write_key="velocity", out_channels=C)

    model = FlexTok(IdentityVAE(), encoder, decoder, FSQ("enc_latents", "quants", "tokens", LEVELS),
                    MinRFNoiseModule("vae_latents", "noised", "timesteps", "sigmas"), pipeline)
    for m in model.modules():  # the official CPU fallback: SDPA with the materialised block mask
        if isinstance(m, FlexAttention):
            m.use_flex_attention = False
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("official", type=Path, help="path to an apple/ml-flextok checkout")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/flextok")
    args = ap.parse_args()
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_official(args.official)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights everywhere (adaLN and heads start at zero officially)
        for name, p in model.named_parameters():
            if not name.endswith("posembs"):
                p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.ndim == 1 else p.shape[-1] ** -0.5))
    latents = torch.randn(2, C, LATENT, LATENT, generator=gen)
    noise = torch.randn(2, C, LATENT, LATENT, generator=gen)
    tensors = {"latents": latents, "noise": noise}
    with torch.no_grad():
        tokens = model.tokenize(latents)  # list of (1, REGISTERS)
        tensors["ids"] = torch.cat(tokens).long()
        for k, guidance, apg in SETTINGS:
            dd = model._prepare_data_dict_for_detokenization([t[:, :k] for t in tokens])
            dd["noise"] = list(noise.split(1))
            out = model.decode(dd, timesteps=STEPS, vae_image_sizes=LATENT, verbose=False, guidance_scale=guidance,
                               perform_norm_guidance=apg)
            tensors[f"decoded_k{k}_g{guidance:g}{'_apg' if apg else ''}"] = torch.cat(out["images_reconst"])
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "official.safetensors"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "io.safetensors"))
    config = {"zoo_config": {"image_size": LATENT, "vae": "pixel", "patch_size": PATCH, "encoder_width": WIDTH,
                             "encoder_depth": DEPTH, "decoder_width": WIDTH, "decoder_depth": DEPTH,
                             "head_dim": HEAD_DIM, "num_registers": REGISTERS, "levels": LEVELS},
              "steps": STEPS, "settings": [list(s) for s in SETTINGS]}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {len(state)} official tensors and {len(tensors)} io tensors to {args.out}")


if __name__ == "__main__":
    main()
