"""The registry of named variants: ``create("titok_s_128")``, ``list_models("titok*")``.

A variant is a function returning a config dataclass, registered with the model class that
builds it (timm style: variants are data, never subclasses). Model modules register themselves
when imported; this module imports no model (``import zoo`` imports them all through
:mod:`zoo.factory`, so the registry is full whenever the package is loaded).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from zoo.config import build_dataclass
from zoo.errors import UnknownModelError


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: its name, the model class, the config factory and metadata
    (``paper`` name, ``params_official``, ``pixel_decoder``, ``hub_id`` of published weights...)."""

    name: str
    model_class: type
    make_config: Callable[[], Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.model_class.family


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, type] = {}


def register_model(model_class: type, **meta: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register ``fn`` (returning a config) as the variant named ``fn.__name__``."""

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        _REGISTRY[fn.__name__] = ModelEntry(fn.__name__, model_class, fn, dict(meta))
        _FAMILIES[model_class.family] = model_class
        return fn

    return wrap


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names of registered variants matching the glob ``pattern`` (and ``family``)."""
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family))


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name``; unknown names raise with the closest matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (zoo.list_models() lists all "
                                f"{len(_REGISTRY)} models)") from None


def family_class(family: str) -> type:
    """The model class of ``family`` (e.g. "titok")."""
    if family not in _FAMILIES:
        raise UnknownModelError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family]


def make_config(config_class: type, values: dict[str, Any], *, what: str = "config") -> Any:
    """Build ``config_class(**values)``: unknown fields (with the closest valid names) and values
    that do not fit the field annotations raise :class:`ConfigError` (see :mod:`zoo.config`)."""
    return build_dataclass(config_class, values, what=what)


def get_config(name: str, **overrides: Any) -> Any:
    """The config of variant ``name`` with ``overrides`` applied."""
    entry = get_entry(name)
    base = dataclasses.asdict(entry.make_config())
    base.update(overrides)
    return make_config(entry.model_class.config_class, base, what=f"overrides for {name}")


def create(name: str, **overrides: Any):
    """Build the variant ``name`` with freshly initialised weights; ``overrides`` change config
    fields (e.g. ``create("titok_nano_32", num_tokens=16)``)."""
    entry = get_entry(name)
    return entry.model_class(get_config(name, **overrides), name=name)
