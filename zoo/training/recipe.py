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
import logging
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from zoo.config import check_kwargs, check_value, unknown_keys
from zoo.errors import CheckpointError, ConfigError, TrainingInterrupted

log = logging.getLogger(__name__)

SECTIONS = {"seed", "output_dir", "model", "module", "data", "trainer", "checkpoint", "logger", "task"}
# what build() passes to lightning.Trainer / ModelCheckpoint unless the recipe says otherwise
TRAINER_DEFAULTS = {"max_steps": 1000, "log_every_n_steps": 10}
CHECKPOINT_DEFAULTS = {"save_last": True, "every_n_train_steps": 500}


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
    unknown_keys(recipe, SECTIONS, f"recipe {path}: unknown section")
    if "name" not in (recipe.get("model") or {}):
        raise ConfigError(f"recipe {path}: model.name is required (one of zoo.list_models())")
    return _expand(recipe)


def set_dotted(recipe: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested dict ``recipe``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    node = recipe
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: empty key part in {key!r}; write section.key=value")
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from None


def _expand(obj: Any) -> Any:
    if isinstance(obj, str):
        return os.path.expandvars(obj)
    if isinstance(obj, dict):
        return {k: _expand(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v) for v in obj]
    return obj


def check_recipe(recipe: dict[str, Any]) -> None:
    """Check the recipe's own keys and values: section keys, ``seed``, ``output_dir``, ``logger``.
    The keys of ``module``, ``data``, ``trainer`` and ``checkpoint`` are checked against what they
    are passed to in :func:`build`."""
    for name in ("model", "module", "data", "trainer", "checkpoint"):
        if recipe.get(name) is not None and not isinstance(recipe[name], dict):
            raise ConfigError(f"recipe section {name!r} must be a mapping of keys to values, "
                              f"got {recipe[name]!r}")
    unknown_keys(recipe["model"], ("name", "overrides"), "recipe section 'model'")
    check_value(recipe["model"]["name"], str, "name", "model")
    check_value(recipe["model"].get("overrides") or {}, dict[str, Any], "overrides", "model")
    check_value(recipe.get("seed", 0), int, "seed")
    check_value(recipe.get("output_dir") or "runs", str, "output_dir")
    check_value(recipe.get("task") or "image", str, "task")


def _reserved(cfg: dict[str, Any], keys: tuple[str, ...], section: str, why: str) -> None:
    taken = [k for k in keys if k in cfg]
    if taken:
        raise ConfigError(f"recipe section {section!r} cannot set {', '.join(taken)}: {why}", field=taken[0])


def _make(cls: type, kwargs: dict[str, Any], section: str):
    """``cls(**kwargs)`` with the keys and values checked first (unknown keys get suggestions)."""
    check_kwargs(cls.__init__, kwargs, f"recipe section {section!r}", section)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"recipe section {section!r}: {e}", field=e.field) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"recipe section {section!r}: {e}") from None


def section_class(cfg: dict[str, Any] | None, default: type, base: type, section: str) -> tuple[type, dict[str, Any]]:
    """The class and keyword arguments of the recipe section ``module`` or ``data``: flat keys for the
    task's ``default`` class, or LightningCLI's ``{class_path: pkg.mod.Class, init_args: {...}}`` (a
    subclass of ``base``; a bare class name is looked up among the registered tasks' classes)."""
    import importlib

    from zoo.training.tasks import get_task, list_tasks

    cfg = dict(cfg or {})
    path, init = cfg.pop("class_path", None), cfg.pop("init_args", None) or {}
    if not isinstance(init, dict):
        raise ConfigError(f"recipe section {section!r}: init_args must be a mapping, got {init!r}", field="init_args")
    _reserved(cfg, tuple(init), section, "given both in init_args and beside it")
    kwargs = {**init, **cfg}
    if path is None:
        return default, kwargs
    known = {c.__name__: c for t in map(get_task, list_tasks()) for c in (t.module_class, t.datamodule_class)}
    if not isinstance(path, str) or (path not in known and "." not in path):
        raise ConfigError(f"recipe section {section!r}: class_path {path!r} must be a dotted path such as "
                          f"{default.__module__}.{default.__qualname__} or one of {', '.join(sorted(known))}",
                          field="class_path")
    if path in known:
        cls = known[path]
    else:
        module_name, _, attr = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"recipe section {section!r}: class_path {path!r} cannot be imported: {e}",
                              field="class_path") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"recipe section {section!r}: class_path {path!r} is not a {base.__name__} subclass",
                          field="class_path")
    return cls, kwargs


