"""Learning-rate schedules: ``schedule(step, dtype=None) -> lr``, a 0-d array of
``dtype`` (default: the backend's default float) at the optimizer's step counter
``step`` (0 first; a 0-d integer array, or a Python int placed on the current
backend), with no host transfer or branching on values, so it runs inside ``jax.jit``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from numbers import Integral
from typing import Any, ClassVar

from . import arguments, backends
from .arguments import boolean, positive

__all__ = ["CosineDecay", "ExponentialDecay", "Schedule", "StepDecay", "get"]

Array = Any
_positive_int = partial(arguments.integer, requirement="a positive integer", ok=lambda v: v > 0)
_count = partial(arguments.integer, requirement="a non-negative integer", ok=lambda v: v >= 0)
_ratio = partial(arguments.real, requirement="in [0, 1]", ok=lambda v: 0.0 <= v <= 1.0)


class Schedule:
    """Base class.  Subclasses set ``_checks`` (``{argument: check}`` in the
    constructor's order, for :meth:`_set`) and define ``_value``."""

    _checks: ClassVar[dict[str, Callable[[str, str, Any], Any]]] = {}

    def _set(self, *values: Any) -> None:
        for (key, check), value in zip(self._checks.items(), values, strict=True):
            setattr(self, key, check(type(self).__name__, key, value))

    def __call__(self, step: Array | int, dtype: Any = None) -> Array:
        """The learning rate at ``step`` as a 0-d ``dtype`` array."""
        if isinstance(step, Integral) and not isinstance(step, bool):
            step = backends.get_backend().asarray(int(step))
        xp = backends.namespace(step)
        if dtype is None:
            dtype = backends.backend_of(step).default_float_dtype()
        return xp.asarray(self._value(xp, step, dtype))

    def get_config(self) -> dict[str, Any]:
        """A JSON-able description: ``{"class_name": ..., <arguments>}``."""
        return {"class_name": type(self).__name__} | {k: getattr(self, k) for k in self._checks}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Schedule:
        """Rebuild a schedule from :meth:`get_config` output (without class_name)."""
        unknown = sorted(set(config) - set(cls._checks))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown config key(s) {', '.join(unknown)}; "
                f"valid keys are: {', '.join(cls._checks)}"
            )
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._checks)
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    """``initial * gamma ** (step // step_size)`` (PyTorch's ``StepLR``), as
    ``exp(stages * log(gamma))`` with the log in double precision (accurate in float32)."""

    _checks = dict(initial=positive, step_size=_positive_int, gamma=positive)

    def __init__(self, initial: float, step_size: int, gamma: float = 0.1) -> None:
        self._set(initial, step_size, gamma)
        self._log_gamma = math.log(self.gamma)

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        stages = xp.astype(step // self.step_size, dtype)
        return self.initial * xp.exp(stages * self._log_gamma)


class ExponentialDecay(Schedule):
    """``initial * decay_rate ** (step / decay_steps)``, the exponent floored if
    ``staircase`` (Keras' ``ExponentialDecay``), as ``exp(p * log(decay_rate))``
    with the log in double precision (Keras' float32 rate drifts)."""

    _checks = dict(initial=positive, decay_steps=positive, decay_rate=positive, staircase=boolean)

    def __init__(
        self, initial: float, decay_steps: float, decay_rate: float, staircase: bool = False
    ) -> None:
        self._set(initial, decay_steps, decay_rate, staircase)
        if isinstance(decay_steps, Integral):
            self.decay_steps = int(self.decay_steps)
        self._log_rate = math.log(self.decay_rate)

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        p = xp.astype(step, dtype) / float(self.decay_steps)
        if self.staircase:
            p = xp.floor(p)
        return self.initial * xp.exp(p * self._log_rate)


class CosineDecay(Schedule):
    """Keras' ``CosineDecay``: after an optional linear rise from 0 over
    ``warmup_steps`` (Keras' ``warmup_target=initial``), a half cosine from
    ``initial`` to ``alpha * initial`` over ``decay_steps``, then constant::

        lr = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)
    """

    _checks = dict(initial=positive, decay_steps=_positive_int, alpha=_ratio, warmup_steps=_count)

    def __init__(
        self, initial: float, decay_steps: int, alpha: float = 0.0, warmup_steps: int = 0
    ) -> None:
        self._set(initial, decay_steps, alpha, warmup_steps)

    def _cosine(self, xp: Any, t: Array) -> Array:
        cosine = 0.5 * (1.0 + xp.cos(math.pi * (t / float(self.decay_steps))))
        return self.initial * ((1.0 - self.alpha) * cosine + self.alpha)

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        t = xp.astype(step, dtype)
        warmup = self.warmup_steps
        if warmup == 0:
            return self._cosine(xp, xp.minimum(t, float(self.decay_steps)))
        t = xp.minimum(t, float(self.decay_steps + warmup))
        rising = self.initial * (t / float(warmup))
        falling = self._cosine(xp, xp.maximum(t - warmup, 0.0))
        return xp.where(t < warmup, rising, falling)


_SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)}


def get(identifier: Schedule | Mapping[str, Any]) -> Schedule:
    """A schedule from a schedule (returned as is) or a :meth:`Schedule.get_config` dict."""
    if isinstance(identifier, Schedule):
        return identifier
    if isinstance(identifier, Mapping):
        config = dict(identifier)
        name = config.pop("class_name", None)
        cls = _SCHEDULES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(
                f"unknown schedule class_name {name!r}; valid names are: "
                f"{', '.join(sorted(_SCHEDULES))}"
            )
        return cls.from_config(config)
    raise TypeError(
        f"expected a tinynet.schedules.Schedule or its config dict, received "
        f"{type(identifier).__name__}"
    )
