"""``zoo train`` as in a LightningCLI project: recipes are jsonargparse configs.

    zoo train --config recipes/titok_nano.yaml --data.root DIR --trainer.devices 8 --print_config
    zoo train --config recipes/titok_nano.yaml --trainer.max_steps 10 --module.lr 1.0e-3
    zoo train recipes/titok_nano.yaml --set data.root=DIR           # the older form, same recipe

* ``--config FILE`` (repeatable; later files override earlier ones) or a positional RECIPE.
* ``--SECTION.KEY VALUE`` (or ``--SECTION.KEY=VALUE``) overrides any value; values are parsed and
  type-checked by jsonargparse against the section's class signature (``trainer``:
  ``lightning.Trainer``, ``checkpoint``: ``ModelCheckpoint``, ``module``/``data``: the task's classes),
  so ``--trainer.devices 8`` is an int and ``--module.lr 1e-3`` a float. ``--set KEY=VALUE`` (a YAML
  value) stays as an alias. Unknown keys are a :class:`~zoo.errors.ConfigError` naming close matches.
* ``module`` and ``data`` are swappable by class path, as LightningCLI does:
  ``module: {class_path: zoo.training.module.ImageTokenizerModule, init_args: {lr: 1.0e-3}}`` (or
  ``--module.class_path ...``); without one, the recipe's ``task:`` picks both (zoo/training/tasks.py).
* ``--print_config`` prints the fully resolved config (every default filled in, ``module``/``data``
  in class_path/init_args form) as YAML and exits; that output is itself a valid ``--config``.
  Values that the run derives when they are not set (``data`` keys the task fills from the model,
  such as ``image_size`` or ``sample_rate``; ``data.seed`` = ``seed``) are left out of it.

Parsing and typing are jsonargparse's; the checks are the recipe's own (:mod:`zoo.training.recipe`,
:mod:`zoo.config`), which also run for ``--print_config``, so a config that prints also builds.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import inspect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from zoo.config import check_kwargs
from zoo.errors import ConfigError
from zoo.training.recipe import (CHECKPOINT_DEFAULTS, TRAINER_DEFAULTS, _expand, check_recipe, load_recipe,
                                 output_dir, section_class, set_dotted, train)
from zoo.training.tasks import get_task

# parameters that build() sets itself (never from the recipe)
SKIP = {"module": {"model", "model_name", "model_overrides"}, "data": set(),
        "trainer": {"callbacks", "logger", "default_root_dir"}, "checkpoint": {"dirpath"}}
# keys that pick the classes (applied before the typed parser for those classes is made)
CLASS_KEYS = ("task", "module.class_path", "data.class_path")
USAGE = ("usage: zoo train [RECIPE] [--config FILE ...] [--SECTION.KEY VALUE ...] [--set KEY=VALUE ...]\n"
         "                 [--print_config] [--resume last|auto|CKPT] [--quiet]")

RUN_OPTIONS = """\
  RECIPE, --config FILE   the recipe YAML (--config repeatable: later files override earlier ones)
  --SECTION.KEY VALUE     override any value below (typed); --set SECTION.KEY=VALUE: the same, as YAML
  --module.class_path / --data.class_path   swap the LightningModule / DataModule (default: the task's)
  --print_config[=skip_null]  print the fully resolved config (YAML) and exit (skip_null: without nulls)
  --resume last|auto|CKPT 'last': the run's last.ckpt (an error if none); 'auto': last.ckpt if it exists,
                          else start fresh; or a .ckpt path. SIGINT/SIGTERM save last.ckpt at the current
                          step and exit with 128+signal
  -q, --quiet             no progress bar, no info logs

The keys of the default task (image) follow; --config RECIPE --help lists those of its classes."""


@dataclass
class TrainCommand:
    """What ``zoo train ARGS`` asks for: the recipe (overrides applied) and the run options."""

    recipe: dict[str, Any]
    resume: str | None = None
    print_config: bool | str = False  # True, or "skip_null"
    quiet: bool = False
    help: bool = False
    classes: dict[str, type] = field(default_factory=dict)
    configs: list[str] = field(default_factory=list)


# -- argv -----------------------------------------------------------------------------------------
def split_argv(argv: list[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Separate the command's own options from ``--section.key value`` overrides (in order)."""
    opts: dict[str, Any] = {"configs": [], "sets": [], "resume": None, "print_config": False, "quiet": False,
                            "help": False}
    dotted: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, inline = arg.partition("=")

        def value() -> str:
            nonlocal i
            if eq:
                return inline
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a value")
            i += 1
            return argv[i]

        if arg in ("-h", "--help"):
            opts["help"] = True
        elif key == "--print_config":  # LightningCLI's --print_config=skip_null drops the null values
            if eq and inline not in ("skip_null", ""):
                raise ConfigError(f"--print_config takes no value or skip_null, got {inline!r}")
            opts["print_config"] = "skip_null" if inline == "skip_null" else True
        elif arg in ("-q", "--quiet"):
            opts["quiet"] = True
        elif key in ("--config", "-c"):
            opts["configs"].append(value())
        elif key == "--set":
            opts["sets"].append(value())
        elif key == "--resume":
            opts["resume"] = value()
        elif arg.startswith("--") and len(arg) > 2:
            dotted.append((key[2:], value()))
        elif not arg.startswith("-"):
            opts["configs"].insert(0, arg)  # the positional RECIPE: the first config
        else:
            raise ConfigError(f"unknown option {arg!r}\n{USAGE}")
        i += 1
    return opts, dotted


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        dst[k] = _merge(dict(dst[k]), v) if isinstance(v, dict) and isinstance(dst.get(k), dict) else v
    return dst


def _flat_section(recipe: dict[str, Any], section: str) -> None:
    """``{class_path, init_args: {...}}`` -> ``{class_path, ...}`` so overrides land in one place."""
    cfg = recipe.get(section)
    if isinstance(cfg, dict) and "init_args" in cfg:
        cls_path = cfg.get("class_path")
        _, kwargs = section_class({k: v for k, v in cfg.items() if k != "class_path"}, object, object, section)
        recipe[section] = ({"class_path": cls_path} if cls_path is not None else {}) | kwargs


def read_recipe(configs: list[str], sets: list[str]) -> dict[str, Any]:
    """The first config read by :func:`load_recipe`; later ones merged over it; then ``--set``."""
    if not configs:
        raise ConfigError(f"give a recipe (zoo train RECIPE, or --config RECIPE)\n{USAGE}")
    recipe = load_recipe(configs[0])
    for section in ("module", "data"):
        _flat_section(recipe, section)
    for path in configs[1:]:
        try:
            extra = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"--config {path}: cannot read it as YAML: {e}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--config {path} must be a mapping of sections, got {type(extra).__name__}")
        for section in ("module", "data"):
            _flat_section(extra, section)
        _merge(recipe, extra)
    for item in sets:
        key = item.partition("=")[0].strip()
        set_dotted(recipe, item.replace(".init_args.", ".", 1) if key.count(".init_args.") else item)
    return _expand(recipe) if sets else recipe  # $VARS in --set values, as load_recipe does


