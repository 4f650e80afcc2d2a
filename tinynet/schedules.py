"""Learning-rate schedules: ``schedule(step) -> lr``.

A schedule is a callable of the optimizer's step counter, a 0-d integer
array that is ``0`` at the first update (Keras' ``optimizer.iterations`` and
optax's ``count`` both start there too).  It returns a 0-d float array made
with the step's own array library, so it works unchanged on every backend and
inside ``jax.jit``: no host transfer, no Python branching on array values.

``schedule(step, dtype)`` computes in ``dtype`` (the optimizers pass the
parameters' dtype, so a float32 model stays float32); without ``dtype`` the
library's default float dtype is used.  A Python ``int`` step is accepted for
convenience (plotting a schedule) and is placed on the current backend.

* ``StepDecay(initial, step_size, gamma)``:
  ``initial * gamma ** (step // step_size)``
* ``ExponentialDecay(initial, decay_steps, decay_rate, staircase)``:
  ``initial * decay_rate ** (step / decay_steps)``
* ``CosineDecay(initial, decay_steps, alpha, warmup_steps)``:
  optional linear warmup, then a half cosine from ``initial`` to ``alpha * initial``

``get_config()`` returns a JSON-able dict with ``"class_name"``; :func:`get`
turns such a dict (or a schedule) back into a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral
from typing import Any, ClassVar

from . import arguments, backends

__all__ = ["CosineDecay", "ExponentialDecay", "Schedule", "StepDecay", "get"]

Array = Any

_default_float: dict[int, Any] = {}


def _default_float_dtype(xp: Any, step: Array) -> Any:
    """The backend's default real floating dtype (float64 on NumPy, strict,
    PyTorch and JAX in x64 mode: ``ops.default_float_dtype``), cached per namespace."""
    key = id(xp)
    dtype = _default_float.get(key)
    if dtype is None:
        dtype = _default_float[key] = backends.backend_of(step).default_float_dtype()
    return dtype


_check_real = arguments.real
_check_int = arguments.integer


class Schedule:
    """Base class: a learning rate as a function of the step counter.

    Subclasses set ``_config_keys`` (the constructor arguments, stored as
    attributes of the same name) and implement :meth:`_value`.
    """

    _config_keys: ClassVar[tuple[str, ...]] = ()

    def __call__(self, step: Array | int, dtype: Any = None) -> Array:
        """The learning rate at ``step`` as a 0-d ``dtype`` array."""
        if isinstance(step, Integral) and not isinstance(step, bool):
            step = backends.get_backend().asarray(int(step))
        xp = backends.namespace(step)
        if dtype is None:
            dtype = _default_float_dtype(xp, step)
        return xp.asarray(self._value(xp, step, dtype))

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """A JSON-able description: ``{"class_name": ..., <arguments>}``."""
        config: dict[str, Any] = {"class_name": type(self).__name__}
        for key in self._config_keys:
            config[key] = getattr(self, key)
        return config

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
    """``initial * gamma ** floor(step / step_size)`` (PyTorch's ``StepLR``).

    The number of completed stages is counted with integer division of the
    step, so stage boundaries are exact at any step, and the power is taken
    as ``exp(stages * log(gamma))`` (``log`` in double precision), which
    stays accurate in float32 for long runs.
    """

    _config_keys = ("initial", "step_size", "gamma")

    def __init__(self, initial: float, step_size: int, gamma: float = 0.1) -> None:
        name = type(self).__name__
        self.initial = _check_real(name, "initial", initial, "a positive number", lambda v: v > 0)
        self.step_size = _check_int(
            name, "step_size", step_size, "a positive integer", lambda v: v > 0
        )
        self.gamma = _check_real(name, "gamma", gamma, "a positive number", lambda v: v > 0)
        self._log_gamma = math.log(self.gamma)

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        stages = xp.astype(step // self.step_size, dtype)
        return self.initial * xp.exp(stages * self._log_gamma)


class ExponentialDecay(Schedule):
    """Keras' ``ExponentialDecay``:

    ``initial * decay_rate ** (step / decay_steps)``, with the exponent
    floored when ``staircase`` (the rate then drops every ``decay_steps``).
    Same as ``optax.exponential_decay(initial, decay_steps, decay_rate,
    staircase=staircase)``.  The power is taken as ``exp(p * log(decay_rate))``
    with the logarithm in double precision (Keras raises the float32-rounded
    rate to the power, which drifts by ~1e-4 relative after 10^4 steps).
    """

    _config_keys = ("initial", "decay_steps", "decay_rate", "staircase")

    def __init__(
        self, initial: float, decay_steps: float, decay_rate: float, staircase: bool = False
    ) -> None:
        name = type(self).__name__
        self.initial = _check_real(name, "initial", initial, "a positive number", lambda v: v > 0)
        steps = _check_real(name, "decay_steps", decay_steps, "a positive number", lambda v: v > 0)
        self.decay_steps = int(steps) if isinstance(decay_steps, Integral) else steps
        self.decay_rate = _check_real(
            name, "decay_rate", decay_rate, "a positive number", lambda v: v > 0
        )
        self._log_rate = math.log(self.decay_rate)
        if not isinstance(staircase, bool):
            raise ValueError(
                f"{name}: staircase must be True or False, received staircase={staircase!r}"
            )
        self.staircase = staircase

    def _value(self, xp: Any, step: Array, dtype: Any) -> Array:
        p = xp.astype(step, dtype) / float(self.decay_steps)
        if self.staircase:
            p = xp.floor(p)
        return self.initial * xp.exp(p * self._log_rate)


class CosineDecay(Schedule):
    """Keras' ``CosineDecay`` (Loshchilov & Hutter's SGDR without restarts).

    Without warmup::

        t = min(step, decay_steps)
        lr = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)

    so the rate falls from ``initial`` to ``alpha * initial`` and stays there.
    With ``warmup_steps > 0`` the rate first rises linearly from 0 to
    ``initial`` over ``warmup_steps`` steps, then decays as above over the
    following ``decay_steps`` steps.  That is Keras'
    ``CosineDecay(0.0, decay_steps, alpha, warmup_target=initial,
    warmup_steps=warmup_steps)``: here ``initial`` is always the peak rate.
    """

    _config_keys = ("initial", "decay_steps", "alpha", "warmup_steps")

    def __init__(
        self, initial: float, decay_steps: int, alpha: float = 0.0, warmup_steps: int = 0
    ) -> None:
        name = type(self).__name__
        self.initial = _check_real(name, "initial", initial, "a positive number", lambda v: v > 0)
        self.decay_steps = _check_int(
            name, "decay_steps", decay_steps, "a positive integer", lambda v: v > 0
        )
        self.alpha = _check_real(name, "alpha", alpha, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.warmup_steps = _check_int(
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


_SCHEDULES: dict[str, type[Schedule]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)
}


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
