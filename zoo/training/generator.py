"""Training the reference AR generator (:class:`zoo.models.generator.ARGenerator`) on token shards.

Recipe task ``ar_generator`` (``recipes/gpt_nano.yaml``): ``model.name`` names the *tokenizer*
whose tokens are modelled (the shards' manifest must match it), ``module.size`` the generator size
(``gpt_nano``, ``gpt_mini``, ...), ``data.root`` a shard folder written by ``zoo tokenize-dataset``.
The generator's vocabulary, length, classes and the tokens' description are read from the shards'
manifest when training starts (:meth:`ARGeneratorModule.configure_model`), stored in checkpoints
and in the exported ``config.json``, so ``zoo generate`` knows which tokenizer decodes its samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import lightning as L
import torch

from zoo.errors import ConfigError
from zoo.models.generator import ARGenerator, ARGeneratorConfig, generator_config
from zoo.tokens.dataset import TokenDataModule, TokenDataset


def tokens_description(ds: TokenDataset) -> dict[str, Any]:
    """What a generator must remember about its tokens to decode samples."""
    return {"tokenizer": ds.tokenizer, "pattern": ds.pattern, "classes": ds.classes,
            "token_vocab_size": ds.token_vocab_size, "num_levels": ds.num_levels}


def config_for(ds: TokenDataset, size: str, overrides: dict[str, Any] | None = None) -> ARGeneratorConfig:
    """A generator config sized for the tokens of ``ds``."""
    if ds.residual and ds.pattern not in ("interleave", "level_major", "delay"):
        raise ConfigError("residual (audio) tokens need data.pattern: interleave, level_major or delay, so the "
                          "generator sees one sequence")
    return generator_config(size, vocab_size=ds.vocab_size, max_len=max(1, ds.max_length),
                            num_classes=max(1, len(ds.classes)), variable_length=ds.variable_length,
                            tokens=tokens_description(ds), **(overrides or {}))


class ARGeneratorModule(L.LightningModule):
    """Cross-entropy training of an :class:`ARGenerator` with AdamW, warmup + cosine decay."""

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None, *,
                 size: str = "gpt_nano", generator_overrides: dict[str, Any] | None = None,
                 model: ARGenerator | None = None, lr: float = 3e-4, weight_decay: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 100, grad_clip: float | None = 1.0):
        super().__init__()
        if model_overrides:
            raise ConfigError("model.overrides: the ar_generator task takes the tokenizer as is; put generator "
                              "sizes in module.generator_overrides")
        self.save_hyperparameters(ignore=["model"])
        generator_config(size, **(generator_overrides or {}))  # unknown size or field: fail now
        self.model = model

    # -- the model is sized from the data --------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not isinstance(dm, TokenDataModule):
            raise ConfigError("the ar_generator task trains on a TokenDataModule (data.root: a token shard folder)")
        self.model = ARGenerator(config_for(dm.dataset, self.hparams.size, self.hparams.generator_overrides),
                                 name=self.hparams.size)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["generator_config"] = dataclasses.asdict(self.model.config)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.model is None and "generator_config" in checkpoint:
            self.model = ARGenerator(ARGeneratorConfig(**checkpoint["generator_config"]), name=self.hparams.size)

    # -- steps ------------------------------------------------------------------------------------
    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], train: bool) -> torch.Tensor:
        ids, lengths, labels = batch
        p = self.model.config.class_dropout
        if train and p > 0:  # classifier-free guidance: sometimes train without the class
            drop = torch.rand(labels.shape, device=labels.device) < p
            labels = torch.where(drop, torch.full_like(labels, self.model.null_class), labels)
        return self.model.loss(ids, lengths, labels)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, True)
        self.log("train/ce", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss = self._loss(batch, False)
        self.log("val/ce", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.hparams.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.hparams.grad_clip)

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "emb" not in n]
        rest = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.max_steps if self.trainer.max_steps > 0 else 10_000))

        def schedule(step: int) -> float:
            if step < hp.warmup_steps:
                return (step + 1) / max(1, hp.warmup_steps)
            t = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def data_defaults(module: ARGeneratorModule) -> dict[str, Any]:
    """The shards must come from the recipe's tokenizer (``model.name``)."""
    return {"expect": {"name": module.hparams.model_name}} if module.hparams.model_name else {}
