"""The update rules, each for one array and its slots (``_leaf``), as Keras 3 writes them."""

from __future__ import annotations

import math
from typing import Any

from .. import backends
from ..arguments import boolean, positive, unit
from .base import Array, LearningRate, Optimizer, non_negative


def _ema(old: Array, new: Array, c: float) -> Array:
    """``old + (new - old) * c`` (Keras' moving-average form), in place on a temporary."""
    out = new - old
    out *= c
    out += old
    return out


class SGD(Optimizer):
    """SGD with optional momentum (slot ``velocity``) and time decay::

    no momentum:  p = p - lr_t * g,  where lr_t = lr / (1 + decay * step)
    momentum:     v = momentum * v - lr_t * g;  p = p + v
    nesterov:     v as above;  p = p + momentum * v - lr_t * g
    """

    _hyper = {"momentum": unit, "nesterov": boolean, "decay": non_negative}
    _default_lr = 0.01

    def __init__(
        self,
        lr: LearningRate = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        decay: float = 0.0,
        *,
        learning_rate: LearningRate | None = None,
        clipnorm: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, learning_rate, clipnorm, weight_decay, momentum, nesterov, decay)
        self._slots = ("velocity",) if self.momentum > 0 else ()

    def _rate(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> Any:
        lr = self._lr_at(xp, step, dtype)
        return lr / (1.0 + self.decay * xp.astype(step, dtype)) if self.decay else lr

    def _leaf(self, xp: Any, neg_rate: Any, p: Array, g: Array, *slots: Array) -> tuple:
        step = g * neg_rate
        if not slots:
            step += p
            return (step,)
        v = slots[0] * self.momentum
        v += step
        if not self.nesterov:
            return p + v, v
        new_p = v * self.momentum
        new_p += step
        new_p += p
        return new_p, v


class Adagrad(Optimizer):
    """Adagrad as in Keras 3 and ``optax.adagrad`` (epsilon inside the root)::

    acc = acc + g**2        (slot accumulator, from initial_accumulator_value)
    p   = p - lr * g / sqrt(acc + epsilon)
    """

    _hyper = {"epsilon": positive, "initial_accumulator_value": non_negative}
    _default_lr = 0.01
    _slots = ("accumulator",)

    def __init__(
        self,
        lr: LearningRate = 0.01,
        epsilon: float = 1e-7,
        initial_accumulator_value: float = 0.1,
        *,
        learning_rate: LearningRate | None = None,
        clipnorm: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            lr, learning_rate, clipnorm, weight_decay, epsilon, initial_accumulator_value
        )
        self._slot_init = self.initial_accumulator_value

    def _leaf(self, xp: Any, neg_rate: Any, p: Array, g: Array, *slots: Array) -> tuple:
        acc = g * g
        acc += slots[0]
        new_p = g * neg_rate
        new_p /= xp.sqrt(acc + self.epsilon)
        new_p += p
        return new_p, acc


class RMSprop(Optimizer):
    """RMSprop as in Keras 3 (and ``optax.rmsprop`` for a constant rate)::

    ms  = rho * ms + (1 - rho) * g**2            (slot mean_square)
    mg  = rho * mg + (1 - rho) * g               (slot mean_grad, centered only)
    d   = sqrt(ms + epsilon)   or   sqrt(ms - mg**2 + epsilon) if centered
    inc = lr * g / d
    mom = momentum * mom + inc;  p = p - mom     (slot momentum, momentum > 0)
    p   = p - inc                                (momentum == 0)
    """

    _hyper = {"rho": unit, "momentum": unit, "epsilon": positive, "centered": boolean}

    def __init__(
        self,
        lr: LearningRate = 0.001,
        rho: float = 0.9,
        epsilon: float = 1e-7,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        learning_rate: LearningRate | None = None,
        clipnorm: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            lr, learning_rate, clipnorm, weight_decay, rho, momentum, epsilon, centered
        )
        used = {"mean_square": True, "mean_grad": self.centered, "momentum": self.momentum > 0}
        self._slots = tuple(name for name, use in used.items() if use)

    def _leaf(self, xp: Any, neg_rate: Any, p: Array, g: Array, *slots: Array) -> tuple:
        ms = _ema(slots[0], g * g, 1.0 - self.rho)
        d = ms
        new_slots = [ms]
        if self.centered:
            mg = _ema(slots[1], g, 1.0 - self.rho)
            new_slots.append(mg)
            d = ms - mg * mg
        step = g * neg_rate  # -inc
        step /= xp.sqrt(d + self.epsilon)
        if self.momentum > 0:
            mom = slots[-1] * self.momentum
            mom -= step
            return (p - mom, *new_slots, mom)
        step += p
        return (step, *new_slots)


class Adam(Optimizer):
    """Adam exactly as Keras 3 writes it, ``t = step + 1``::

        m     = m + (g - m) * (1 - beta_1)          (slot m)
        v     = v + (g**2 - v) * (1 - beta_2)       (slot v)
        v_hat = max(v_hat, v)                       (slot v_hat, amsgrad: used for v)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p     = p - alpha * m / (sqrt(v) + epsilon)

    Epsilon is added to ``sqrt`` of the *uncorrected* v (optax: of the corrected
    v, as is its AMSGrad maximum)."""

    _hyper = {"beta_1": unit, "beta_2": unit, "epsilon": positive, "amsgrad": boolean}

    def __init__(
        self,
        lr: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        *,
        learning_rate: LearningRate | None = None,
        clipnorm: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            lr, learning_rate, clipnorm, weight_decay, beta_1, beta_2, epsilon, amsgrad
        )
        # 1 - beta**t as -expm1(t * log(beta)), accurate in float32; None: beta 0, no correction
        self._log_b1 = math.log(self.beta_1) if self.beta_1 > 0 else None
        self._log_b2 = math.log(self.beta_2) if self.beta_2 > 0 else None
        self._slots = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _rate(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> Any:
        t = backends.backend_of(step).host_value(step) if self._lr_const is not None else None
        if t is None:
            lib, lr, t = xp, self._lr_at(xp, step, dtype), xp.astype(new_step, dtype)
        else:  # host memory (NumPy): Python floats, far cheaper than 0-d arrays
            lib, lr, t = math, self._lr_const, t + 1
        alpha = lr if self._log_b1 is None else lr / -lib.expm1(self._log_b1 * t)
        if self._log_b2 is not None:
            alpha = alpha * lib.sqrt(-lib.expm1(self._log_b2 * t))
        return alpha

    def _leaf(self, xp: Any, neg_rate: Any, p: Array, g: Array, *slots: Array) -> tuple:
        m = _ema(slots[0], g, 1.0 - self.beta_1)
        v = _ema(slots[1], g * g, 1.0 - self.beta_2)
        new_slots = (m, v, xp.maximum(slots[2], v)) if self.amsgrad else (m, v)
        new_p = m * neg_rate
        new_p /= xp.sqrt(new_slots[-1]) + self.epsilon
        new_p += p
        return (new_p, *new_slots)


class AdamW(Adam):
    """:class:`Adam` with decoupled weight decay, by default 0.004 (Keras 3's):
    ``p = p * (1 - lr * weight_decay)`` for every parameter, then the Adam step."""

    def __init__(
        self,
        lr: LearningRate = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        *,
        learning_rate: LearningRate | None = None,
        clipnorm: float | None = None,
    ) -> None:
        common = dict(learning_rate=learning_rate, clipnorm=clipnorm, weight_decay=weight_decay)
        super().__init__(lr, beta_1, beta_2, epsilon, amsgrad, **common)
