"""Callbacks of the training recipes."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class ExportPretrained(L.Callback):
    """At the end of training, write the tokenizer with ``save_pretrained`` to ``directory`` so that
    ``zoo.from_pretrained(directory)`` loads it (rank 0 only)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            pl_module.model.save_pretrained(self.directory)
