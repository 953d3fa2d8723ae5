"""Checks of quantizer config fields, run when a config is constructed.

Each raises :class:`~zoo.errors.ConfigError` naming the field, the value it got and what it
expects, instead of letting a bad value reach the library (where it would be truncated, ignored
or fail deep inside a forward pass).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from zoo.errors import ConfigError

#: eval lookup backends of every quantizer config; "library" runs vector-quantize-pytorch's own forward
LOOKUP_BACKENDS = ("auto", "torch", "triton", "library")


def _where(owner: str, name: str) -> str:
    return f"{owner}.{name}" if owner else name


def check_int(owner: str, name: str, value: Any, minimum: int | None = None, *, optional: bool = False) -> int | None:
    """``value`` must be an int (not a bool, not a float such as 8.7) >= ``minimum``; returns it as int."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        none = " or None" if optional else ""
        raise ConfigError(f"{_where(owner, name)} must be an int{none}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{_where(owner, name)} must be >= {minimum}, got {value}")
    return value


def check_float(owner: str, name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False) -> float:
    """``value`` must be a finite real number in [low, high] (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{_where(owner, name)} must be a finite number, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{_where(owner, name)} must be in {'(' if low_open else '['}{lo}, {hi}], got {value:g}")
    return value


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` must be True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(owner, name)} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_levels(owner: str, value: Any, minimum: int, name: str = "levels") -> tuple[int, ...]:
    """FSQ levels (the field ``name`` of ``owner``): a non-empty list of ints >= ``minimum`` (8.7 is
    refused, never truncated)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{_where(owner, name)} must be a list of ints >= {minimum}, got {value!r}", field=name)
    levels = tuple(value)
    if not levels or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < minimum
                         for v in levels):
        raise ConfigError(f"{_where(owner, name)} must be a non-empty list of ints >= {minimum}, "
                          f"got {list(levels)}", field=name)
    if math.prod(int(v) for v in levels) > 2 ** 62:
        raise ConfigError(f"{_where(owner, name)} give {math.prod(int(v) for v in levels)} codes; "
                          "ids are int64: at most 2**62", field=name)
    return tuple(int(v) for v in levels)


def check_lookup_backend(value: Any) -> None:
    """Config check shared by every quantizer: ``value`` must be one of :data:`LOOKUP_BACKENDS`."""
    if value not in LOOKUP_BACKENDS:
        raise ConfigError(f"lookup_backend must be one of {LOOKUP_BACKENDS}, got {value!r}")


def check_common(config: Any) -> None:
    """Fields every quantizer config has: ``lookup_backend`` and ``usage_window``."""
    check_lookup_backend(config.lookup_backend)
    config.usage_window = check_int(type(config).__name__, "usage_window", config.usage_window, 1)
