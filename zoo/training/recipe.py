"""Recipes: one YAML file describes a training run; ``zoo train RECIPE`` runs it.

```yaml
seed: 0
output_dir: runs/titok_nano          # checkpoints/, logs/, export/ go here
model: {name: titok_nano_32, overrides: {}}
module: {lr: 1.0e-3, l1_weight: 1.0, perceptual_weight: 0.1, perceptual_on_missing: skip}
data: {root: data/images, batch_size: 16, num_workers: 2}
trainer: {max_steps: 2000, accelerator: auto, devices: auto, strategy: auto, num_nodes: 1}
checkpoint: {every_n_train_steps: 500}
logger: csv                           # or tensorboard
```
``trainer`` takes any ``lightning.Trainer`` argument, so multi-GPU/multi-node training is a matter
of ``devices``/``num_nodes``/``strategy`` (e.g. ``ddp``, ``fsdp``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ConfigError

SECTIONS = {"seed", "output_dir", "model", "module", "data", "trainer", "checkpoint", "logger", "task"}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a recipe YAML, expand ``$ENV`` variables in strings and apply ``key.sub=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(recipe).__name__}")
    for item in overrides or []:
        set_dotted(recipe, item)
    unknown = set(recipe) - SECTIONS
    if unknown:
        raise ConfigError(f"recipe {path}: unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    if "name" not in (recipe.get("model") or {}):
        raise ConfigError(f"recipe {path}: model.name is required (one of zoo.list_models())")
    return _expand(recipe)


def set_dotted(recipe: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested dict ``recipe``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    node = recipe
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def _expand(obj: Any) -> Any:
    if isinstance(obj, str):
        return os.path.expandvars(obj)
    if isinstance(obj, dict):
        return {k: _expand(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v) for v in obj]
    return obj


def build(recipe: dict[str, Any]):
    """Recipe -> (LightningModule, LightningDataModule, Trainer)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.training.callbacks import ExportPretrained
    from zoo.training.tasks import get_task

    recipe = copy.deepcopy(recipe)
    L.seed_everything(recipe.get("seed", 0), workers=True)
    out = Path(recipe.get("output_dir") or f"runs/{recipe['model']['name']}")
    model_cfg = recipe["model"]
    task = get_task(recipe.get("task") or "image")
    try:
        module = task.module_class(model_name=model_cfg["name"], model_overrides=model_cfg.get("overrides") or {},
                                   **(recipe.get("module") or {}))
    except TypeError as e:
        raise ConfigError(f"recipe section 'module': {e}") from None
    data_cfg = dict(recipe.get("data") or {})
    if "root" not in data_cfg:
        raise ConfigError("recipe section 'data' needs root: a folder of training data")
    if "$" in str(data_cfg["root"]):
        raise ConfigError(f"data.root is {data_cfg['root']!r}: set that environment variable, or pass "
                          "--set data.root=path/to/data")
    for key, value in task.data_defaults(module).items():
        data_cfg.setdefault(key, value)
    data_cfg.setdefault("seed", recipe.get("seed", 0))
    try:
        data = task.datamodule_class(**data_cfg)
    except TypeError as e:
        raise ConfigError(f"recipe section 'data': {e}") from None
    ckpt_cfg = {"save_last": True, "every_n_train_steps": 500, **(recipe.get("checkpoint") or {})}
    callbacks = [ModelCheckpoint(dirpath=out / "checkpoints", **ckpt_cfg), ExportPretrained(out / "export")]
    trainer_cfg = {"max_steps": 1000, "log_every_n_steps": 10, **(recipe.get("trainer") or {})}
    if isinstance(trainer_cfg.get("val_check_interval"), int):  # validate every N steps, across epochs
        trainer_cfg.setdefault("check_val_every_n_epoch", None)
    trainer_cfg.pop("gradient_clip_val", None)  # clipping is the module's grad_clip (manual optimization)
    try:
        trainer = L.Trainer(default_root_dir=out, logger=_logger(recipe.get("logger", "csv"), out),
                            callbacks=callbacks, **trainer_cfg)
    except TypeError as e:
        raise ConfigError(f"recipe section 'trainer': {e}") from None
    return module, data, trainer


def _logger(kind: str | bool, out: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if kind in (False, None, "none"):
        return False
    if kind == "csv":
        return CSVLogger(out, name="logs")
    if kind == "tensorboard":
        return TensorBoardLogger(out, name="logs")
    raise ConfigError(f"logger must be csv, tensorboard or none, got {kind!r}")


def resolve_resume(resume: str | None, recipe: dict[str, Any]) -> str | None:
    """``last`` -> the run's last.ckpt (None if it does not exist yet); a path must exist."""
    if resume is None:
        return None
    if resume == "last":
        out = Path(recipe.get("output_dir") or f"runs/{recipe['model']['name']}")
        last = out / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        raise ConfigError(f"checkpoint to resume from does not exist: {resume}")
    return resume


def train(recipe_path: str | Path, *, overrides: list[str] | None = None, resume: str | None = None):
    """Run the recipe; returns the trainer (its ``callback_metrics`` hold the last logged values)."""
    recipe = load_recipe(recipe_path, overrides)
    module, data, trainer = build(recipe)
    trainer.fit(module, datamodule=data, ckpt_path=resolve_resume(resume, recipe))
    return trainer