# -- the typed parser -----------------------------------------------------------------------------
def section_classes(recipe: dict[str, Any]) -> dict[str, type]:
    """The class behind each section: the task's (or class_path's) module and data, Trainer, ModelCheckpoint."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    task = get_task(recipe.get("task") or "image")
    module_cls, _ = section_class(recipe.get("module"), task.module_class, L.LightningModule, "module")
    data_cls, _ = section_class(recipe.get("data"), task.datamodule_class, L.LightningDataModule, "data")
    return {"module": module_cls, "data": data_cls, "trainer": L.Trainer, "checkpoint": ModelCheckpoint}


def make_parser(classes: dict[str, type]):
    """A jsonargparse parser of every recipe key (nothing required: the recipe checks that)."""
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="zoo train", exit_on_error=False, usage=USAGE.removeprefix("usage: "),
                       description=RUN_OPTIONS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", type=Optional[str], default=None, help="default: runs/<model.name>")
    p.add_argument("--task", type=Optional[str], default=None, help="zoo.training.tasks name (default: image)")
    p.add_argument("--logger", type=Union[bool, str, None], default="csv", help="csv, tensorboard or none")
    p.add_argument("--model.name", type=Optional[str], default=None, help="a registered variant (zoo list)")
    p.add_argument("--model.overrides", type=dict, default={}, help="config fields of the variant")
    for section, cls in classes.items():
        p.add_class_arguments(cls, section, skip=SKIP[section], fail_untyped=False, sub_configs=False)
    p.set_defaults({f"trainer.{k}": v for k, v in TRAINER_DEFAULTS.items()}
                   | {f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
    for action in p._actions:  # required-ness is the recipe's business (and the task fills some keys)
        action.required = False
    return p


TOP_KEYS = {"seed", "output_dir", "task", "logger"}


def _dests(parser) -> set[str]:
    """Every key the parser types: ``seed``, ``trainer.devices``, ``module.lr``, ..."""
    return {a.dest for a in parser._actions if a.option_strings and not a.dest.endswith(".help")
            and ("." in a.dest or a.dest in TOP_KEYS)}


def _takes_kwargs(cls: type) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


def apply_overrides(recipe: dict[str, Any], dotted: list[tuple[str, str]], parser, classes: dict[str, type]) -> None:
    """Type ``--key value`` pairs with ``parser`` and set them in ``recipe``; unknown keys are errors."""
    known = _dests(parser)
    typed: list[str] = []
    for key, value in dotted:
        key = key.replace(".init_args.", ".", 1)
        section = key.split(".", 1)[0]
        if key in CLASS_KEYS:
            continue  # applied before the parser was made
        if key in known:
            typed += [f"--{key}", value]
        elif key.startswith("model.overrides.") or (section in classes and "." in key
                                                    and _takes_kwargs(classes[section])):
            set_dotted(recipe, f"{key}={value}")  # free-form: a YAML value, checked when built
        else:
            peers = sorted(k for k in known | set(CLASS_KEYS) if k.split(".", 1)[0] == section)
            close = difflib.get_close_matches(key, peers or sorted(known | set(CLASS_KEYS)), n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""
            raise ConfigError(f"unknown option --{key}{hint}; `zoo train RECIPE --print_config` shows every key",
                              field=key)
    if not typed:
        return
    try:
        ns = parser.parse_args(typed, defaults=False)
    except (argparse.ArgumentError, TypeError, ValueError) as e:
        raise ConfigError(" ".join(str(e).split())) from None
    raw = dict(dotted)
    for key, value in _flatten(ns.as_dict()):
        value = _prefer_number(classes, key, value, raw.get(key))
        node = recipe
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value


def _prefer_number(classes: dict[str, type], key: str, value: Any, raw: str | None) -> Any:
    """``--trainer.devices 8``: jsonargparse keeps "8" a string where str comes first in a Union
    (``list[int] | str | int``); take the number when the parameter's annotation accepts it."""
    section, _, name = key.partition(".")
    if not isinstance(value, str) or raw is None or section not in classes:
        return value
    number = yaml.safe_load(raw) if raw.strip() else raw
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return value
    try:
        check_kwargs(classes[section].__init__, {name: number}, key, section)
    except ConfigError:
        return value
    return number


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in ("model.overrides",):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def parse_train_command(argv: list[str]) -> TrainCommand:
    """``zoo train`` arguments -> the recipe with every override applied and checked."""
    opts, dotted = split_argv(list(argv))
    if opts["help"] and not opts["configs"]:
        return TrainCommand({}, help=True)
    recipe = read_recipe(opts["configs"], opts["sets"])
    for key, value in dotted:  # the keys that pick the classes come first
        key = key.replace(".init_args.", ".", 1)
        if key in CLASS_KEYS:
            set_dotted(recipe, f"{key}={value}")
    classes = section_classes(recipe)
    parser = make_parser(classes)
    apply_overrides(recipe, dotted, parser, classes)
    check(recipe, classes)
    return TrainCommand(recipe, resume=opts["resume"], print_config=opts["print_config"], quiet=opts["quiet"],
                        help=opts["help"], classes=classes, configs=opts["configs"])


