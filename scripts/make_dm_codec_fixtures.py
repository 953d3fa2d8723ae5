"""Regenerate tests/fixtures/dm_codec/ with the OFFICIAL DM-Codec code (mubtasimahasan/DM-Codec).

    python scripts/make_dm_codec_fixtures.py /path/to/DM-Codec-checkout [--out tests/fixtures/dm_codec]

Imports ``codec.Model`` from the checkout (its SEANet, BiLSTM and EMA residual VQ; needs only torch,
einops and numpy), builds a tiny configuration (8 filters, 16-d latents, strides [4, 2], a 1-layer
BiLSTM encoder, 3 levels x 32 codes, a 16 -> 12 distillation head) with seeded random weights and
random codebooks (the official codebooks start empty until k-means runs in training), and saves:

- ``official.safetensors``: the state dict with the official key names;
- ``config.json``: the official config used and the matching zoo overrides;
- ``io.safetensors``: ``wav`` (2, 1, 400), official ``codes`` (n_q, B, T), ``decoded`` = ``decode(codes)``,
  ``feature`` = the RVQ-1 output through ``transform`` as the official ``forward`` returns it (eval mode).
Nothing of the official code is copied into this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OFFICIAL_CONFIG = {"n_filters": 8, "strides": [4, 2], "dimension": 16, "semantic_dimension": 12,
                   "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
                   "lstm_layers": 1, "activation": "ELU", "codebook_size": 32, "n_q": 3, "sample_rate": 16000}

# the same model as zoo overrides of dm_codec_nano_16khz
ZOO_OVERRIDES = {
    "encoder": {"channels": 1, "dimension": 16, "n_filters": 8, "strides": [2, 4], "dilations": [1], "compress": 2,
                "true_skip": False, "activation": "elu", "norm": "weight_norm", "causal": False,
                "pad_mode": "reflect", "lstm_layers": 1, "bidirectional": True},
    "decoder": {"channels": 1, "dimension": 16, "n_filters": 8, "strides": [4, 2], "dilations": [1], "compress": 2,
                "true_skip": False, "activation": "elu", "norm": "weight_norm", "causal": False,
                "pad_mode": "reflect", "lstm_layers": 1},
    "num_levels": 3, "codebook_size": 32, "distill_dim": 12, "kmeans_init": False,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("official", help="path to a DM-Codec checkout (the folder holding codec/)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/fixtures/dm_codec"))
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from codec import Model  # the official model (never vendored here)

    torch.manual_seed(0)
    model = Model(OFFICIAL_CONFIG)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("_codebook.embed"):
                buf.copy_(torch.randn_like(buf))
            elif name.endswith("_codebook.embed_avg"):
                buf.copy_(torch.randn_like(buf))
            elif name.endswith("_codebook.cluster_size"):
                buf.fill_(1.0)
            elif name.endswith("_codebook.inited"):
                buf.fill_(1.0)
    model.eval()
    wav = 0.3 * torch.randn(2, 1, 400, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = model.encode(wav)                # (n_q, B, T)
        decoded = model.decode(codes)            # (B, 1, T * hop)
        _, _, feature = model(wav, layers=[0])   # RVQ-1 through transform: (B, T, 12)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "official.safetensors"))
    save_file({"wav": wav, "codes": codes.contiguous(), "decoded": decoded.contiguous(),
               "feature": feature.contiguous()}, str(out / "io.safetensors"))
    (out / "config.json").write_text(json.dumps({"official": OFFICIAL_CONFIG, "zoo_overrides": ZOO_OVERRIDES},
                                                indent=2) + "\n")
    print(f"wrote {out}: codes {tuple(codes.shape)}, decoded {tuple(decoded.shape)}, feature {tuple(feature.shape)}")


if __name__ == "__main__":
    main()
