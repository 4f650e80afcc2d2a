"""The update rules: SGD, Adagrad, RMSprop, Adam and AdamW, each written for
one array (``_leaf``) with its slots; :class:`~tinynet.optimizers.base.Optimizer`
lifts them to the parameter tree.  The equations follow Keras 3 exactly."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .. import arguments, backends
from .base import Array, LearningRate, Optimizer, _log_or_none, non_negative

# ---------------------------------------------------------------- SGD


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and time decay.

    With ``lr_t = lr / (1 + decay * step)`` (``step`` = 0 at the first update,
    the classic schedule of Keras 2 and "Neural Networks from Scratch")::

        momentum == 0:  p = p - lr_t * g
        momentum > 0:   v = momentum * v - lr_t * g             (Keras 3)
                        p = p + v                               (nesterov=False)
                        p = p + momentum * v - lr_t * g         (nesterov=True)

    State: ``step`` and, with momentum, ``velocity``.  For a constant learning
    rate this equals ``optax.sgd(lr, momentum, nesterov)`` (optax keeps
    ``-v / lr`` as its trace); with a changing rate the two differ, because
    Keras scales each gradient by the rate of its own step.
    """

    _hyper = ("momentum", "nesterov", "decay")
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
        super().__init__(lr, learning_rate, clipnorm, weight_decay)
        owner = type(self).__name__
        self.momentum = arguments.unit(owner, "momentum", momentum)
        self.nesterov = arguments.boolean(owner, "nesterov", nesterov)
        self.decay = non_negative(owner, "decay", decay)
        self._slots = ("velocity",) if self.momentum > 0 else ()
        self._static = (-self._lr_const,) if self._lr_const is not None and not self.decay else None
        self._freeze()

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        if self._static is not None:
            return self._static
        lr = self._lr_at(xp, step, dtype)
        if self.decay:
            lr = lr / (1.0 + self.decay * xp.astype(step, dtype))
        return (-lr,)

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        step = g * s[0]  # -lr_t * g
        if not slots:
            step += p
            return (step,)
        mu = self.momentum
        v = slots[0] * mu
        v += step
        if self.nesterov:
            new_p = v * mu
            new_p += step
            new_p += p
        else:
            new_p = p + v
        return new_p, v


# ---------------------------------------------------------------- Adagrad


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011) as in Keras 3::

        acc = acc + g**2                       (acc starts at initial_accumulator_value)
        p   = p - lr * g / sqrt(acc + epsilon)

    Epsilon sits *inside* the square root and the accumulator starts at 0.1,
    as in Keras 3; ``optax.adagrad(lr, initial_accumulator_value, eps)`` uses
    the same defaults (0.1, 1e-7) and the same equations.
    State: ``step``, ``accumulator``.
    """

    _hyper = ("epsilon", "initial_accumulator_value")
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
        super().__init__(lr, learning_rate, clipnorm, weight_decay)
        owner = type(self).__name__
        self.epsilon = arguments.positive(owner, "epsilon", epsilon)
        self.initial_accumulator_value = non_negative(
            owner, "initial_accumulator_value", initial_accumulator_value
        )
        self._static = (-self._lr_const,) if self._lr_const is not None else None
        self._freeze()

    def _slot_value(self, name: str) -> float:
        return self.initial_accumulator_value

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        if self._static is not None:
            return self._static
        return (-self._lr_at(xp, step, dtype),)

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        acc = g * g
        acc += slots[0]
        d = acc + self.epsilon
        d = xp.sqrt(d)
        new_p = g * s[0]
        new_p /= d
        new_p += p
        return new_p, acc


# ---------------------------------------------------------------- RMSprop


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e) as in Keras 3::

        ms  = rho * ms + (1 - rho) * g**2
        mg  = rho * mg + (1 - rho) * g               (centered only)
        d   = sqrt(ms + epsilon)   or   sqrt(ms - mg**2 + epsilon) if centered
        inc = lr * g / d
        mom = momentum * mom + inc;  p = p - mom     (momentum > 0)
        p   = p - inc                                (momentum == 0)

    Epsilon is inside the square root (Keras 3; optax's ``rmsprop`` default
    ``eps_in_sqrt=True`` too) and ``ms`` starts at 0 (optax
    ``initial_scale=0``), so this equals ``optax.rmsprop(lr, decay=rho,
    eps=epsilon, centered=..., momentum=...)`` for a constant rate.
    State: ``step``, ``mean_square`` (Keras: "velocity"), ``mean_grad`` if
    centered, ``momentum`` if momentum > 0.
    """

    _hyper = ("rho", "momentum", "epsilon", "centered")
    _default_lr = 0.001

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
        super().__init__(lr, learning_rate, clipnorm, weight_decay)
        owner = type(self).__name__
        self.rho = arguments.unit(owner, "rho", rho)
        self.momentum = arguments.unit(owner, "momentum", momentum)
        self.epsilon = arguments.positive(owner, "epsilon", epsilon)
        self.centered = arguments.boolean(owner, "centered", centered)
        self._one_minus_rho = 1.0 - self.rho
        slots = ["mean_square"]
        if self.centered:
            slots.append("mean_grad")
        if self.momentum > 0:
            slots.append("momentum")
        self._slots = tuple(slots)
        lr0 = self._lr_const
        self._static = (lr0, -lr0) if lr0 is not None else None
        self._freeze()

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        if self._static is not None:
            return self._static
        lr = self._lr_at(xp, step, dtype)
        return (lr, -lr)

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        c = self._one_minus_rho
        ms_old = slots[0]
        ms = g * g  # ms + (1 - rho) * (g**2 - ms)
        ms -= ms_old
        ms *= c
        ms += ms_old
        out = [None, ms]
        if self.centered:
            mg_old = slots[1]
            mg = g - mg_old
            mg *= c
            mg += mg_old
            out.append(mg)
            d = ms - mg * mg
            d += self.epsilon
        else:
            d = ms + self.epsilon
        d = xp.sqrt(d)
        if self.momentum > 0:
            inc = g * s[0]
            inc /= d
            mom = slots[-1] * self.momentum
            mom += inc
            out.append(mom)
            out[0] = p - mom
        else:
            new_p = g * s[1]
            new_p /= d
            new_p += p
            out[0] = new_p
        return tuple(out)