def build(recipe: dict[str, Any]):
    """Recipe -> (LightningModule, LightningDataModule, Trainer)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.registry import get_config
    from zoo.training.callbacks import ExportPretrained, InterruptCheckpoint
    from zoo.training.tasks import get_task

    recipe = copy.deepcopy(recipe)
    check_recipe(recipe)
    L.seed_everything(recipe.get("seed", 0), workers=True, verbose=False)
    out = output_dir(recipe)
    model_cfg = recipe["model"]
    task = get_task(recipe.get("task") or "image")
    get_config(model_cfg["name"], **(model_cfg.get("overrides") or {}))  # unknown or bad overrides: ConfigError
    module_cls, module_cfg = section_class(recipe.get("module"), task.module_class, L.LightningModule, "module")
    _reserved(module_cfg, ("model", "model_name", "model_overrides"), "module", "the model is set in section 'model'")
    module = _make(module_cls, {"model_name": model_cfg["name"],
                                       "model_overrides": model_cfg.get("overrides") or {}, **module_cfg}, "module")
    data_cls, data_cfg = section_class(recipe.get("data"), task.datamodule_class, L.LightningDataModule, "data")
    if "root" not in data_cfg:
        raise ConfigError("recipe section 'data' needs root: a folder of training data")
    if "$" in str(data_cfg["root"]):
        raise ConfigError(f"data.root is {data_cfg['root']!r}: set that environment variable, or pass "
                          "--set data.root=path/to/data")
    for key, value in task.data_defaults(module).items():
        data_cfg.setdefault(key, value)
    data_cfg.setdefault("seed", recipe.get("seed", 0))
    data = _make(data_cls, data_cfg, "data")
    ckpt_cfg = {**CHECKPOINT_DEFAULTS, **(recipe.get("checkpoint") or {})}
    _reserved(ckpt_cfg, ("dirpath",), "checkpoint", "checkpoints go to output_dir/checkpoints")
    callbacks = [_make(ModelCheckpoint, {"dirpath": out / "checkpoints", **ckpt_cfg}, "checkpoint"),
                 ExportPretrained(out / "export"), InterruptCheckpoint(out / "checkpoints" / "last.ckpt")]
    trainer_cfg = {**TRAINER_DEFAULTS, **(recipe.get("trainer") or {})}
    if isinstance(trainer_cfg.get("val_check_interval"), int):  # validate every N steps, across epochs
        trainer_cfg.setdefault("check_val_every_n_epoch", None)
    trainer_cfg.pop("gradient_clip_val", None)  # clipping is the module's grad_clip (manual optimization)
    _reserved(trainer_cfg, ("callbacks", "logger", "default_root_dir"), "trainer",
              "set by the recipe's sections logger, checkpoint and output_dir")
    for key in ("max_steps", "log_every_n_steps"):
        if not (isinstance(trainer_cfg[key], int) and not isinstance(trainer_cfg[key], bool)
                and (trainer_cfg[key] > 0 or (key == "max_steps" and trainer_cfg[key] == -1))):
            raise ConfigError(f"trainer.{key} must be a positive int, got {trainer_cfg[key]!r}", field=key)
    trainer = _make(L.Trainer, {"default_root_dir": out, "logger": _logger(recipe.get("logger", "csv"), out),
                                "callbacks": callbacks, **trainer_cfg}, "trainer")
    return module, data, trainer


def output_dir(recipe: dict[str, Any]) -> Path:
    """The run's folder (checkpoints/, logs/, export/)."""
    return Path(recipe.get("output_dir") or f"runs/{recipe['model']['name']}")


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
    """Where to resume from: None (start fresh), ``"last"`` (the run's last.ckpt, which must exist),
    ``"auto"`` (last.ckpt when it exists, else start fresh: for jobs that restart themselves) or a
    checkpoint path (which must exist)."""
    if resume is None:
        return None
    last = output_dir(recipe) / "checkpoints" / "last.ckpt"
    if resume in ("last", "auto"):
        if last.is_file():
            return str(last)
        if resume == "auto":
            log.info("no %s yet: starting from scratch (--resume auto)", last)
            return None
        raise ConfigError(f"--resume last: {last} does not exist (this run has not saved a checkpoint "
                          f"under {output_dir(recipe)}); leave out --resume to start from scratch, or use "
                          "--resume auto to resume only when a checkpoint exists")
    if not Path(resume).is_file():
        raise ConfigError(f"checkpoint to resume from does not exist: {resume} (give a .ckpt file, "
                          "'last' or 'auto')")
    return resume


