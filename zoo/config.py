"""Typed config dataclasses, checked on construction.

Every config of the zoo is a dataclass whose field annotations say what a value must be. The
checks here read those annotations, so a family gets them by declaring its fields well:

```python
from dataclasses import dataclass
from typing import Literal
from zoo.config import CheckedConfig, PositiveInt, Fraction, ConfigError

@dataclass
class MyConfig(CheckedConfig):
    image_size: PositiveInt = 256            # int > 0 (bool and 3.5 are refused)
    head: Literal["pixel", "proxy"] = "pixel"
    dropout: Fraction = 0.0                  # float in [0, 1]
    strides: tuple[int, ...] = (2, 4)        # a list or tuple of ints (JSON gives lists)

    def check(self) -> None:                 # rules between fields, after the type checks
        self.require(self.image_size % 16 == 0, "image_size", "a multiple of 16")
```

``zoo.registry.make_config`` (used by ``create``, ``get_config`` and checkpoint loading) also runs
:func:`validate_dataclass` on configs that do not inherit :class:`CheckedConfig`. Nothing is coerced
silently: ``8.7`` is not an int, ``1`` is not a bool, ``"4"`` is not a number. An ``int`` is
accepted where a ``float`` is expected (it is the same number); floats must be finite.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from zoo.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A bound on a number, used as ``Annotated[int, Range(gt=0)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def describe(self) -> str:
        parts = [f"{op} {v:g}" for op, v in (("> ", self.gt), (">=", self.ge), ("< ", self.lt), ("<=", self.le))
                 if v is not None]
        return " and ".join(p.replace("  ", " ") for p in parts)

    def holds(self, v: float) -> bool:
        return ((self.gt is None or v > self.gt) and (self.ge is None or v >= self.ge)
                and (self.lt is None or v < self.lt) and (self.le is None or v <= self.le))


PositiveInt = Annotated[int, Range(gt=0)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]


# -- checking one value against an annotation -----------------------------------------------------
def _describe(tp: Any) -> str:
    """A readable name of the type ``tp`` ("int > 0", "list of int", "'pixel' or 'proxy'")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        ranges = [a for a in args[1:] if isinstance(a, Range)]
        return _describe(args[0]) + "".join(f" {r.describe()}" for r in ranges)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, typing.Sequence, set, frozenset) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _type_problem(value: Any, tp: Any) -> str | None:
    """None when ``value`` fits the annotation ``tp``, else what is wrong (without the field name)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object or isinstance(tp, (str, typing.TypeVar)):
        return None
    if origin is Annotated:
        problem = _type_problem(value, args[0])
        if problem:
            return problem
        for r in args[1:]:
            if isinstance(r, Range) and not r.holds(value):
                return f"must be {r.describe()}"
        return None
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        return f"must be {_describe(tp)}"
    if origin in (Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        return f"must be {_describe(tp)}"
    if tp is type(None):
        return None if value is None else "must be None"
    if tp is bool:
        return None if isinstance(value, bool) else "must be True or False"
    if tp is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "must be an int"
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if tp is str:
        return None if isinstance(value, str) else "must be a string"
    if origin in (list, tuple, typing.Sequence, set, frozenset) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return f"must be {_describe(tp)}"
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"must be {_describe(tp)}"
            elem_types = list(args)
        else:
            elem_types = [args[0]] * len(value) if args else []
        for i, (v, t) in enumerate(zip(value, elem_types)):
            problem = _type_problem(v, t)
            if problem:
                return f"item {i} ({v!r}) {problem}"
        return None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return f"must be {_describe(tp)}"
        if args:
            for k, v in value.items():
                problem = _type_problem(k, args[0]) or _type_problem(v, args[1])
                if problem:
                    return f"entry {k!r}: {problem}"
        return None
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            return None  # converted by validate_dataclass
        return None if isinstance(value, tp) else f"must be a {tp.__name__}"
    return None  # an annotation we do not know how to check


def _fix_hint(value: Any, tp: Any) -> str:
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    if base is int and isinstance(value, float) and value.is_integer():
        return f"; write {int(value)} (no decimal point)"
    if base in (int, float) and isinstance(value, str):
        return "; write the number without quotes"
    if base is bool and value in (0, 1):
        return "; write true or false"
    return ""


def check_value(value: Any, tp: Any, name: str, owner: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` fits the annotation ``tp``."""
    problem = _type_problem(value, tp)
    if problem:
        where = f"{owner}.{name}" if owner else name
        expected = "" if problem.startswith("must be") else f" (expected {_describe(tp)})"
        raise ConfigError(f"{where} {problem}{expected}, got {value!r} ({type(value).__name__})"
                          f"{_fix_hint(value, tp)}", field=name)


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of ``cls`` (``Annotated`` extras kept), cached."""
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # some annotation does not resolve: resolve field by field, with typing's names
            import sys

            namespace = {**vars(typing), **vars(sys.modules.get(cls.__module__, typing))}
            hints = {}
            for f in dataclasses.fields(cls):
                try:
                    hints[f.name] = eval(f.type, namespace) if isinstance(f.type, str) else f.type
                except Exception:
                    pass  # unknown here: that field is not checked
            _HINTS[cls] = hints
    return _HINTS[cls]


def validate_dataclass(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation.

    Nested dataclass fields given as dicts (as ``config.json`` stores them) are built and
    checked; lists given to tuple fields become tuples. Raises :class:`ConfigError` naming the
    field, the value, what was expected and how to fix it.
    """
    cls = type(obj)
    hints = type_hints(cls)
    for f in dataclasses.fields(obj):
        tp = hints.get(f.name)
        if tp is None:
            continue
        value = getattr(obj, f.name)
        check_value(value, tp, f.name, cls.__name__)
        base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
        if isinstance(base, type) and dataclasses.is_dataclass(base) and isinstance(value, dict):
            object.__setattr__(obj, f.name, build_dataclass(base, value, what=f"{cls.__name__}.{f.name}"))
        elif (typing.get_origin(base) is tuple or base is tuple) and isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))


