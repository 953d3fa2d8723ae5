"""FlexTok: "Resampling Images into 1D Token Sequences of Flexible Length" (Bachmann et al., 2025).

An image (or its SD-VAE latent) is cut into 2x2 patches; the patches and 256 learnable register
tokens run through one transformer in which patches see only patches and register i sees all
patches and registers <= i. The registers are projected to 6 dims and quantized with FSQ
[8, 8, 8, 5, 5, 5] (64,000 codes): the image becomes an *ordered* sequence of 256 ids, any prefix of
which can be decoded.

The decoder is a rectified-flow transformer: noised latent patches plus the (embedded) kept tokens,
with the dropped tokens replaced by one learned mask token, full attention, adaLN-zero time
conditioning with separate modulations for patches and registers. It predicts the velocity
``noise - x0``; decoding integrates it with Euler steps from noise, optionally with classifier-free
guidance against a learned null condition (or FlexTok's norm-guided APG). During training the
number of kept tokens is drawn per sample (nested dropout: "uniform", "pow2" or "uniform_pow2").

Variants: ``flextok_d12_d12``, ``flextok_d18_d18``, ``flextok_d18_d28`` (SD-VAE latents, 16
channels, needs diffusers) and ``flextok_nano`` (pixel space, 32x32 images, CPU-sized).
Official checkpoints convert with :mod:`zoo.convert.flextok`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.blocks.adaln import AdaLNHead, AdaLNZeroBlock, TimestepEmbedder
from zoo.blocks.flow import Guidance, add_noise, check_steps, euler_sample, logit_normal_t, predict_x0, velocity_target
from zoo.blocks.posemb import sincos_2d
from zoo.blocks.repa import ProjectionHead
from zoo.blocks.swiglu import SwiGLUTransformer, init_xavier, layer_norm_fp32, prefix_causal_mask
from zoo.blocks.vae import PixelSpace, SDVAE, sd_vae_parameter_count
from zoo.config import CheckedConfig, Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from zoo.errors import InputError
from zoo.models.base import ImageTokenizer, TokenizerOutput, _frozen
from zoo.quantize import FLEXTOK_LEVELS, make_quantizer
from zoo.quantize.checks import check_levels
from zoo.registry import register_model
from zoo.validation import check_ids, check_images

NESTED_DROPOUT_MODES = ("uniform", "pow2", "uniform_pow2")


@dataclass
class FlexTokConfig(CheckedConfig):
    """Every size of a FlexTok model (defaults: d12-d12 on 256 px images in SD-VAE latents)."""

    image_size: PositiveInt = 256
    # "sd": diffusers AutoencoderKL (SD/SDXL layout, x8 down, frozen); "pixel": no VAE, RGB in [-1, 1]
    vae: Literal["sd", "pixel"] = "sd"
    vae_channels: PositiveInt = 16
    vae_scaling_factor: PositiveFloat = 0.18215
    patch_size: PositiveInt = 2
    encoder_width: PositiveInt = 768
    encoder_depth: PositiveInt = 12
    decoder_width: PositiveInt = 768
    decoder_depth: PositiveInt = 12
    head_dim: PositiveInt = 64
    mlp_ratio: PositiveFloat = 4.0
    num_registers: PositiveInt = 256
    levels: tuple[int, ...] = FLEXTOK_LEVELS
    # nested dropout: how the kept-token count k is drawn per training sample
    nested_dropout: Literal["uniform", "pow2", "uniform_pow2"] = "uniform"
    # probability of replacing a training sample's tokens by the learned null condition (CFG);
    # 0 disables the null condition, and with it guidance at decoding time
    cfg_dropout: Fraction = 0.1
    # time embedding: t in [0, 1] is multiplied by 1000 / max_timestep before the sinusoids
    max_timestep: PositiveFloat = 1000.0
    # decoding defaults
    sample_steps: PositiveInt = 25
    # REPA: project the patch features after decoder block ``repa_layer`` (0-based) to ``repa_dim``
    # (the frozen backbone's feature width); 0 = no REPA head
    repa_dim: NonNegativeInt = 0
    repa_layer: NonNegativeInt = 0

    def check(self) -> None:
        down = 1 if self.vae == "pixel" else 8
        self.require(self.image_size % (down * self.patch_size) == 0, "image_size",
                     f"a multiple of {down * self.patch_size} (VAE downsampling {down} x patch_size {self.patch_size})")
        for part in ("encoder", "decoder"):
            width = getattr(self, f"{part}_width")
            self.require(width % self.head_dim == 0, f"{part}_width", f"a multiple of head_dim ({self.head_dim})")
            self.require(width % 4 == 0, f"{part}_width", "a multiple of 4 (2D sin-cos position embedding)")
        check_levels(type(self).__name__, self.levels, 3)  # what the FSQ regularizer itself accepts
        self.require(self.nested_dropout != "pow2" or self.num_registers & (self.num_registers - 1) == 0,
                     "num_registers", "a power of two with nested_dropout='pow2'")
        self.require(self.repa_dim == 0 or self.repa_layer < self.decoder_depth, "repa_layer",
                     f"a decoder block index < decoder_depth ({self.decoder_depth})")

    @property
    def latent_channels(self) -> int:
        return 3 if self.vae == "pixel" else self.vae_channels

    @property
    def latent_size(self) -> int:
        return self.image_size // (1 if self.vae == "pixel" else 8)

    @property
    def grid(self) -> int:
        return self.latent_size // self.patch_size


def sample_keep_k(batch: int, n: int, mode: str, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(batch,) int64 kept-token counts in [1, n] for nested dropout: "uniform" (1..n), "pow2"
    (uniform over {1, 2, 4, ..., n}) or "uniform_pow2" (uniform 1..n rounded up to a power of two)."""
    if mode == "uniform":
        return torch.randint(1, n + 1, (batch,), generator=generator, device=device)
    if mode == "pow2":
        exps = torch.randint(0, n.bit_length(), (batch,), generator=generator, device=device)
        return torch.ones_like(exps) << exps
    if mode == "uniform_pow2":
        k = torch.randint(1, n + 1, (batch,), generator=generator, device=device)
        return (2 ** torch.ceil(torch.log2(k.double()))).long().clamp(max=n)
    raise InputError(f"nested dropout mode must be one of {NESTED_DROPOUT_MODES}, got {mode!r}")


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p, W/p, p*p*C), patch vectors ordered (row, column, channel)."""
    return rearrange(x, "b c (h p1) (w p2) -> b h w (p1 p2 c)", p1=p, p2=p)


def unpatchify(x: torch.Tensor, p: int, grid: int) -> torch.Tensor:
    """(B, grid*grid, p*p*C) -> (B, C, grid*p, grid*p); inverse of :func:`patchify`."""
    return rearrange(x, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=grid, w=grid, p1=p, p2=p)


class PatchInput(nn.Module):
    """latents (B, C, H, W) -> (B, grid*grid, width): 2D patches, a linear map, fixed 2D sin-cos position."""

    def __init__(self, channels: int, patch_size: int, width: int, grid: int):
        super().__init__()
        self.patch_size = patch_size
        self.patch_proj = nn.Linear(channels * patch_size ** 2, width)
        # stored (frozen) like the official checkpoints, which count it among their parameters
        self.posembs = nn.Parameter(sincos_2d(grid, grid, width)[None], requires_grad=False)  # (1, D, g, g)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.patch_proj(patchify(latents, self.patch_size))  # (B, h, w, D)
        h, w = x.shape[1:3]
        x = x + rearrange(self.posembs[:, :, :h, :w], "1 d h w -> 1 h w d")
        return rearrange(x, "b h w d -> b (h w) d")


class FlexTokEncoder(nn.Module):
    """latents (B, C, H, W) -> register latents (B, num_registers, len(levels)) before FSQ."""

    def __init__(self, c: FlexTokConfig):
        super().__init__()
        self.patches = PatchInput(c.latent_channels, c.patch_size, c.encoder_width, c.grid)
        self.registers = nn.Parameter(torch.empty(c.num_registers, c.encoder_width))
        nn.init.trunc_normal_(self.registers, std=0.02)
        self.transformer = SwiGLUTransformer(c.encoder_width, c.encoder_depth, c.encoder_width // c.head_dim,
                                             c.mlp_ratio)
        self.to_latents = nn.Linear(c.encoder_width, len(c.levels))
        nn.init.zeros_(self.to_latents.weight)
        nn.init.zeros_(self.to_latents.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.patches(latents.to(self.registers.dtype))
        b, n_patches = x.shape[:2]
        regs = self.registers[None].expand(b, -1, -1).to(x.dtype)
        mask = prefix_causal_mask(n_patches, regs.shape[1], device=x.device)
        x = self.transformer(torch.cat([x, regs], dim=1), mask)
        return self.to_latents(layer_norm_fp32(x[:, n_patches:]))


class FlexTokDecoder(nn.Module):
    """Rectified-flow velocity model: (x_t (B, C, H, W), t (B,), token codes (B, N, len(levels)),
    keep_k (B,) or None, null (B,) bool or None) -> velocity (B, C, H, W)."""

    def __init__(self, c: FlexTokConfig):
        super().__init__()
        w = c.decoder_width
        self.grid, self.patch_size = c.grid, c.patch_size
        self.from_latents = nn.Linear(len(c.levels), w)
        self.mask_token = nn.Parameter(torch.empty(w))
        self.null_cond = nn.Parameter(torch.empty(w))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.null_cond, std=0.02)
        self.patches = PatchInput(c.latent_channels, c.patch_size, w, c.grid)
        self.time_embed = TimestepEmbedder(w, max_timestep=c.max_timestep)
        self.blocks = nn.ModuleList(AdaLNZeroBlock(w, w // c.head_dim, c.mlp_ratio, expansion=2)
                                    for _ in range(c.decoder_depth))
        self.head = AdaLNHead(w, c.latent_channels * c.patch_size ** 2)
        init_xavier(self.blocks)
        for lin in (self.from_latents, self.patches.patch_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.repa_layer = c.repa_layer
        self.repa_head = ProjectionHead(w, c.repa_dim) if c.repa_dim else None

    def condition(self, codes: torch.Tensor, keep_k: torch.Tensor | None, null: torch.Tensor | None) -> torch.Tensor:
        """codes (B, N, d) -> register inputs (B, N, width): tokens >= keep_k become the mask token,
        samples flagged ``null`` become the null condition (no host sync: masks are arithmetic)."""
        r = self.from_latents(codes)
        if keep_k is not None:
            pos = torch.arange(r.shape[1], device=r.device)
            r = torch.where((pos[None, :] < keep_k[:, None])[..., None], r, self.mask_token.to(r.dtype))
        if null is not None:
            r = torch.where(null[:, None, None], self.null_cond.to(r.dtype), r)
        return r

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, codes: torch.Tensor, keep_k: torch.Tensor | None = None,
                null: torch.Tensor | None = None, return_features: bool = False):
        p = self.patches(x_t)
        r = self.condition(codes, keep_k, null)
        segments = [p.shape[1], r.shape[1]]
        x = torch.cat([p, r.to(p.dtype)], dim=1)
        cond = self.time_embed(t)
        features = None
        for i, block in enumerate(self.blocks):
            x = block(x, cond, segments)
            if return_features and i == self.repa_layer:
                features = x[:, :segments[0]]
        v = unpatchify(self.head(x[:, :segments[0]], cond), self.patch_size, self.grid)
        return (v, features) if return_features else v


@dataclass
class FlowOutput:
    """What one training pass of :meth:`FlexTok.flow_forward` returns (tensors on the model's device).

    loss: mean squared velocity error; velocity/target: (B, C, h, w); x_t, t: the noised latent and time;
    latents: the clean latent x0; ids (B, N); keep_k (B,); aux: the quantizer's aux;
    features: decoder patch features at ``repa_layer`` (B, P, width) or None."""

    loss: torch.Tensor
    velocity: torch.Tensor
    target: torch.Tensor
    x_t: torch.Tensor
    t: torch.Tensor
    latents: torch.Tensor
    ids: torch.Tensor
    keep_k: torch.Tensor
    aux: Any
    features: torch.Tensor | None = None


class FlexTok(ImageTokenizer):
    """images (B, 3, H, W) in [0, 1] <-> ids (B, k), 1 <= k <= num_registers, in [0, prod(levels))."""

    family = "flextok"
    config_class = FlexTokConfig
    variable_length = True

    def __init__(self, config: FlexTokConfig, name: str | None = None):
        super().__init__(config, name)
        c = config
        self.vae = PixelSpace() if c.vae == "pixel" else SDVAE(c.vae_channels, c.vae_scaling_factor)
        self.encoder = FlexTokEncoder(c)
        self.regularizer = make_quantizer("fsq", levels=tuple(c.levels))
        self.decoder = FlexTokDecoder(c)

    @property
    def card_note(self) -> str:
        """The model card's paragraph: token range, latent space, decoding."""
        c = self.config
        space = ("pixel space (no VAE)" if c.vae == "pixel" else
                 f"the latent space of a frozen {c.vae_channels}-channel SD-style VAE (diffusers AutoencoderKL, "
                 f"x8 down, scaling {c.vae_scaling_factor:g}; included in the parameter count; needs diffusers)")
        return (f"Variable length: `encode(images, num_tokens=k)` keeps the first k of {c.num_registers} ordered "
                f"tokens (FSQ {list(c.levels)}), and `decode` accepts any prefix. Works in {space}. Decoding is a "
                f"rectified flow: `decode(ids, steps={c.sample_steps}, guidance=1.0, norm_guidance=False, "
                "generator=torch.Generator().manual_seed(0))` is reproducible given the generator; the official "
                "README decodes with 20 steps and norm-guided (APG) guidance 7.5."
                + ("" if c.vae == "pixel" else
                   " The converter is checked for output parity against the official modules at a tiny size, "
                   "built with the layout read from the official code; the released checkpoints' own hydra configs "
                   "(inside the Hub repos) could not be read offline, so check `vae_scaling_factor` and "
                   "`max_timestep` against them."))

    # -- contract ---------------------------------------------------------------------------------
    @property
    def quantizer(self):
        return self.regularizer

    @property
    def num_tokens(self) -> int:
        return self.config.num_registers

    def token_lengths(self) -> range:
        return range(1, self.config.num_registers + 1)

    def check_num_tokens(self, num_tokens: int | None) -> int:
        n = self.config.num_registers
        if num_tokens is None:
            return n
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or not 1 <= num_tokens <= n:
            raise InputError(f"num_tokens must be an int in [1, {n}] (a prefix of the {n} ordered tokens), "
                             f"got {num_tokens!r}")
        return num_tokens

    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> ids (B, num_tokens) int64: the first ``num_tokens`` (default
        all) of the ordered token sequence. Deterministic (the VAE posterior mode)."""
        k = self.check_num_tokens(num_tokens)
        check_images(images, self.input_size)
        return self.encode_latent_ids(self.vae.encode(images.to(self._device())))[:, :k]

    @torch.no_grad()
    def encode_latent_ids(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents (B, C, h, w) -> all ids (B, num_registers)."""
        with _frozen(self.regularizer):
            return self.regularizer(self.encoder(latents)).ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, *, steps: int | None = None, guidance: Guidance = 1.0,
               norm_guidance: bool = False, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, k), any 1 <= k <= num_registers -> images (B, 3, H, W) in [0, 1].

        steps: Euler steps (default ``config.sample_steps``); guidance: classifier-free guidance scale
        (1 = none; a float or a function of t), ``norm_guidance=True`` uses APG as the official README
        (guidance 7.5, 20 steps); generator: seeds the starting noise (same generator state, same
        images); noise: or give the starting noise (B, C, h, w) itself.
        """
        latents = self.decode_to_latents(ids, steps=steps, guidance=guidance, norm_guidance=norm_guidance,
                                         generator=generator, noise=noise)
        return self.vae.decode(latents).clamp(0.0, 1.0)

    @torch.no_grad()
    def decode_to_latents(self, ids: torch.Tensor, *, steps: int | None = None, guidance: Guidance = 1.0,
                          norm_guidance: bool = False, generator: torch.Generator | None = None,
                          noise: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, k) -> VAE latents (B, C, h, w) by Euler integration of the decoder's velocity."""
        c = self.config
        check_ids(ids, self.vocab_size, self.token_lengths())
        steps = check_steps(c.sample_steps if steps is None else steps)
        device = self._device()
        ids = ids.to(device=device, dtype=torch.long)
        b, k = ids.shape
        shape = (b, c.latent_channels, c.latent_size, c.latent_size)
        if noise is None:
            gen_device = generator.device if generator is not None else device
            noise = torch.randn(shape, generator=generator, device=gen_device).to(device)
        elif tuple(noise.shape) != shape:
            raise InputError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        dtype = next(self.decoder.parameters()).dtype
        codes = self.regularizer.ids_to_vectors(F.pad(ids, (0, c.num_registers - k))).to(dtype)
        keep_k = torch.full((b,), k, device=device, dtype=torch.long)
        guided = callable(guidance) or float(guidance) != 1.0
        if guided and c.cfg_dropout == 0:
            raise InputError(f"guidance scale {guidance!r} needs a null condition, but this model was configured "
                             "without one (cfg_dropout=0): use guidance=1.0")
        null = torch.ones(b, dtype=torch.bool, device=device)
        with _frozen(self.decoder):
            return euler_sample(lambda x, t: self.decoder(x.to(dtype), t, codes, keep_k).float(),
                                noise.float(), steps, guidance=guidance, norm_guidance=norm_guidance,
                                uncond_velocity=lambda x, t: self.decoder(x.to(dtype), t, codes, keep_k, null).float())

    # -- training ---------------------------------------------------------------------------------
    def flow_forward(self, images: torch.Tensor, *, keep_k: torch.Tensor | None = None,
                     return_features: bool = False) -> FlowOutput:
        """One rectified-flow training pass: encode, FSQ, nested dropout (k drawn per sample unless
        ``keep_k`` is given), CFG dropout, logit-normal t, noised latent, velocity loss."""
        check_images(images, self.input_size)
        c = self.config
        x0 = self.vae.encode(images)
        quant, ids, aux = self.regularizer(self.encoder(x0))
        b, device = x0.shape[0], x0.device
        if keep_k is None:
            keep_k = sample_keep_k(b, c.num_registers, c.nested_dropout, device=device)
        null = (torch.rand(b, device=device) < c.cfg_dropout) if c.cfg_dropout > 0 else None
        noise = torch.randn_like(x0)
        t = logit_normal_t(b, device=device)
        x_t = add_noise(x0, noise, t)
        out = self.decoder(x_t, t, quant, keep_k, null, return_features=return_features)
        v, features = out if return_features else (out, None)
        target = velocity_target(x0, noise)
        loss = F.mse_loss(v.float(), target.float())
        return FlowOutput(loss, v, target, x_t, t, x0, ids, keep_k, aux, features)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """A training pass (see :meth:`flow_forward`); ``reconstruction`` is the one-step estimate of the
        image from the noised latent, ``extras`` holds ``flow_loss`` and ``keep_k``."""
        out = self.flow_forward(images)
        rec = self.vae.decode(predict_x0(out.x_t, out.velocity, out.t))
        return TokenizerOutput(rec, out.ids, out.aux, {"flow_loss": out.loss, "keep_k": out.keep_k})


