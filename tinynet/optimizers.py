"""Optimizers as pure functions over the model's parameter tree.

The tree is what a model owns: a list with one dict per layer, e.g.
``[{"W": W0, "b": b0}, {}, {"W": W1, "b": b1}]``.  Every optimizer has::

    state = opt.init(params)
    params, state = opt.update(grads, state, params)

* ``state`` holds arrays only, in plain dicts and lists: ``state["step"]`` is
  a 0-d int32 counter (0 before the first update) and every slot (momentum,
  moments, accumulators) is a list of dicts mirroring ``params``.  So
  ``jax.jit`` takes it as a pytree and a checkpoint can save it as is.
* ``update`` is pure: it never writes into ``grads``, ``state`` or ``params``
  (in-place operators are applied only to temporaries it has just made), it
  consults no host values and branches only on configuration, so it runs
  unchanged inside ``jax.jit``.  The array library is taken from the arrays.
* Every parameter keeps its dtype: scalar factors (learning rate, bias
  corrections) are computed in the parameter's dtype and gradients of another
  dtype are cast to it, so a float32 model stays float32.

The update equations follow Keras 3 (``keras.optimizers``) exactly, including
where epsilon sits; the docstrings say where and how optax differs.
Common arguments of every optimizer:

``lr`` (alias ``learning_rate``)
    A positive float or a schedule: a :mod:`tinynet.schedules` object or any
    callable ``lr(step) -> 0-d array``, called with the step counter before
    it is incremented (0 at the first update; Keras' ``iterations`` and
    optax's ``count`` follow the same convention).
``clipnorm``
    Clip the gradients by their *global* norm over the whole tree first:
    ``g *= clipnorm / max(norm, clipnorm)``, i.e. ``min(1, clipnorm / norm)``,
    computed on the device without branching.  This is Keras'
    ``global_clipnorm`` and ``optax.clip_by_global_norm`` (Keras' own
    ``clipnorm`` clips each variable separately).

Hyperparameters are fixed at construction (derived constants are precomputed
then); build a new optimizer to change them, e.g.
``optimizers.get({**opt.get_config(), "lr": 0.01})``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, ClassVar

from . import backends, schedules
from .schedules import Schedule, _check_real

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "get"]

Array = Any
Params = list[dict[str, Array]]
State = dict[str, Any]
LearningRate = float | Schedule | Callable[[Array], Array]


# ---------------------------------------------------------------- helpers


def _check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, received {name}={value!r}")
    return value


def _positive(owner: str, name: str, value: Any) -> float:
    return _check_real(owner, name, value, "a positive number", lambda v: v > 0)


def _non_negative(owner: str, name: str, value: Any) -> float:
    return _check_real(owner, name, value, "a non-negative number", lambda v: v >= 0)


def _unit(owner: str, name: str, value: Any) -> float:
    return _check_real(owner, name, value, "in [0, 1)", lambda v: 0 <= v < 1)


def _log_or_none(beta: float) -> float | None:
    """``log(beta)`` for computing ``1 - beta**t`` as ``-expm1(t * log(beta))``
    (accurate in float32, where ``1 - 0.999**t`` loses 4 digits); None for 0."""
    return math.log(beta) if beta > 0 else None


def _clip_by_global_norm(xp: Any, grads: Params, clipnorm: float) -> Params:
    """``grads * min(1, clipnorm / global_norm)`` with no host round trip."""
    total = None
    for layer in grads:
        for g in layer.values():
            flat = g if g.ndim == 1 else xp.reshape(g, (-1,))
            sq = xp.vecdot(flat, flat)
            total = sq if total is None else total + sq
    if total is None:
        return grads
    # clipnorm / max(norm, clipnorm): exactly 1 when norm <= clipnorm, no
    # division by zero for all-zero gradients, NaN norms propagate.
    scale = clipnorm / xp.maximum(xp.sqrt(total), clipnorm)
    scales: dict[Any, Any] = {scale.dtype: scale}
    clipped = []
    for layer in grads:
        out = {}
        for k, g in layer.items():
            s = scales.get(g.dtype)
            if s is None:
                s = scales[g.dtype] = xp.astype(scale, g.dtype)
            out[k] = g * s
        clipped.append(out)
    return clipped


# ---------------------------------------------------------------- base class


class Optimizer:
    """Base class.  Subclasses define:

    * ``_hyper``: constructor hyperparameters (besides ``lr``/``clipnorm``),
      stored as attributes of the same name and listed in the config;
    * ``_slots`` (per instance): names of the per-parameter state entries;
    * ``_scalars(xp, step, new_step, dtype)``: the per-update scalar factors
      for parameters of ``dtype`` (computed once per update and dtype);
    * ``_leaf(xp, scalars, p, g, *slots) -> (new_p, *new_slots)``.
    """

    _hyper: ClassVar[tuple[str, ...]] = ()
    _default_lr: ClassVar[float] = 0.001
    _slots: tuple[str, ...] = ()

    def __init__(self, lr: LearningRate, learning_rate: LearningRate | None, clipnorm: Any) -> None:
        owner = type(self).__name__
        if learning_rate is not None:
            if not (isinstance(lr, float) and lr == self._default_lr):
                raise ValueError(
                    f"{owner}: pass the learning rate once, as lr= or as learning_rate=, "
                    f"received lr={lr!r} and learning_rate={learning_rate!r}"
                )
            lr = learning_rate
        if isinstance(lr, Schedule) or (callable(lr) and not isinstance(lr, Real)):
            self.lr: LearningRate = lr
            self._lr_const: float | None = None
        else:
            self.lr = self._lr_const = _check_real(
                owner, "lr", lr, "a positive number or a schedule", lambda v: v > 0
            )
        self.clipnorm: float | None = (
            None
            if clipnorm is None
            else _check_real(
                owner, "clipnorm", clipnorm, "None or a positive number", lambda v: v > 0
            )
        )

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen", False):
            raise AttributeError(
                f"{type(self).__name__}: hyperparameters are fixed at construction "
                f"(cannot set {name!r}); build a new optimizer, e.g. "
                f"optimizers.get({{**opt.get_config(), {name!r}: value}})"
            )
        object.__setattr__(self, name, value)

    # ---------------------------------------------------------- public API

    def init(self, params: Params) -> State:
        """The state before the first update: step 0 and zeroed slots."""
        leaves = [p for layer in params for p in layer.values()]
        xp = backends.namespace(*leaves)
        device = getattr(leaves[0], "device", None) if leaves else None
        state: State = {"step": xp.zeros((), dtype=xp.int32, device=device)}
        for name in self._slots:
            value = self._slot_value(name)
            state[name] = [
                {k: xp.full_like(p, value) for k, p in layer.items()} for layer in params
            ]
        return state

    def update(self, grads: Params, state: State, params: Params) -> tuple[Params, State]:
        """One step: ``(new_params, new_state)``; the inputs are left untouched.

        The one place where the per-array rule (``_leaf``) is lifted to the
        parameter tree: clipping first, then every leaf with its slots."""
        if len(grads) != len(params):
            raise ValueError(
                f"{type(self).__name__}.update: grads has {len(grads)} layer(s) but params "
                f"has {len(params)}; they must have the same structure"
            )
        step = state["step"]
        xp = backends.namespace(step)
        new_step = xp.asarray(step + 1)
        if self.clipnorm is not None:
            grads = _clip_by_global_norm(xp, grads, self.clipnorm)
        names = self._slots
        if not names:
            return self._update_stateless(xp, grads, params, step, new_step), {"step": new_step}
        slot_trees = [state[n] for n in names]
        n_layers = len(params)
        new_params: Params = [{} for _ in range(n_layers)]
        new_trees: list[Params] = [[{} for _ in range(n_layers)] for _ in names]
        leaf = self._leaf
        scalars = self._scalars_by_dtype(xp, step, new_step)
        # Plain loops over the leaves, filling dicts made up front: on a small
        # model this bookkeeping costs as much as the maths.
        for i in range(n_layers):
            p_layer = params[i]
            if not p_layer:
                continue
            g_layer = grads[i]
            slot_layers = [tree[i] for tree in slot_trees]
            out_layer = new_params[i]
            out_slot_layers = [tree[i] for tree in new_trees]
            for key, p in p_layer.items():
                g = _as_dtype(xp, g_layer[key], p.dtype)
                out = leaf(xp, scalars(p.dtype), p, g, *[layer[key] for layer in slot_layers])
                if p.ndim == 0:  # NumPy turns 0-d results into scalars
                    out = tuple(xp.asarray(o) for o in out)
                out_layer[key] = out[0]
                for layer, new in zip(out_slot_layers, out[1:], strict=True):
                    layer[key] = new
        new_state: State = {"step": new_step}
        for name, tree in zip(names, new_trees, strict=True):
            new_state[name] = tree
        return new_params, new_state

    def _update_stateless(
        self, xp: Any, grads: Params, params: Params, step: Array, new_step: Array
    ) -> Params:
        """:meth:`update` for optimizers without slots (plain SGD): the same
        leaf maths without the slot bookkeeping, which dominates small models."""
        leaf = self._leaf
        scalars = self._scalars_by_dtype(xp, step, new_step)
        new_params: Params = []
        for p_layer, g_layer in zip(params, grads, strict=True):
            new_layer: dict[str, Array] = {}
            for key, p in p_layer.items():
                new_p = leaf(xp, scalars(p.dtype), p, _as_dtype(xp, g_layer[key], p.dtype))[0]
                new_layer[key] = new_p if p.ndim else xp.asarray(new_p)
            new_params.append(new_layer)
        return new_params

    def get_config(self) -> dict[str, Any]:
        """A JSON-able dict: ``class_name``, ``lr`` and every hyperparameter."""
        lr = self.lr
        if isinstance(lr, Schedule):
            lr = lr.get_config()
        elif not isinstance(lr, float):
            raise TypeError(
                f"{type(self).__name__}.get_config: the learning rate {lr!r} is a plain "
                "callable and cannot be serialised; use a tinynet.schedules schedule"
            )
        config: dict[str, Any] = {"class_name": type(self).__name__, "lr": lr}
        for key in self._hyper:
            config[key] = getattr(self, key)
        config["clipnorm"] = self.clipnorm
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Optimizer:
        """Rebuild from :meth:`get_config` output (``class_name`` optional)."""
        config = dict(config)
        name = config.pop("class_name", cls.__name__)
        if not isinstance(name, str) or name.lower() != cls.__name__.lower():
            raise ValueError(f"{cls.__name__}.from_config: config is for {name!r}")
        valid = ("lr", "learning_rate", *cls._hyper, "clipnorm")
        unknown = sorted(set(config) - set(valid))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown config key(s) {', '.join(unknown)}; "
                f"valid keys are: {', '.join(valid)}"
            )
        for key in ("lr", "learning_rate"):
            if isinstance(config.get(key), Mapping):
                config[key] = schedules.get(config[key])
        return cls(**config)

    def __repr__(self) -> str:
        args = [f"lr={self.lr!r}"]
        args += [f"{k}={getattr(self, k)!r}" for k in self._hyper]
        if self.clipnorm is not None:
            args.append(f"clipnorm={self.clipnorm!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    # ---------------------------------------------------------- for subclasses

    def _slot_value(self, name: str) -> float:
        """Every element's value in slot ``name`` before the first update."""
        return 0.0

    def _lr_at(self, xp: Any, step: Array, dtype: Any) -> Any:
        """The learning rate for this update: a Python float or 0-d ``dtype`` array."""
        if self._lr_const is not None:
            return self._lr_const
        lr = self.lr
        if isinstance(lr, Schedule):
            return lr(step, dtype)
        value = lr(step)
        if isinstance(value, Real):
            return float(value)
        value = xp.asarray(value)
        return value if value.dtype == dtype else xp.astype(value, dtype)

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        raise NotImplementedError

    def _scalars_by_dtype(self, xp: Any, step: Array, new_step: Array) -> Callable:
        """``scalars(dtype)``: :meth:`_scalars` for one update, computed once
        per parameter dtype."""
        cache: dict[Any, tuple] = {}

        def scalars(dtype: Any) -> tuple:
            s = cache.get(dtype)
            if s is None:
                s = cache[dtype] = self._scalars(xp, step, new_step, dtype)
            return s

        return scalars

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        raise NotImplementedError