def check(recipe: dict[str, Any], classes: dict[str, type]) -> None:
    """The recipe's checks that need no model weights or data (what build() checks first)."""
    from zoo.registry import get_config

    check_recipe(recipe)
    get_config(recipe["model"]["name"], **(recipe["model"].get("overrides") or {}))
    for section, cls in classes.items():
        cfg = dict(recipe.get(section) or {})
        cfg.pop("class_path", None)
        if cfg.keys() & SKIP[section]:
            raise ConfigError(f"recipe section {section!r} cannot set {', '.join(sorted(cfg.keys() & SKIP[section]))}: "
                              "the run sets it (model: section 'model'; checkpoints, logger: output_dir/logger)")
        check_kwargs(cls.__init__, cfg, f"recipe section {section!r}", section)


# -- the resolved config --------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _skip_null(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _skip_null(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def _derived_data_keys(task) -> set[str]:
    """Keys the task fills in ``data`` from the built module (asked of a stand-in module)."""
    class Probe:
        def __getattr__(self, name):
            return Probe()

        def __call__(self, *a, **k):
            return Probe()

    try:
        return set(task.data_defaults(Probe())) | {"seed"}
    except Exception:
        return {"seed"}


def resolved_config(cmd: TrainCommand) -> dict[str, Any]:
    """The run's full config, LightningCLI style (module/data as class_path + init_args)."""
    recipe, classes = cmd.recipe, cmd.classes
    defaults = make_parser(classes).get_defaults().as_dict()
    task = get_task(recipe.get("task") or "image")
    out: dict[str, Any] = {
        "seed": recipe.get("seed", 0), "task": task.name, "output_dir": str(output_dir(recipe)),
        "logger": recipe.get("logger", "csv"),
        "model": {"name": recipe["model"]["name"], "overrides": recipe["model"].get("overrides") or {}},
    }
    for section in ("module", "data"):
        cls = classes[section]
        given = {k: v for k, v in (recipe.get(section) or {}).items() if k != "class_path"}
        params = inspect.signature(cls.__init__).parameters
        skip = _derived_data_keys(task) if section == "data" else set()
        init = {k: v for k, v in (defaults.get(section) or {}).items()
                if k not in skip and not (v is None and k in params and params[k].default is inspect.Parameter.empty)}
        out[section] = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init | given}
    for section in ("trainer", "checkpoint"):
        out[section] = (defaults.get(section) or {}) | (recipe.get(section) or {})
    given_trainer = recipe.get("trainer") or {}
    if isinstance(out["trainer"].get("val_check_interval"), int) and "check_val_every_n_epoch" not in given_trainer:
        out["trainer"].pop("check_val_every_n_epoch", None)  # build() sets None: validate every N steps
    return _plain(out)


