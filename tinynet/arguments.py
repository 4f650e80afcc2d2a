"""Argument checks shared by every public constructor and function: a wrong type or
value is a ``ValueError`` naming the owner, the argument, what it must be and what was
received (Keras's "Received: units=0" style); ``TypeError`` is for data of the wrong kind."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any


def _refuse(owner: str, name: str, requirement: str, value: Any) -> ValueError:
    prefix = f"{owner}: " if owner else ""
    return ValueError(f"{prefix}{name} must be {requirement}, received {name}={value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def real(owner: str, name: str, value: Any, requirement: str, ok: Callable[[float], bool]) -> float:
    """``float(value)`` if it is a finite real number satisfying ``ok``."""
    number = isinstance(value, Real) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and ok(float(value))):
        raise _refuse(owner, name, requirement, value)
    return float(value)


def integer(owner: str, name: str, value: Any, requirement: str, ok: Callable[[int], bool]) -> int:
    """``int(value)`` if it is an integer (not a bool) satisfying ``ok``."""
    if not (_is_int(value) and ok(int(value))):
        raise _refuse(owner, name, requirement, value)
    return int(value)


def count(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """An integer ``>= minimum``."""
    return integer(owner, name, value, f"an integer >= {minimum}", lambda v: v >= minimum)


def positive(owner: str, name: str, value: Any) -> float:
    return real(owner, name, value, "a positive number", lambda v: v > 0)


def non_negative(owner: str, name: str, value: Any) -> float:
    return real(owner, name, value, "a finite number >= 0", lambda v: v >= 0)


def unit(owner: str, name: str, value: Any) -> float:
    """A number in ``[0, 1)`` (a decay factor, a drop rate)."""
    return real(owner, name, value, "in [0, 1)", lambda v: 0 <= v < 1)


def boolean(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse(owner, name, "True or False", value)
    return value


def seed(owner: str, value: Any) -> int:
    """A seed: any Python integer (64-bit two's complement, as JAX's keys)."""
    return integer(owner, "seed", value, "an int", lambda v: -(2**63) <= v < 2**64)


def choice(owner: str, name: str, value: Any, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise _refuse(owner, name, f"one of {', '.join(map(repr, options))}", value)
    return value


def shape(owner: str, name: str, value: Any) -> tuple[int, ...]:
    """A shape without the batch axis: an int or a tuple of positive ints."""
    value = (value,) if _is_int(value) else value
    ok = isinstance(value, (tuple, list)) and value and all(_is_int(d) and d > 0 for d in value)
    if not ok:
        raise _refuse(
            owner, name, "a tuple of positive integers, e.g. (784,) or (28, 28, 1)", value
        )
    return tuple(int(d) for d in value)
