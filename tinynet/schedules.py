"""Learning-rate schedules: ``schedule(step, dtype=None) -> lr``, a 0-d array of
``dtype`` (default: the backend's default float) at the optimizer's step counter
``step`` (0 first; a 0-d integer array, or a Python int placed on the current
backend), with no host transfer or branching on values, so it runs inside ``jax.jit``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral
from typing import Any, ClassVar

from . import arguments, backends

__all__ = ["CosineDecay", "ExponentialDecay", "Schedule", "StepDecay", "get"]

Array = Any


class Schedule:
    """Base class.  Subclasses set ``_config_keys`` (the constructor
    arguments, stored as attributes of the same name) and define ``_value``."""

    _config_keys: ClassVar[tuple[str, ...]] = ()

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
        config = {k: getattr(self, k) for k in self._config_keys}
        return {"class_name": type(self).__name__, **config}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Schedule:
        """Rebuild a schedule from :meth:`get_config` output (without class_name)."""
        unknown = sorted(set(config) - set(cls._config_keys))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown config key(s) {', '.join(unknown)}; "
                f"valid keys are: {', '.join(cls._config_keys)}"
            )
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._config_keys)
        return f"{type(self).__name__}({args})"


class StepDecay(Schedule):
    """``initial * gamma ** (step // step_size)`` (PyTorch's ``StepLR``), as
    ``exp(stages * log(gamma))`` with the log in double precision (accurate in float32)."""

    _config_keys = ("initial", "step_size", "gamma")

    def __init__(self, initial: float, step_size: int, gamma: float = 0.1) -> None:
        name = type(self).__name__
        self.initial = arguments.positive(name, "initial", initial)
        self.step_size = arguments.integer(
            name, "step_size", step_size, "a positive integer", lambda v: v > 0
        )
        self.gamma = arguments.positive(name, "gamma", gamma)
        self._log_gamma = math.log(self.gamma)

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        stages = xp.astype(step // self.step_size, dtype)
        return self.initial * xp.exp(stages * self._log_gamma)


class ExponentialDecay(Schedule):
    """``initial * decay_rate ** (step / decay_steps)``, the exponent floored if
    ``staircase`` (Keras' ``ExponentialDecay``), as ``exp(p * log(decay_rate))``
    with the log in double precision (Keras' float32 rate drifts by ~1e-4
    relative after 10^4 steps)."""

    _config_keys = ("initial", "decay_steps", "decay_rate", "staircase")

    def __init__(
        self, initial: float, decay_steps: float, decay_rate: float, staircase: bool = False
    ) -> None:
        name = type(self).__name__
        self.initial = arguments.positive(name, "initial", initial)
        steps = arguments.positive(name, "decay_steps", decay_steps)
        self.decay_steps = int(steps) if isinstance(decay_steps, Integral) else steps
        self.decay_rate = arguments.positive(name, "decay_rate", decay_rate)
        self._log_rate = math.log(self.decay_rate)
        self.staircase = arguments.boolean(name, "staircase", staircase)

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

    _config_keys = ("initial", "decay_steps", "alpha", "warmup_steps")

    def __init__(
        self, initial: float, decay_steps: int, alpha: float = 0.0, warmup_steps: int = 0
    ) -> None:
        name = type(self).__name__
        self.initial = arguments.positive(name, "initial", initial)
        self.decay_steps = arguments.integer(
            name, "decay_steps", decay_steps, "a positive integer", lambda v: v > 0
        )
        self.alpha = arguments.real(name, "alpha", alpha, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.warmup_steps = arguments.integer(
            name, "warmup_steps", warmup_steps, "a non-negative integer", lambda v: v >= 0
        )

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
