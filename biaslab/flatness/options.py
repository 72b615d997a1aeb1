"""Checks of measure options, raising ConfigError that names the measure, the option and the value."""

from __future__ import annotations

import numbers
from typing import Any

from biaslab.errors import ConfigError


def require_int(measure: str, options: dict, name: str, minimum: int) -> None:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be >= {minimum}")


def require_number(measure: str, options: dict, name: str, *, above: float | None = None,
                   at_least: float | None = None, at_most: float | None = None) -> None:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be a number")
    if above is not None and not value > above:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be > {above}")
    if at_least is not None and value < at_least:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be >= {at_least}")
    if at_most is not None and value > at_most:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be <= {at_most}")


def require_bool(measure: str, options: dict, name: str) -> None:
    value = options[name]
    if not isinstance(value, bool):
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be true or false")


def require_text(measure: str, options: dict, name: str) -> None:
    value: Any = options[name]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{measure} option {name}={value!r} is invalid: it must be a non-empty string")
