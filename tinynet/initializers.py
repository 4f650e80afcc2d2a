"""Weight initialisers ``fn(key, shape, dtype) -> array`` on the key's backend,
with Keras's fans and truncated normals.  The uniform ones are bit-identical on
every backend (see :mod:`tinynet.random`), the normal ones agree to a few ulps."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import backends
from . import random as tnrandom

Array = Any
Initializer = Callable[[Array, tuple[int, ...], Any], Array]

TRUNCATION_ROUNDS = 8
_TRUNCATED_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` as Keras: ``(in, out)`` for a Dense ``W``, ``shape[0]``
    twice for a vector; for rank > 2 the leading axes (receptive field) multiply both."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _fan(shape: tuple[int, ...], which: str) -> int:
    """``fan_in`` or ``fan_in + fan_out`` of ``shape``, refused unless positive."""
    fan_in, fan_out = compute_fans(shape)
    n = fan_in if which == "fan_in" else fan_in + fan_out
    if n <= 0:
        raise ValueError(f"{which} of shape {shape} is {n}; it must be positive")
    return n


def _truncated(key: Array, shape: tuple[int, ...], dt: Any, stddev: float) -> Array:
    """Keras's truncated normal without data-dependent shapes: of TRUNCATION_ROUNDS
    draws per entry the first inside [-2, 2] is kept; none (p ~ 2e-11): clipped."""
    xp = backends.namespace(key)
    size = math.prod(shape)
    draws = tnrandom.normal(key, (TRUNCATION_ROUNDS, max(size, 1)), dt)
    z = xp.clip(draws[TRUNCATION_ROUNDS - 1, :], -2.0, 2.0)
    for r in range(TRUNCATION_ROUNDS - 2, -1, -1):  # the first draw inside [-2, 2] wins
        candidate = draws[r, :]
        z = xp.where(xp.abs(candidate) <= 2.0, candidate, z)
    return xp.reshape((z * stddev)[:size], shape)


def _truncated_normal(key: Array, shape: tuple[int, ...], dtype: Any, stddev: float) -> Array:
    """``stddev * z`` of ``shape``, ``z`` standard normal truncated to [-2, 2]."""
    dt = tnrandom._dtype(key, dtype, ("float32", "float64"))
    compiled = tnrandom._compiled(_truncated, key, static_argnums=(1, 2, 3))
    return compiled(key, tuple(int(d) for d in shape), dt, float(stddev))


def glorot_uniform(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """Glorot/Xavier uniform: U[-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``."""
    limit = math.sqrt(6.0 / _fan(shape, "fan_in + fan_out"))
    return tnrandom.uniform(key, shape, dtype, -limit, limit)


def he_uniform(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """He/Kaiming uniform: U[-l, l) with ``l = sqrt(6 / fan_in)``."""
    limit = math.sqrt(6.0 / _fan(shape, "fan_in"))
    return tnrandom.uniform(key, shape, dtype, -limit, limit)


def glorot_normal(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """Glorot normal: truncated at 2 stddev, ``stddev = sqrt(2/(in+out)) / .8796``."""
    stddev = math.sqrt(2.0 / _fan(shape, "fan_in + fan_out")) / _TRUNCATED_STD
    return _truncated_normal(key, shape, dtype, stddev)


def he_normal(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """He normal: truncated at 2 stddev, ``stddev = sqrt(2 / fan_in) / .8796``."""
    stddev = math.sqrt(2.0 / _fan(shape, "fan_in")) / _TRUNCATED_STD
    return _truncated_normal(key, shape, dtype, stddev)


def uniform(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """Keras's ``"uniform"`` (``RandomUniform()``): U[-0.05, 0.05); Embedding's default."""
    return tnrandom.uniform(key, shape, dtype, -0.05, 0.05)


def _filled(key: Array, shape: tuple[int, ...], dtype: Any, make: str) -> Array:
    xp = backends.namespace(key)
    dt = tnrandom._dtype(key, dtype, ("float32", "float64"))
    return getattr(xp, make)(tuple(shape), dtype=dt, device=tnrandom._device(key))


def zeros(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """All zeros of ``shape`` on the key's backend (the key is not used)."""
    return _filled(key, shape, dtype, "zeros")


def ones(key: Array, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
    """All ones of ``shape`` on the key's backend (the key is not used)."""
    return _filled(key, shape, dtype, "ones")


_INITIALIZERS = (glorot_uniform, glorot_normal, he_uniform, he_normal, uniform, zeros, ones)
_REGISTRY: dict[str, Initializer] = {fn.__name__: fn for fn in _INITIALIZERS}
_REGISTRY["random_uniform"] = uniform  # Keras's RandomUniform
__all__ = ["TRUNCATION_ROUNDS", "compute_fans", "get", *(fn.__name__ for fn in _INITIALIZERS)]


def resolve(init: str | Initializer) -> tuple[str, Initializer]:
    """``(name, fn)``: the name a layer's config saves, and :func:`get`'s function."""
    return (init if isinstance(init, str) else getattr(init, "__name__", str(init))), get(init)


def get(name_or_fn: str | Initializer) -> Initializer:
    """The initialiser called ``name_or_fn`` (a callable is returned as is)."""
    if callable(name_or_fn):
        return name_or_fn
    if isinstance(name_or_fn, str):
        fn = _REGISTRY.get(name_or_fn.strip().lower())
        if fn is not None:
            return fn
    raise ValueError(
        f"unknown initializer {name_or_fn!r}; valid names are: {', '.join(sorted(_REGISTRY))} "
        "(or pass a function fn(key, shape, dtype) -> array)"
    )