def unknown_keys(given: typing.Iterable[str], valid: typing.Iterable[str], what: str) -> None:
    """Raise :class:`ConfigError` for keys of ``given`` not in ``valid``, suggesting close names."""
    valid = sorted(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), valid, n=2, cutoff=0.6)
        hints.append(f"{k!r} (did you mean {' or '.join(map(repr, close))}?)" if close else repr(k))
    raise ConfigError(f"{what}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(valid)}",
                      field=str(unknown[0]))


def build_dataclass(cls: type, values: dict[str, Any], *, what: str = "config") -> Any:
    """``cls(**values)`` with unknown keys (with suggestions) and wrong types as :class:`ConfigError`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{what} must be a mapping of {cls.__name__} fields, got {type(values).__name__}")
    unknown_keys(values, [f.name for f in dataclasses.fields(cls) if f.init], f"{what} ({cls.__name__})")
    try:
        obj = cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}", field=e.field) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: invalid {cls.__name__}: {e}") from None
    if not isinstance(obj, CheckedConfig):
        try:
            validate_dataclass(obj)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}", field=e.field) from None
    return obj


def check_kwargs(fn: Any, kwargs: dict[str, Any], what: str, owner: str = "") -> None:
    """Check ``kwargs`` for ``fn(**kwargs)`` before calling it: unknown names (with suggestions,
    unless ``fn`` takes ``**kwargs``; ``what`` names the place) and values that do not fit ``fn``'s
    annotations (named ``owner.name``)."""
    sig = inspect.signature(fn)
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown_keys(kwargs, [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)],
                     what)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        hints = {}
    for name, value in kwargs.items():
        if name in hints and name in params:
            check_value(value, hints[name], name, owner)


class CheckedConfig:
    """Mixin for config dataclasses: ``__post_init__`` checks every field's type (and ``Range``),
    then calls :meth:`check` for rules that relate fields. Subclasses that define their own
    ``__post_init__`` call ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        validate_dataclass(self)
        self.check()

    def check(self) -> None:
        """Rules between fields; raise with :meth:`require`."""

    def require(self, ok: bool, field: str, expected: str, fix: str = "") -> None:
        """Raise :class:`ConfigError` unless ``ok``: "<Config>.<field> = <value>: expected ... (fix)"."""
        if not ok:
            value = getattr(self, field, None)
            raise ConfigError(f"{type(self).__name__}.{field} = {value!r}: expected {expected}"
                              + (f"; {fix}" if fix else ""), field=field)
