"""Training tasks: which LightningModule and LightningDataModule a recipe builds.

A recipe's ``task`` (default ``"image"``) names an entry here. Families whose training differs from
the plain image reconstruction objective (flow decoders, audio codecs with discriminators,
distillation, multi-stage recipes) register a task of their own::

    register_task("audio_codec", AudioCodecModule, AudioDataModule,
                  data_defaults=lambda module: {"sample_rate": module.model.sample_rate})

Modules are built as ``module_class(model_name=..., model_overrides=..., **recipe["module"])`` and
datamodules as ``datamodule_class(**{**data_defaults(module), "seed": recipe seed, **recipe["data"]})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from zoo.errors import ConfigError


@dataclass(frozen=True)
class Task:
    name: str
    module_class: type
    datamodule_class: type
    data_defaults: Callable[[Any], dict[str, Any]] = field(default=lambda module: {})
    description: str = ""


_TASKS: dict[str, Task] = {}


def register_task(name: str, module_class: type, datamodule_class: type, *,
                  data_defaults: Callable[[Any], dict[str, Any]] | None = None, description: str = "") -> None:
    """Register (or replace) the training task ``name``."""
    _TASKS[name] = Task(name, module_class, datamodule_class, data_defaults or (lambda module: {}), description)


def get_task(name: str) -> Task:
    """The task ``name``; unknown names raise a ConfigError listing the known ones."""
    if name not in _TASKS:
        raise ConfigError(f"recipe task {name!r} is unknown; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    return sorted(_TASKS)