def parameter_count(config: FlexTokConfig) -> dict[str, int | None]:
    """Parameters of a FlexTok built from ``config`` without allocating it (encoder and decoder on the
    meta device): {"encoder", "decoder", "vae" (None when diffusers is missing), "total"}."""
    with torch.device("meta"):
        enc = sum(p.numel() for p in FlexTokEncoder(config).parameters())
        dec = sum(p.numel() for p in FlexTokDecoder(config).parameters())
    vae = 0 if config.vae == "pixel" else sd_vae_parameter_count(config.vae_channels)
    return {"encoder": enc, "decoder": dec, "vae": vae, "total": None if vae is None else enc + dec + vae}


# -- named variants: numbers only -------------------------------------------------------------------
# Width = 64 x depth with 64-d heads (d12: 768, d18: 1152, d28: 1792); 16-channel SD-VAE latents.
@register_model(FlexTok, paper="FlexTok d12-d12", params_official=341_455_129, pixel_decoder=False,
                official_repo="EPFL-VILAB/flextok_d12_d12_in1k")
def flextok_d12_d12() -> FlexTokConfig:
    return FlexTokConfig(encoder_width=768, encoder_depth=12, decoder_width=768, decoder_depth=12)


@register_model(FlexTok, paper="FlexTok d18-d18", params_official=949_439_641, pixel_decoder=False,
                official_repo="EPFL-VILAB/flextok_d18_d18_in1k")
def flextok_d18_d18() -> FlexTokConfig:
    return FlexTokConfig(encoder_width=1152, encoder_depth=18, decoder_width=1152, decoder_depth=18)


@register_model(FlexTok, paper="FlexTok d18-d28", params_official=2_540_424_089, pixel_decoder=False,
                official_repo="EPFL-VILAB/flextok_d18_d28_in1k")
def flextok_d18_d28() -> FlexTokConfig:
    return FlexTokConfig(encoder_width=1152, encoder_depth=18, decoder_width=1792, decoder_depth=28)


# CPU-sized: pixel space (no VAE, nothing to download), 32x32 images, 4x4 patches, 1 to 32 tokens.
@register_model(FlexTok, paper=None)
def flextok_nano() -> FlexTokConfig:
    return FlexTokConfig(image_size=32, vae="pixel", patch_size=4, encoder_width=96, encoder_depth=2,
                         decoder_width=96, decoder_depth=2, head_dim=32, num_registers=32, sample_steps=8)
