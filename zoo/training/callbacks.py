"""Callbacks of the training recipes: export at the end, checkpoint on interruption."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Iterator

import lightning as L

log = logging.getLogger(__name__)


class ExportPretrained(L.Callback):
    """At the end of training, write the tokenizer with ``save_pretrained`` to ``directory`` so that
    ``zoo.from_pretrained(directory)`` loads it (rank 0 only)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            pl_module.model.save_pretrained(self.directory)


class InterruptCheckpoint(L.Callback):
    """Stop cleanly on SIGINT/SIGTERM: the signal only raises a flag (see :meth:`catch_signals`);
    when the current training step ends, the full training state is saved to ``path`` (the run's
    ``last.ckpt``, so ``--resume last`` continues from that very step) and training stops.
    A second signal aborts at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.signum: int | None = None
        self.saved_step: int | None = None

    @contextlib.contextmanager
    def catch_signals(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM to :meth:`_on_signal` while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, frame) -> None:
        if self.signum is not None:  # a second signal: stop now, without waiting for the step
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: saving a checkpoint after the current step, then stopping "
                    "(send it again to abort at once)", signal.Signals(signum).name)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.signum is None or self.saved_step is not None:
            return
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step
        trainer.should_stop = True
        log.warning("saved %s at step %d", self.path, trainer.global_step)
