"""Make SEED output-parity fixtures with the OFFICIAL code (AILab-CVC/SEED) at a tiny size.

    PYTHONPATH=/tmp/official_pkgs/seed python scripts/make_seed_fixtures.py /path/to/SEED tests/fixtures/seed

The official ``Blip2QformerQuantizer`` (``models/seed_qformer/qformer_quantizer.py``) builds on a BERT
from ``transformers`` (4.x: ``transformers.file_utils`` is gone in 5.x) and timm; install them outside
the project, e.g. ``pip install --target /tmp/official_pkgs/seed --no-deps transformers==4.40.2
timm==0.9.16``. This script runs the official modules unchanged and only replaces what needs the
internet: the BERT tokenizer (unused by the tokenizer path), ``BertConfig.from_pretrained
("bert-base-uncased")`` (a tiny ``BertConfig`` instead) and the EVA ViT-g download (the official
EVA ``VisionTransformer`` class at a tiny size instead). Weights are random, perturbed so every
LayerNorm, bias and position embedding matters. It writes:

- ``seed_quantizer.pt``: the official state dict (the released file's layout), tensors only;
- ``io.safetensors``: ``images`` (B, 3, 28, 28) in [0, 1], the official outputs for them (backbone
  ``features``, ``causal`` Q-Former embeddings, ``ids``, ``causal_recon`` of the de-tokenizer's
  reconstruction head) and ``generation`` = ``get_codebook_entry(ids)``;
- ``config.json``: the zoo ``SEEDConfig`` fields of the same size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SIZES = dict(image_size=28, vit_width=16, vit_depth=2, vit_heads=4, patch=14, qformer_width=24, qformer_depth=3,
             qformer_heads=2, qformer_mlp=48, codebook=64, code_dim=8, decode_depth=2, generation_dim=16)


def zoo_config() -> dict:
    s = SIZES
    return dict(image_size=s["image_size"], backbone="vit", backbone_width=s["vit_width"],
                backbone_depth=s["vit_depth"], backbone_heads=s["vit_heads"], backbone_patch_size=s["patch"],
                backbone_mlp_ratio=4.3637, qformer_width=s["qformer_width"], qformer_depth=s["qformer_depth"],
                qformer_heads=s["qformer_heads"], qformer_mlp_dim=s["qformer_mlp"], codebook_size=s["codebook"],
                code_dim=s["code_dim"], decoder_depth=s["decode_depth"], decoder_heads=12,
                image_down_dims=[256, 128, 32], generation_dim=s["generation_dim"], pixel_depth=0)


def build_official(official: Path):
    sys.path.insert(0, str(official))
    from functools import partial

    from models.seed_qformer import blip2, eva_vit, qformer_quantizer
    from models.seed_qformer.qformer_causual import BertConfig, BertLMHeadModel

    s = SIZES

    def init_tokenizer(cls, truncation_side="right"):  # the tokenizer path never uses it
        return None

    def init_vision_encoder(self, model_name, img_size, drop_path_rate, use_grad_checkpoint, precision):
        vit = eva_vit.VisionTransformer(img_size=img_size, patch_size=s["patch"], use_mean_pooling=False,
                                        embed_dim=s["vit_width"], depth=s["vit_depth"], num_heads=s["vit_heads"],
                                        mlp_ratio=4.3637, qkv_bias=True,
                                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
        self.vit_name = model_name
        return vit, blip2.LayerNorm(vit.num_features)

    def init_qformer(cls, num_query_token, vision_width, cross_attention_freq=2):
        config = BertConfig(vocab_size=8, hidden_size=s["qformer_width"], num_hidden_layers=s["qformer_depth"],
                            num_attention_heads=s["qformer_heads"], intermediate_size=s["qformer_mlp"],
                            max_position_embeddings=512)
        config.encoder_width = vision_width
        config.add_cross_attention = True
        config.cross_attention_freq = cross_attention_freq
        config.query_length = num_query_token
        qformer = BertLMHeadModel(config)
        query_tokens = torch.nn.Parameter(torch.zeros(1, num_query_token, config.hidden_size))
        query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
        return qformer, query_tokens

    blip2.Blip2Base.init_tokenizer = classmethod(init_tokenizer)
    blip2.Blip2Base.init_vision_encoder = init_vision_encoder
    blip2.Blip2Base.init_Qformer = classmethod(init_qformer)
    return qformer_quantizer.Blip2QformerQuantizer(
        vit_model="eva_clip_g", img_size=s["image_size"], vit_precision="fp32", num_query_token=32,
        cross_attention_freq=2, codebook_embed_dim=s["code_dim"], n_embed=s["codebook"],
        decode_depth=s["decode_depth"], image_features_dim=s["generation_dim"]).eval()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("official", type=Path, help="a checkout of github.com/AILab-CVC/SEED")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = build_official(args.official)
    for name, p in model.named_parameters():  # make every parameter matter
        if name == "quantize.embedding.weight":
            p.copy_(0.3 * torch.randn_like(p))
        else:
            p.add_(0.05 * torch.randn_like(p))
    images = torch.rand(2, 3, SIZES["image_size"], SIZES["image_size"])
    x = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    ids, _ = model.get_codebook_indices(x)
    features = model.visual_encoder(x)
    image_embeds = model.ln_vision(features)
    causal = model.Qformer.bert(query_embeds=model.query_tokens.expand(2, -1, -1), encoder_hidden_states=image_embeds,
                                encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                                return_dict=True).last_hidden_state
    up = model.decode_task_layer(model.quantize.get_codebook_entry(ids))
    recon = up + model.pos_embed
    for blk in model.blocks:
        recon = blk(recon)
    generation = model.get_codebook_entry(ids)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, args.out / "seed_quantizer.pt")
    save_file({"images": images, "features": features, "causal": causal, "ids": ids.long().contiguous(),
               "causal_recon": recon, "generation": generation}, str(args.out / "io.safetensors"))
    (args.out / "config.json").write_text(json.dumps(zoo_config(), indent=1) + "\n")
    print(f"wrote {args.out}: {len(state)} official tensors, "
          f"{sum(v.numel() for v in state.values() if v.is_floating_point())} parameters; ids {ids.tolist()[0][:8]}...")


if __name__ == "__main__":
    main()
