"""The LightningModule that trains audio codecs (EnCodec / DAC style).

Generator loss = mel_weight * multi-scale mel + l1_weight * |x - x̂| + adv_weight * LSGAN
                 + fm_weight * feature matching + quantizer_weight * quantizer loss (the quantizer's
                 own weighted commitment / codebook terms),
with the discriminators (``"mpd"``, ``"msstft"``, ``"mbstft"``) trained alongside after
``disc_start_step`` generator steps. Defaults are DAC's published weights (mel 15, fm 2, adv 1,
commitment 0.25 and codebook 1 inside the quantizer; AdamW lr 1e-4, betas (0.8, 0.99), exponential
decay 0.999996 per step, clip 1e3 / 10). ``balancer=True`` routes the losses on the output through
EnCodec's gradient balancer instead (its weights: l1 0.1, mel 1, adv 3, fm 3).
``init_from``: a ``save_pretrained`` folder, a checkpoints/ name or a Hub id whose weights start
the run (fine-tuning); ``kmeans_init``: re-run the EMA codebooks' k-means on the first batch
(fresh runs only).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from zoo.blocks.audio_discriminators import build_discriminator, feature_matching_loss, lsgan_d_loss, lsgan_g_loss
from zoo.metrics.audio import si_sdr
from zoo.models.base import AudioTokenizer
from zoo.models.codec import rearm_kmeans
from zoo.training.audio_losses import GradientBalancer, MultiScaleMelLoss, waveform_l1
from zoo.training.pretrained import pretrained_state

ENCODEC_BALANCER_WEIGHTS = {"l1": 0.1, "mel": 1.0, "adv": 3.0, "fm": 3.0}


class AudioCodecModule(L.LightningModule):
    """Wraps an :class:`AudioTokenizer` with its losses, discriminators, optimizers and logging."""

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
                 model: AudioTokenizer | None = None, *, init_from: str | None = None, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.8, 0.99), weight_decay: float = 0.0, lr_gamma: float = 0.999996,
                 mel_weight: float = 15.0, l1_weight: float = 0.0, adv_weight: float = 1.0, fm_weight: float = 2.0,
                 quantizer_weight: float = 1.0, discriminators: tuple[str, ...] = ("mpd", "mbstft"),
                 disc_width: int = 32, disc_start_step: int = 0, disc_lr: float | None = None,
                 grad_clip: float | None = 1000.0, disc_grad_clip: float | None = 10.0,
                 mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048),
                 mel_bins: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320), balancer: bool = False,
                 balancer_weights: dict[str, float] | None = None, kmeans_init: bool = True):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        if model is None:
            if model_name is None:
                raise ValueError("give model_name (a registered variant) or model")
            from zoo.registry import create
            model = create(model_name, **(model_overrides or {}))
        if init_from:
            model.load_state_dict(pretrained_state(init_from, model))
        self.model = model
        self.mel = MultiScaleMelLoss(model.sample_rate, tuple(mel_windows), tuple(mel_bins))
        use_gan = (adv_weight > 0 or fm_weight > 0) and bool(discriminators)
        self.discriminator = build_discriminator(list(discriminators), in_channels=model.channels,
                                                 width=disc_width) if use_gan else None
        self.balancer = GradientBalancer(balancer_weights or ENCODEC_BALANCER_WEIGHTS) if balancer else None
        self.automatic_optimization = False
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))

    def on_fit_start(self) -> None:
        fresh = int(self.generator_steps) == 0 and not self.hparams.init_from
        if self.hparams.kmeans_init and fresh and getattr(self.model.config, "kmeans_init", False):
            rearm_kmeans(self.model.quantizer)

    @property
    def gan_active(self) -> bool:
        return self.discriminator is not None and int(self.generator_steps) >= self.hparams.disc_start_step

    @staticmethod
    def _wav(batch: Any) -> torch.Tensor:
        return batch["wav"] if isinstance(batch, dict) else batch

    # -- losses -----------------------------------------------------------------------------------
    def generator_losses(self, wav: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
        """wav (B, C, T) -> named losses on the output, reconstruction (B, C, T), model output."""
        out = self.model(wav)
        rec = out.reconstruction[..., : wav.shape[-1]]
        losses = {"mel": self.mel(rec, wav), "l1": waveform_l1(rec, wav)}
        if self.gan_active:
            fake, real = self.discriminator(rec), self.discriminator(wav)
            losses["adv"] = lsgan_g_loss(fake)
            losses["fm"] = feature_matching_loss(real, fake, relative=self.balancer is not None)
        return losses, rec, out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        wav = self._wav(batch)
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, (list, tuple)) else (opts, None)
        hp = self.hparams
        losses, rec, out = self.generator_losses(wav)
        extra = self.extra_losses(batch, out)  # already weighted (e.g. DM-Codec's distillation)
        weights = {"mel": hp.mel_weight, "l1": hp.l1_weight, "adv": hp.adv_weight, "fm": hp.fm_weight}
        total = sum(weights[k] * v for k, v in losses.items()) + hp.quantizer_weight * out.aux.loss
        total = total + sum(extra.values())
        opt_g.zero_grad(set_to_none=True)
        if self.balancer is not None:
            self.balancer.backward(losses, rec)
            rest = hp.quantizer_weight * out.aux.loss + sum(extra.values())
            if rest.requires_grad:
                self.manual_backward(rest)
        else:
            self.manual_backward(total)
        if hp.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        self.generator_steps += 1
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        if opt_d is not None and self.gan_active:
            d_loss = lsgan_d_loss(self.discriminator(wav), self.discriminator(rec.detach()))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            if hp.disc_grad_clip:
                self.clip_gradients(opt_d, gradient_clip_val=hp.disc_grad_clip, gradient_clip_algorithm="norm")
            opt_d.step()
            losses["disc"] = d_loss
        self.log("train/loss", total.detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in {**losses, **extra, **out.aux.losses}.items()})
        stats = {f"train/{k}": v for k, v in out.aux.stats.items()}
        if "train/usage" in stats:
            self.log("train/usage", stats.pop("train/usage"), prog_bar=True)
        self.log_dict(stats)
        return total.detach()

    def extra_losses(self, batch: Any, out: Any) -> dict[str, torch.Tensor]:
        """Hook for subclasses: further generator losses, already weighted, from the batch and the
        model output (a :class:`~zoo.models.base.TokenizerOutput`). None here."""
        return {}

    @torch.no_grad()
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        wav = self._wav(batch)
        rec = self.model(wav).reconstruction[..., : wav.shape[-1]]
        self.log("val/mel", self.mel(rec, wav), prog_bar=True, sync_dist=True)
        self.log("val/l1", waveform_l1(rec, wav), sync_dist=True)
        self.log("val/si_sdr", torch.tensor(si_sdr(wav[0].cpu(), rec[0].cpu())), sync_dist=True)

    # -- optimizers -------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.AdamW(self.model.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=hp.lr_gamma)
        opts = [opt_g]
        if self.discriminator is not None:
            opts.append(torch.optim.AdamW(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr,
                                          betas=tuple(hp.betas), weight_decay=hp.weight_decay))
        return opts, [{"scheduler": sched, "interval": "step"}]


__all__ = ["AudioCodecModule", "ENCODEC_BALANCER_WEIGHTS"]