def check_resume_checkpoint(path: str, module) -> None:
    """Read the Lightning checkpoint ``path`` and check that its weights fit ``module`` (same keys
    and shapes): a truncated file or another model's checkpoint is a :class:`CheckpointError`
    before training starts."""
    import torch

    from zoo.hub import load_state

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # zip, EOF and unpickling errors of a truncated, foreign or unsafe file
        raise CheckpointError(f"cannot resume from {path}: not a readable training checkpoint "
                              f"(truncated or corrupt?): {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "global_step" not in ckpt:
        raise CheckpointError(f"cannot resume from {path}: not a Lightning training checkpoint (no state_dict "
                              "and global_step); a save_pretrained folder is loaded with zoo.from_pretrained")
    state = dict(ckpt["state_dict"])
    if hasattr(module, "on_load_checkpoint"):
        probe = {**ckpt, "state_dict": state}
        module.on_load_checkpoint(probe)
        state = probe["state_dict"]
    own = module.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        try:
            load_state(module, state, source=path)
        except CheckpointError as e:
            raise CheckpointError(f"cannot resume from {path}: {e} (was it trained with another model or "
                                  "model.overrides?)") from None


def train(recipe_path: str | Path | dict[str, Any], *, overrides: list[str] | None = None, resume: str | None = None):
    """Run the recipe (a YAML path, or a recipe dict as :func:`load_recipe` or
    :mod:`zoo.training.cli_config` make it); returns the trainer (its ``callback_metrics`` hold the
    last logged values).

    SIGINT/SIGTERM stop training after the current step with the full state saved to the run's
    ``last.ckpt``; then :class:`TrainingInterrupted` is raised (``--resume last`` continues).
    """
    from zoo.training.callbacks import InterruptCheckpoint

    recipe = recipe_path if isinstance(recipe_path, dict) else load_recipe(recipe_path, overrides)
    ckpt_path = resolve_resume(resume, recipe)
    module, data, trainer = build(recipe)
    if ckpt_path is not None:
        check_resume_checkpoint(ckpt_path, module)
    interrupt = next(c for c in trainer.callbacks if isinstance(c, InterruptCheckpoint))
    try:
        with interrupt.catch_signals():
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except SystemExit:  # Lightning's SIGTERMException after our stop, or its exit on KeyboardInterrupt
        if interrupt.signum is None and interrupt.saved_step is None:
            raise
    finished = 0 < trainer.max_steps <= trainer.global_step
    if interrupt.signum is not None and not (finished and interrupt.saved_step is None):
        name = signal.Signals(interrupt.signum).name
        if interrupt.saved_step is None:
            raise TrainingInterrupted(f"training interrupted by {name} before a step finished; nothing new "
                                      "was saved", exit_code=128 + interrupt.signum)
        raise TrainingInterrupted(f"training interrupted by {name}: saved the state at step "
                                  f"{interrupt.saved_step} to {interrupt.path}; continue with --resume last",
                                  exit_code=128 + interrupt.signum)
    return trainer