def _as_dtype(xp: Any, g: Array, dtype: Any) -> Array:
    """A gradient in its parameter's dtype (every parameter keeps its dtype)."""
    return g if g.dtype == dtype else xp.astype(g, dtype)


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
    ) -> None:
        super().__init__(lr, learning_rate, clipnorm)
        owner = type(self).__name__
        self.momentum = _unit(owner, "momentum", momentum)
        self.nesterov = _check_bool(owner, "nesterov", nesterov)
        self.decay = _non_negative(owner, "decay", decay)
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
    ) -> None:
        super().__init__(lr, learning_rate, clipnorm)
        owner = type(self).__name__
        self.epsilon = _positive(owner, "epsilon", epsilon)
        self.initial_accumulator_value = _non_negative(
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
    ) -> None:
        super().__init__(lr, learning_rate, clipnorm)
        owner = type(self).__name__
        self.rho = _unit(owner, "rho", rho)
        self.momentum = _unit(owner, "momentum", momentum)
        self.epsilon = _positive(owner, "epsilon", epsilon)
        self.centered = _check_bool(owner, "centered", centered)
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
    ) -> None:
        super().__init__(lr, learning_rate, clipnorm)
        self._setup_adam(beta_1, beta_2, epsilon, amsgrad, weight_decay=0.0)
        self._freeze()

    def _setup_adam(
        self, beta_1: float, beta_2: float, epsilon: float, amsgrad: bool, weight_decay: float
    ) -> None:
        owner = type(self).__name__
        self.beta_1 = _unit(owner, "beta_1", beta_1)
        self.beta_2 = _unit(owner, "beta_2", beta_2)
        self.epsilon = _positive(owner, "epsilon", epsilon)
        self.amsgrad = _check_bool(owner, "amsgrad", amsgrad)
        self._wd = weight_decay
        self._c1 = 1.0 - self.beta_1
        self._c2 = 1.0 - self.beta_2
        self._log_b1 = _log_or_none(self.beta_1)
        self._log_b2 = _log_or_none(self.beta_2)
        self._slots = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _scalars(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> tuple:
        if self._lr_const is not None and not self._wd:
            t_host = backends.backend_of(step).host_value(step)
            if t_host is not None:
                # Host-memory backend (NumPy): the bias corrections in Python
                # floats cost ~1 us instead of ~10 us of 0-d array operations.
                t_host += 1
                alpha = self._lr_const
                if self._log_b1 is not None:
                    alpha = alpha / -math.expm1(self._log_b1 * t_host)
                if self._log_b2 is not None:
                    alpha = alpha * math.sqrt(-math.expm1(self._log_b2 * t_host))
                return (-alpha, None)
        lr = self._lr_at(xp, step, dtype)
        t = xp.astype(new_step, dtype)
        alpha = lr if self._log_b1 is None else lr / -xp.expm1(self._log_b1 * t)
        if self._log_b2 is not None:
            alpha = alpha * xp.sqrt(-xp.expm1(self._log_b2 * t))
        keep = 1.0 - lr * self._wd if self._wd else None  # AdamW: p * (1 - lr * wd)
        return (-alpha, keep)

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
        keep = s[1]
        if keep is None:
            new_p += p
        else:
            new_p += p * keep
        if self.amsgrad:
            return new_p, m, v, v_hat
        return new_p, m, v


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    As Keras 3 does it, every parameter is first decayed with the current
    rate, ``p = p - lr * weight_decay * p``, then the Adam step above is
    applied.  This equals ``optax.adamw(lr, ..., weight_decay=weight_decay)``
    (which also multiplies the decay by the learning rate), up to the epsilon
    placement explained in :class:`Adam`.  Every parameter is decayed,
    biases included (Keras' default).  Keras' default ``weight_decay=0.004``.
    """

    _hyper = ("weight_decay", "beta_1", "beta_2", "epsilon", "amsgrad")

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
        Optimizer.__init__(self, lr, learning_rate, clipnorm)
        self.weight_decay = _non_negative(type(self).__name__, "weight_decay", weight_decay)
        self._setup_adam(beta_1, beta_2, epsilon, amsgrad, weight_decay=self.weight_decay)
        self._freeze()


# ---------------------------------------------------------------- lookup

_OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__.lower(): cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)
}


def _lookup(name: Any) -> type[Optimizer]:
    cls = _OPTIMIZERS.get(name.strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"unknown optimizer {name!r}; valid names are: {', '.join(sorted(_OPTIMIZERS))}"
        )
    return cls


def get(identifier: str | Mapping[str, Any] | Optimizer) -> Optimizer:
    """An optimizer from a name (defaults), a :meth:`Optimizer.get_config`
    dict, or an optimizer (returned as is).

    Names (case-insensitive): ``"sgd"``, ``"adagrad"``, ``"rmsprop"``,
    ``"adam"``, ``"adamw"``.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, Mapping):
        if "class_name" not in identifier:
            raise ValueError(
                "optimizer config needs a 'class_name' key (one of: "
                f"{', '.join(sorted(_OPTIMIZERS))}), received keys {sorted(identifier)}"
            )
        return _lookup(identifier["class_name"]).from_config(identifier)
    raise TypeError(
        "expected an optimizer name, config dict or tinynet optimizer, received "
        f"{type(identifier).__name__}"
    )
