"""The optimizer base: per-array update rules lifted to the parameter tree.

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
``weight_decay``
    Decoupled weight decay (Loshchilov & Hutter), as Keras 3 applies it for
    every optimizer: each parameter is first decayed with the current rate,
    ``p = p * (1 - lr * weight_decay)``, then the optimizer's step is
    applied to it.  0 (off) by default; :class:`AdamW` is Adam with 0.004.
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

from .. import arguments, backends, schedules
from ..schedules import Schedule

Array = Any
Params = list[dict[str, Array]]
State = dict[str, Any]
LearningRate = float | Schedule | Callable[[Array], Array]


# ---------------------------------------------------------------- helpers


def non_negative(owner: str, name: str, value: Any) -> float:
    return arguments.real(owner, name, value, "a non-negative number", lambda v: v >= 0)


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

    * ``_hyper``: constructor hyperparameters (besides ``lr``,
      ``weight_decay`` and ``clipnorm``), stored as attributes of the same
      name and listed in the config;
    * ``_slots`` (per instance): names of the per-parameter state entries;
    * ``_scalars(xp, step, new_step, dtype)``: the per-update scalar factors
      for parameters of ``dtype`` (computed once per update and dtype);
    * ``_leaf(xp, scalars, p, g, *slots) -> (new_p, *new_slots)``: the rule
      for ONE array (optax's ``scale_by_adam`` idea); :meth:`update` lifts
      it to the tree, after clipping and weight decay.
    """

    _hyper: ClassVar[tuple[str, ...]] = ()
    _default_lr: ClassVar[float] = 0.001
    _slots: tuple[str, ...] = ()

    def __init__(
        self,
        lr: LearningRate,
        learning_rate: LearningRate | None,
        clipnorm: Any,
        weight_decay: Any = 0.0,
    ) -> None:
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
            self.lr = self._lr_const = arguments.real(
                owner, "lr", lr, "a positive number or a schedule", lambda v: v > 0
            )
        self.clipnorm: float | None = (
            None
            if clipnorm is None
            else arguments.real(
                owner, "clipnorm", clipnorm, "None or a positive number", lambda v: v > 0
            )
        )
        self.weight_decay = non_negative(owner, "weight_decay", weight_decay)

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
        slot_trees = [state[n] for n in names]
        n_layers = len(params)
        new_params: Params = [{} for _ in range(n_layers)]
        new_trees: list[Params] = [[{} for _ in range(n_layers)] for _ in names]
        leaf = self._leaf
        scalars = self._scalars_by_dtype(xp, step, new_step)
        keep = self._keep_by_dtype(xp, step)
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
                if keep is not None:  # decoupled weight decay, before the step
                    p = p * keep(p.dtype)
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
        config["weight_decay"] = self.weight_decay
        config["clipnorm"] = self.clipnorm
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Optimizer:
        """Rebuild from :meth:`get_config` output (``class_name`` optional)."""
        config = dict(config)
        name = config.pop("class_name", cls.__name__)
        if not isinstance(name, str) or name.lower() != cls.__name__.lower():
            raise ValueError(f"{cls.__name__}.from_config: config is for {name!r}")
        valid = ("lr", "learning_rate", *cls._hyper, "weight_decay", "clipnorm")
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
        if self.weight_decay:
            args.append(f"weight_decay={self.weight_decay!r}")
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

    def _keep_by_dtype(self, xp: Any, step: Array) -> Callable | None:
        """``keep(dtype)``: the weight-decay factor ``1 - lr * weight_decay``
        of this update, once per dtype; None without weight decay."""
        if not self.weight_decay:
            return None
        cache: dict[Any, Any] = {}

        def keep(dtype: Any) -> Any:
            k = cache.get(dtype)
            if k is None:
                k = cache[dtype] = 1.0 - self._lr_at(xp, step, dtype) * self.weight_decay
            return k

        return keep

    def _leaf(self, xp: Any, s: tuple, p: Array, g: Array, *slots: Array) -> tuple:
        raise NotImplementedError


def _as_dtype(xp: Any, g: Array, dtype: Any) -> Array:
    """A gradient in its parameter's dtype (every parameter keeps its dtype)."""
    return g if g.dtype == dtype else xp.astype(g, dtype)
