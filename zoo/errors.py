"""Errors the zoo raises on bad input. Each message says what was wrong and what was expected."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error raised on purpose by the zoo."""


class InputError(ZooError, ValueError):
    """A tensor or file given to a model has the wrong shape, dtype, range or length."""


class UnknownModelError(ZooError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ZooError, RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class ConfigError(ZooError, ValueError):
    """A config or recipe has an unknown field or an invalid value; ``field`` names it when known."""

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field


class OutputError(ZooError, OSError):
    """An output path cannot be written (a folder, read-only, under a file, unknown format)."""


class TrainingInterrupted(ZooError, RuntimeError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint to resume from; ``exit_code``
    is what the command line exits with (128 + the signal number)."""

    def __init__(self, message: str = "", *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
