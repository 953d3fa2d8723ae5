"""The LightningModule that trains any image tokenizer of the zoo.

Loss = l1_weight * |x - x̂| + l2_weight * (x - x̂)² + perceptual_weight * LPIPS(x, x̂)
       + quantizer loss (commitment etc., already weighted by the quantizer)
       + gan_weight * hinge generator loss (after ``gan_start_step`` generator steps), with a
       PatchGAN discriminator trained alongside. Note that Lightning's ``global_step`` (and so
       ``trainer.max_steps``) counts discriminator steps too once the GAN is on.
``latent_perturbation: {alpha, beta, delta, anneal_start, anneal_end, anneal_to}`` turns on
RobusTok's latent perturbation (see :func:`zoo.metrics.perturb.perturb_latents`): the first
``beta`` fraction of each batch decodes from codes drawn among the ``delta`` nearest to each latent
(with probability ``alpha``), which makes the decoder robust to an AR generator's sampling errors
(lower pFID). Annealing (counted in generator steps) scales alpha and delta down to ``anneal_to``.
``token_drop: {mode: per_batch|per_sample, min: 1}`` turns on One-D-Piece's Tail Token Drop for
variable-length models: the decoder sees only the first k quantized tokens, k ~ Uniform{min..N}
drawn once per batch (``per_batch``, the official recipe: the tokens are cut) or per sample
(``per_sample``: each sample's tail is masked out of the decoder's attention).
This is the single-stage recipe; TiTok's two-stage proxy-code recipe needs MaskGIT-VQGAN weights
that cannot be had offline, so two-stage variants train here end to end on pixels as well.
``init_from``: a ``save_pretrained`` folder, a checkpoints/ name or a Hub id whose weights start the
run (fine-tuning; same model name and overrides).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F

from zoo.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, check_kwargs
from zoo.errors import ConfigError
from zoo.metrics.perturb import anneal_ratio, perturb_latents
from zoo.models.base import ImageTokenizer, TokenizerOutput
from zoo.validation import check_images
from zoo.training.losses import PatchDiscriminator, hinge_d_loss, hinge_g_loss, make_perceptual
from zoo.training.pretrained import pretrained_state


class ImageTokenizerModule(L.LightningModule):
    """Wraps an :class:`ImageTokenizer` (built from ``model_name`` + ``model_overrides`` or passed
    as ``model``) with its losses, optimizers and logging."""

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
                 model: ImageTokenizer | None = None, *, lr: PositiveFloat = 1e-4,
                 weight_decay: NonNegativeFloat = 1e-4, betas: tuple[Fraction, Fraction] = (0.9, 0.99),
                 warmup_steps: NonNegativeInt = 0, lr_schedule: Literal["cosine", "constant"] = "cosine",
                 l1_weight: NonNegativeFloat = 1.0, l2_weight: NonNegativeFloat = 0.0,
                 perceptual_weight: NonNegativeFloat = 0.0, perceptual_net: str = "vgg",
                 perceptual_on_missing: Literal["skip", "error"] = "skip", gan_weight: NonNegativeFloat = 0.0,
                 gan_start_step: NonNegativeInt = 0, disc_lr: PositiveFloat | None = None,
                 grad_clip: PositiveFloat | None = 1.0, latent_perturbation: dict[str, Any] | None = None,
                 token_drop: dict[str, Any] | None = None, init_from: str | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        # types and ranges from the annotations above (zoo.config): a bad value is a ConfigError
        # (only the keys of this class: subclasses such as zoo.training.flow add and check their own)
        own = inspect.signature(ImageTokenizerModule.__init__).parameters
        check_kwargs(ImageTokenizerModule.__init__, {k: v for k, v in self.hparams.items() if k in own},
                     type(self).__name__, "module")
        if model is None:
            if model_name is None:
                raise ValueError("give model_name (a registered variant) or model")
            from zoo.registry import create
            model = create(model_name, **(model_overrides or {}))
        if init_from:
            model.load_state_dict(pretrained_state(init_from, model))
        self.model = model
        self._check_token_drop(token_drop)
        self.perceptual = make_perceptual(perceptual_net, perceptual_on_missing) if perceptual_weight > 0 else None
        self.discriminator = PatchDiscriminator() if gan_weight > 0 else None
        self.automatic_optimization = False
        # Lightning's global_step counts every optimizer step (generator and discriminator once the
        # GAN is on); schedules here count generator steps, kept in the checkpoint for resume.
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before the counter existed: count their optimizer steps as generator steps
        checkpoint["state_dict"].setdefault("generator_steps",
                                            torch.tensor(int(checkpoint.get("global_step", 0)), dtype=torch.long))

    @property
    def gan_active(self) -> bool:
        return self.discriminator is not None and int(self.generator_steps) >= self.hparams.gan_start_step

    # -- losses -----------------------------------------------------------------------------------
    def reconstruction_losses(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """images (B, 3, H, W) -> total generator loss, named parts, model output."""
        out = self.forward_tokenizer(images)
        rec = out.reconstruction
        hp = self.hparams
        parts = {"l1": F.l1_loss(rec, images), "l2": F.mse_loss(rec, images), "quantizer": out.aux.loss}
        loss = hp.l1_weight * parts["l1"] + hp.l2_weight * parts["l2"] + out.aux.loss
        if self.perceptual is not None:
            parts["perceptual"] = self.perceptual(rec, images)
            loss = loss + hp.perceptual_weight * parts["perceptual"]
        if self.gan_active:
            parts["gan_g"] = hinge_g_loss(self.discriminator(rec))
            loss = loss + hp.gan_weight * parts["gan_g"]
        return loss, parts, out

    def forward_tokenizer(self, images: torch.Tensor) -> TokenizerOutput:
        """The tokenizer's forward pass, with RobusTok's latent perturbation when configured."""
        cfg = self.hparams.latent_perturbation
        drop = self.hparams.get("token_drop")
        if not (cfg or drop) or not self.training:
            return self.model(images)
        check_images(images, self.model.input_size)
        latents = self.model.encode_latents(images)
        quantized, ids, aux = self.model.quantizer(latents)
        if not cfg:
            return self.decode_with_token_drop(quantized, ids, aux)
        ratio = anneal_ratio(int(self.generator_steps), cfg.get("anneal_start", 0),
                             cfg.get("anneal_end", 0), cfg.get("anneal_to", 1.0)) if cfg.get("anneal_end") else 1.0
        delta = max(1, int(round(cfg.get("delta", 100) * ratio)))
        quantized = perturb_latents(latents, quantized, self.model.quantizer.codebook,
                                    alpha=cfg.get("alpha", 1.0) * ratio, beta=cfg.get("beta", 0.1),
                                    delta=min(delta, self.model.vocab_size),
                                    cosine=bool(getattr(self.model.quantizer.config, "use_cosine", False)))
        if drop:
            return self.decode_with_token_drop(quantized, ids, aux)
        return TokenizerOutput(self.model.decode_latents(quantized), ids, aux)

    def _check_token_drop(self, drop: dict[str, Any] | None) -> None:
        if not drop:
            return
        unknown = set(drop) - {"mode", "min"}
        mode, low = drop.get("mode", "per_batch"), drop.get("min", 1)
        n = int(self.model.num_tokens)
        if unknown:
            raise ConfigError(f"token_drop has unknown key(s) {sorted(unknown)}; it takes mode and min", field="token_drop")
        if not getattr(self.model, "variable_length", False):
            raise ConfigError(f"token_drop needs a variable-length model (decoding any prefix), "
                              f"{type(self.model).__name__} is not", field="token_drop")
        if mode not in ("per_batch", "per_sample"):
            raise ConfigError(f"token_drop.mode must be 'per_batch' or 'per_sample', got {mode!r}", field="token_drop")
        if isinstance(low, bool) or not isinstance(low, int) or not 1 <= low <= n:
            raise ConfigError(f"token_drop.min must be an int in [1, {n}], got {low!r}", field="token_drop")

    def decode_with_token_drop(self, quantized: torch.Tensor, ids: torch.Tensor, aux: Any) -> TokenizerOutput:
        """Tail Token Drop: quantized (B, N, D) -> reconstruction from a random prefix (see ``token_drop``).
        k is drawn on the CPU (torch's global RNG), so a GPU never waits for it."""
        drop = self.hparams.token_drop
        low, n = int(drop.get("min", 1)), quantized.shape[1]
        if drop.get("mode", "per_batch") == "per_batch":
            k = int(torch.randint(low, n + 1, ()))
            return TokenizerOutput(self.model.decode_latents(quantized[:, :k]), ids, aux, {"num_tokens": k})
        lengths = torch.randint(low, n + 1, (quantized.shape[0],)).to(quantized.device, non_blocking=True)
        return TokenizerOutput(self.model.decode_latents(quantized, lengths), ids, aux, {"lengths": lengths})

    def training_step(self, images: torch.Tensor, batch_idx: int) -> torch.Tensor:
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, (list, tuple)) else (opts, None)
        sched = self.lr_schedulers()
        loss, parts, out = self.reconstruction_losses(images)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        self.generator_steps += 1
        if sched is not None:
            (sched[0] if isinstance(sched, list) else sched).step()
        if opt_d is not None and "gan_g" in parts:
            d_loss = hinge_d_loss(self.discriminator(images), self.discriminator(out.reconstruction.detach()))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            parts["gan_d"] = d_loss
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()})
        stats = {f"train/{k}": v for k, v in out.aux.stats.items()}
        self.log("train/usage", stats.pop("train/usage"), prog_bar=True)
        self.log_dict(stats)
        return loss.detach()

    @torch.no_grad()
    def validation_step(self, images: torch.Tensor, batch_idx: int) -> None:
        out = self.model(images)
        rec = out.reconstruction.clamp(0, 1)
        mse = F.mse_loss(rec, images, reduction="none").flatten(1).mean(1)
        psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
        self.log("val/l1", F.l1_loss(rec, images), prog_bar=True, sync_dist=True)
        self.log("val/psnr", psnr, prog_bar=True, sync_dist=True)
        self.log("val/perplexity", out.aux.stats["perplexity"], sync_dist=True)

    # -- optimizers -------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.AdamW(self.model.parameters(), lr=hp.lr, betas=tuple(hp.betas),
                                  weight_decay=hp.weight_decay)
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None
        sched = torch.optim.lr_scheduler.LambdaLR(opt_g, self._lr_lambda(hp.warmup_steps, total, hp.lr_schedule))
        opts = [opt_g]
        if self.discriminator is not None:
            opts.append(torch.optim.AdamW(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr,
                                          betas=tuple(hp.betas), weight_decay=hp.weight_decay))
        return opts, [{"scheduler": sched, "interval": "step"}]

    @staticmethod
    def _lr_lambda(warmup: int, total: int | None, schedule: str):
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {schedule!r}")

        def f(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            if schedule == "constant" or not total:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        return f
