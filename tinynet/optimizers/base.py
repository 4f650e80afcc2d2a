"""The optimizer base: per-array update rules lifted to the parameter tree
(docs/DESIGN.md, section 4).  ``update`` is pure, keeps every parameter's dtype
and runs inside ``jax.jit``; ``state`` is a pytree of arrays: a 0-d int32
``"step"`` and one tree per slot.

Common arguments: ``lr`` (alias ``learning_rate``) is a positive float, a
:mod:`tinynet.schedules` schedule or a callable ``lr(step) -> 0-d array`` of
the step counter before the update (0 first).  ``weight_decay`` is decoupled,
applied first as Keras 3 does: ``p = p * (1 - lr * weight_decay)``.  ``clipnorm``
clips the gradients by their *global* norm first, ``g *= clipnorm / max(norm,
clipnorm)`` (Keras' ``global_clipnorm``).  Hyperparameters are fixed at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, ClassVar

from .. import arguments, backends, schedules

Array = Any
Params = list[dict[str, Array]]
State = dict[str, Any]
LearningRate = float | schedules.Schedule | Callable[[Array], Array]


def non_negative(owner: str, name: str, value: Any) -> float:
    return arguments.real(owner, name, value, "a non-negative number", lambda v: v >= 0)


def _as_dtype(xp: Any, a: Array, dtype: Any) -> Array:
    return a if a.dtype == dtype else xp.astype(a, dtype)


def _per_dtype(compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``compute`` memoised by dtype (``torch.compile`` warns on ``functools.cache``)."""
    cache: dict[Any, Any] = {}
    return lambda dtype: cache[dtype] if dtype in cache else cache.setdefault(dtype, compute(dtype))