def help_text(cmd: TrainCommand) -> str:
    recipe = cmd.recipe or {"model": {"name": "titok_nano_32"}}
    return make_parser(cmd.classes or section_classes(recipe)).format_help()


# -- the command ----------------------------------------------------------------------------------
def quiet_logging() -> None:
    """Info logs (ours and Lightning's) off."""
    for name in ("", "zoo", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_train(argv: list[str]) -> int:
    """``zoo train``: print the resolved config, or run the recipe and print a JSON summary."""
    cmd = parse_train_command(argv)
    if cmd.help:
        print(help_text(cmd))
        return 0
    if cmd.print_config:
        config = resolved_config(cmd)
        if cmd.print_config == "skip_null":
            config = _skip_null(config)
        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=False), end="")
        return 0
    recipe = copy.deepcopy(cmd.recipe)
    if cmd.quiet:
        quiet_logging()
        trainer_cfg = recipe.setdefault("trainer", {})
        trainer_cfg["enable_progress_bar"] = False
        trainer_cfg.setdefault("enable_model_summary", False)
    trainer = train(recipe, resume=cmd.resume)
    metrics = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items()}
    print(json.dumps({"recipe": ", ".join(cmd.configs),
                      "global_step": trainer.global_step, "metrics": metrics}))
    return 0