# ---------------------------------------------------------------- Adam


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) exactly as Keras 3 writes it, ``t = step + 1``::

        m     = m + (g - m) * (1 - beta_1)
        v     = v + (g**2 - v) * (1 - beta_2)
        v_hat = max(v_hat, v)                      (amsgrad; then used for v)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p     = p - alpha * m / (sqrt(v) + epsilon)

    Epsilon placement: the paper's "epsilon-hat" form above (Keras, TF) adds
    epsilon to ``sqrt(v)`` of the *uncorrected* v.  optax's ``adam`` adds
    ``eps`` to ``sqrt(v / (1 - beta_2**t))`` instead, so Keras' epsilon equals
    optax's ``eps * sqrt(1 - beta_2**t)``; the two agree exactly when optax is
    given ``eps = epsilon / sqrt(1 - beta_2**t)`` per step (and when both are 0).
    AMSGrad takes the maximum of the raw ``v`` (Keras); ``optax.amsgrad`` takes
    it of the bias-corrected ``v``, which is not the same algorithm.

    ``1 - beta**t`` is computed as ``-expm1(t * log(beta))`` in the parameter
    dtype, which keeps float32 bias corrections accurate.
    State: ``step``, ``m``, ``v`` and ``v_hat`` with amsgrad.
    """

    _hyper: ClassVar[tuple[str, ...]] = ("beta_1", "beta_2", "epsilon", "amsgrad")
    _default_lr = 0.001

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
        super().__init__(lr, learning_rate, clipnorm, weight_decay)
        self._setup_adam(beta_1, beta_2, epsilon, amsgrad)
        self._freeze()

    def _setup_adam(self, beta_1: float, beta_2: float, epsilon: float, amsgrad: bool) -> None:
        owner = type(self).__name__
        self.beta_1 = arguments.unit(owner, "beta_1", beta_1)
        self.beta_2 = arguments.unit(owner, "beta_2", beta_2)
        self.epsilon = arguments.positive(owner, "epsilon", epsilon)
        self.amsgrad = arguments.boolean(owner, "amsgrad", amsgrad)
        self._c1 = 1.0 - self.beta_1
        self._c2 = 1.0 - self.beta_2
        self._log_b1 = _log_or_none(self.beta_1)
        self._log_b2 = _log_or_none(self.beta_2)
        self._slots = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        if self._lr_const is not None:
            t_host = backends.backend_of(step).host_value(step)
            if t_host is not None:
                # Host-memory backend (NumPy): the bias corrections in Python
                # floats, far cheaper than a dozen 0-d array operations.
                t_host += 1
                alpha = self._lr_const
                if self._log_b1 is not None:
                    alpha = alpha / -math.expm1(self._log_b1 * t_host)
                if self._log_b2 is not None:
                    alpha = alpha * math.sqrt(-math.expm1(self._log_b2 * t_host))
                return (-alpha,)
        lr = self._lr_at(xp, step, dtype)
        t = xp.astype(new_step, dtype)
        alpha = lr if self._log_b1 is None else lr / -xp.expm1(self._log_b1 * t)
        if self._log_b2 is not None:
            alpha = alpha * xp.sqrt(-xp.expm1(self._log_b2 * t))
        return (-alpha,)

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        m_old, v_old = slots[0], slots[1]
        m = g - m_old
        m *= self._c1
        m += m_old
        v = g * g
        v -= v_old
        v *= self._c2
        v += v_old
        if self.amsgrad:
            v_hat = xp.maximum(slots[2], v)
            d = xp.sqrt(v_hat)
        else:
            d = xp.sqrt(v)
        d += self.epsilon
        new_p = m * s[0]
        new_p /= d
        new_p += p
        if self.amsgrad:
            return new_p, m, v, v_hat
        return new_p, m, v


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): Adam with
    ``weight_decay=0.004`` (Keras 3's default).

    As Keras 3 does it, every parameter is first decayed with the current
    rate, ``p = p * (1 - lr * weight_decay)``, then the Adam step above is
    applied.  This equals ``optax.adamw(lr, ..., weight_decay=weight_decay)``
    (which also multiplies the decay by the learning rate), up to the epsilon
    placement explained in :class:`Adam`.  Every parameter is decayed,
    biases included (Keras' default).
    """

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
        Optimizer.__init__(self, lr, learning_rate, clipnorm, weight_decay)
        self._setup_adam(beta_1, beta_2, epsilon, amsgrad)
        self._freeze()