class Optimizer:
    """Base class.  Subclasses define ``_hyper`` (``{name: check}`` of the other
    hyperparameters: ``__init__``'s arguments in order, stored checked, in the
    config), ``_slots`` (the per-parameter state trees, from ``_slot_init``),
    ``_rate(xp, step, new_step, dtype)`` (the step size; default: the lr) and
    ``_leaf(xp, -rate, p, g, *slots) -> (new_p, *new_slots)``, the rule for
    ONE array.  Public attributes are frozen once ``Optimizer.__init__`` ends."""

    _hyper: ClassVar[dict[str, Callable[[str, str, Any], Any]]] = {}
    _default_lr: ClassVar[float] = 0.001
    _slots: tuple[str, ...] = ()
    _slot_init = 0.0

    def __init__(
        self, lr: LearningRate, learning_rate: Any, clipnorm: Any, weight_decay: Any, *hyper: Any
    ) -> None:
        owner = type(self).__name__
        if learning_rate is not None:
            if not (isinstance(lr, float) and lr == self._default_lr):
                raise ValueError(
                    f"{owner}: pass the learning rate once, as lr= or as learning_rate=, "
                    f"received lr={lr!r} and learning_rate={learning_rate!r}"
                )
            lr = learning_rate
        if not callable(lr):  # else a schedule or lr(step)
            lr = arguments.real(owner, "lr", lr, "a positive number or a schedule", lambda v: v > 0)
        self.lr: LearningRate = lr
        self._lr_const: float | None = None if callable(lr) else lr
        self.clipnorm = clipnorm
        if clipnorm is not None:
            self.clipnorm = arguments.real(
                owner, "clipnorm", clipnorm, "None or a positive number", lambda v: v > 0
            )
        self.weight_decay = non_negative(owner, "weight_decay", weight_decay)
        for (name, check), value in zip(self._hyper.items(), hyper, strict=True):
            setattr(self, name, check(owner, name, value))
        self._frozen = True  # subclasses may still set private (derived) attributes

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen", False) and not name.startswith("_"):
            raise AttributeError(
                f"{type(self).__name__}: hyperparameters are fixed at construction "
                f"(cannot set {name!r}); build a new optimizer, e.g. "
                f"optimizers.get({{**opt.get_config(), {name!r}: value}})"
            )
        object.__setattr__(self, name, value)

    def init(self, params: Params) -> State:
        """The state before the first update: step 0 and initial slots."""
        leaves = [p for layer in params for p in layer.values()]
        xp = backends.namespace(*leaves)
        device = getattr(leaves[0], "device", None) if leaves else None
        state: State = {"step": xp.zeros((), dtype=xp.int32, device=device)}
        for name in self._slots:
            state[name] = [
                {k: xp.full_like(p, self._slot_init) for k, p in layer.items()} for layer in params
            ]
        return state

    def update(self, grads: Params, state: State, params: Params) -> tuple[Params, State]:
        """One step: ``(new_params, new_state)``; the inputs are left untouched."""
        if len(grads) != len(params):
            raise ValueError(
                f"{type(self).__name__}.update: grads has {len(grads)} layer(s) but params "
                f"has {len(params)}; they must have the same structure"
            )
        step = state["step"]
        xp = backends.namespace(step)
        new_step = xp.asarray(step + 1)
        if self.clipnorm is not None and any(grads):  # grads * min(1, clipnorm / global_norm)
            flat = [xp.reshape(g, (-1,)) for layer in grads for g in layer.values()]
            squares = [xp.vecdot(f, f) for f in flat]
            # Exactly 1 when norm <= clipnorm, no division by zero, NaN norms propagate.
            norm = xp.sqrt(sum(squares[1:], squares[0]))
            scale = self.clipnorm / xp.maximum(norm, self.clipnorm)
            grads = [
                {k: g * _as_dtype(xp, scale, g.dtype) for k, g in layer.items()} for layer in grads
            ]
        neg_rate = _per_dtype(lambda dtype: -self._rate(xp, step, new_step, dtype))
        keep = _per_dtype(lambda dtype: 1.0 - self._lr_at(xp, step, dtype) * self.weight_decay)
        slots = [state[name] for name in self._slots]
        new: list[Params] = [[{} for _ in params] for _ in range(1 + len(slots))]  # params, slots
        for i, layer in enumerate(params):
            for key, p in layer.items():
                g = _as_dtype(xp, grads[i][key], p.dtype)
                if self.weight_decay:  # decoupled weight decay, before the step
                    p = p * keep(p.dtype)
                out = self._leaf(xp, neg_rate(p.dtype), p, g, *[s[i][key] for s in slots])
                if p.ndim == 0:  # NumPy turns 0-d results into scalars
                    out = tuple(xp.asarray(o) for o in out)
                for tree, value in zip(new, out, strict=True):
                    tree[i][key] = value
        return new[0], {"step": new_step, **dict(zip(self._slots, new[1:], strict=True))}

    def _settings(self) -> dict[str, Any]:
        keys = ("lr", *self._hyper, "weight_decay", "clipnorm")
        return {key: getattr(self, key) for key in keys}

    def get_config(self) -> dict[str, Any]:
        """A JSON-able dict: ``class_name``, ``lr`` and every hyperparameter."""
        lr = self.lr
        if isinstance(lr, schedules.Schedule):
            lr = lr.get_config()
        elif not isinstance(lr, float):
            raise TypeError(
                f"{type(self).__name__}.get_config: the learning rate {lr!r} is a plain "
                "callable and cannot be serialised; use a tinynet.schedules schedule"
            )
        return {"class_name": type(self).__name__, **self._settings(), "lr": lr}

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
        # weight_decay and clipnorm only when set
        shown = [(k, v) for k, v in self._settings().items() if v or k in ("lr", *self._hyper)]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown)})"

    def _lr_at(self, xp: Any, step: Array, dtype: Any) -> Any:
        """The learning rate for this update: a Python float or 0-d ``dtype`` array."""
        if self._lr_const is not None:
            return self._lr_const
        if isinstance(self.lr, schedules.Schedule):
            return self.lr(step, dtype)
        value = self.lr(step)
        if isinstance(value, Real):
            return float(value)
        return _as_dtype(xp, xp.asarray(value), dtype)

    def _rate(self, xp: Any, step: Array, new_step: Array, dtype: Any) -> Any:
        return self._lr_at(xp, step, dtype)
