"""Make the EnCodec and DAC output-parity fixtures with the OFFICIAL packages (tiny random models).

    pip install --target /tmp/official_pkgs/encodec --no-deps encodec==0.1.1
    pip install --target /tmp/official_pkgs/dac --no-deps descript-audio-codec==1.0.0 descript-audiotools \
        argbind flatten-dict julius ffmpy importlib-resources tensorboard absl-py randomname docstring-parser
    python scripts/make_codec_fixtures.py --encodec /tmp/official_pkgs/encodec --dac /tmp/official_pkgs/dac

``--encodec`` / ``--dac``: a folder holding the official ``encodec`` / ``dac`` package (a pip
``--target`` folder or a checkout's root). For each tiny configuration the script builds the
official model with a fixed seed, perturbs every parameter (so weight-norm gains, Snake alphas and
biases all matter), fills EnCodec's EMA codebooks with random codes, and writes into
``tests/fixtures/<family>/<case>/``: ``official.safetensors`` (the official state-dict layout),
``io.safetensors`` (input waveform, the official codes at every tested level count, the official
decoded waveform of the full codes) and ``case.json`` (the official kwargs and the matching zoo
``CodecConfig``). Nothing of the official code is copied into the project.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def speechlike(channels: int, samples: int, sr: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / sr
    chans = []
    for c in range(channels):
        f0 = 90 + 60 * c + 40 * float(torch.rand((), generator=g))
        sig = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6)) * (0.6 + 0.4 * torch.sin(9 * t))
        chans.append(0.3 * sig + 0.02 * torch.randn(samples, generator=g))
    return torch.stack(chans)[None].float()


def perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g) * (p.abs().mean() + 1e-3))


def write_case(out: Path, state: dict, io: dict, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(out / "official.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in io.items()}, str(out / "io.safetensors"))
    (out / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1024:.0f} KiB)")


def encodec_cases(pkg: Path, out: Path) -> None:
    sys.path.insert(0, str(pkg))
    from encodec import modules as m
    from encodec import quantization as qt
    from encodec.model import EncodecModel

    cases = {
        "causal_weight_norm_mono": dict(channels=1, norm="weight_norm", causal=True, sr=8000),
        "centred_group_norm_stereo": dict(channels=2, norm="time_group_norm", causal=False, sr=16000),
    }
    for i, (case, c) in enumerate(cases.items()):
        torch.manual_seed(i)
        seanet = dict(channels=c["channels"], dimension=16, n_filters=4, n_residual_layers=1, ratios=[4, 2],
                      norm=c["norm"], causal=c["causal"], lstm=2)
        enc, dec = m.SEANetEncoder(**seanet), m.SEANetDecoder(**seanet)
        quant = qt.ResidualVectorQuantizer(dimension=16, n_q=4, bins=64)
        bandwidths = [c["sr"] / 8 * 6 * n / 1000 for n in (1, 2, 4)]  # 6 bits per level at sr / 8 frames/s
        model = EncodecModel(enc, dec, quant, bandwidths, c["sr"], c["channels"], normalize=False, segment=None,
                             name=case).eval()
        perturb(model, 100 + i)
        with torch.no_grad():
            for layer in model.quantizer.vq.layers:
                cb = layer._codebook
                cb.embed.copy_(torch.randn(cb.embed.shape))
                cb.embed_avg.copy_(cb.embed)
                cb.cluster_size.fill_(1.0)
                cb.inited.fill_(1.0)
        wav = speechlike(c["channels"], 8 * 50 + 3, c["sr"], seed=i)  # not a whole number of frames
        io = {"wav": wav}
        with torch.no_grad():
            for n, bw in zip((1, 2, 4), bandwidths):
                model.set_target_bandwidth(bw)
                codes, scale = model.encode(wav)[0]
                io[f"codes_{n}"] = codes
            io["decoded"] = model.decode([(io["codes_4"], None)])
        zoo_cfg = dict(sample_rate=c["sr"], channels=c["channels"], quantizer="ema", codebook_size=64, num_levels=4,
                       bandwidths=bandwidths, kmeans_init=False,
                       encoder=dict(channels=c["channels"], dimension=16, n_filters=4, strides=[2, 4], norm=c["norm"],
                                    causal=c["causal"], lstm_layers=2),
                       decoder=dict(channels=c["channels"], dimension=16, n_filters=4, strides=[4, 2], norm=c["norm"],
                                    causal=c["causal"], lstm_layers=2))
        write_case(out / "encodec" / case, model.state_dict(), io,
                   {"official": {"package": "encodec 0.1.1", "seanet": seanet, "n_q": 4, "bins": 64,
                                 "sample_rate": c["sr"], "bandwidths": bandwidths}, "zoo_config": zoo_cfg})


def dac_cases(pkg: Path, out: Path) -> None:
    sys.path.insert(0, str(pkg))
    from dac.model.dac import DAC

    cases = {"rates_2_4": dict(encoder_rates=[2, 4], decoder_rates=[4, 2], sr=8000),
             "rates_2_5": dict(encoder_rates=[2, 5], decoder_rates=[5, 2], sr=16000)}
    for i, (case, c) in enumerate(cases.items()):
        torch.manual_seed(10 + i)
        kwargs = dict(encoder_dim=4, encoder_rates=c["encoder_rates"], latent_dim=16, decoder_dim=12,
                      decoder_rates=c["decoder_rates"], n_codebooks=3, codebook_size=32, codebook_dim=4,
                      quantizer_dropout=0.0, sample_rate=c["sr"])
        model = DAC(**kwargs).eval()
        perturb(model, 200 + i)
        hop = math.prod(c["encoder_rates"])
        wav = speechlike(1, hop * 40 + 3, c["sr"], seed=10 + i)
        io = {"wav": wav}
        with torch.no_grad():
            x = model.preprocess(wav, c["sr"])
            for n in (1, 2, 3):
                io[f"codes_{n}"] = model.encode(x, n_quantizers=n)[1][:, :n]
            z = model.quantizer.from_codes(io["codes_3"])[0]
            io["decoded"] = model.decode(z)
        common = dict(channels=1, dimension=16, residual_kernel_size=7, dilations=[1, 3, 9], compress=1,
                      true_skip=True, activation="snake", norm="weight_norm", causal=False, pad_mode="constant",
                      lstm_layers=0, first_kernel_size=7)
        zoo_cfg = dict(sample_rate=c["sr"], channels=1, quantizer="factorized", codebook_size=32, num_levels=3,
                       codebook_dim=4, pad_to_hop=True,
                       encoder=dict(common, n_filters=4, strides=c["encoder_rates"], last_kernel_size=3),
                       decoder=dict(common, n_filters=3, strides=c["decoder_rates"], last_kernel_size=7,
                                    final_activation="tanh", transpose_trim="symmetric"))
        write_case(out / "dac" / case, model.state_dict(), io,
                   {"official": {"package": "descript-audio-codec 1.0.0", "kwargs": kwargs}, "zoo_config": zoo_cfg})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encodec", type=Path, help="folder holding the official encodec package")
    p.add_argument("--dac", type=Path, help="folder holding the official dac package (+ audiotools)")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    args = p.parse_args()
    if args.encodec:
        encodec_cases(args.encodec, args.out)
    if args.dac:
        dac_cases(args.dac, args.out)


if __name__ == "__main__":
    main()
