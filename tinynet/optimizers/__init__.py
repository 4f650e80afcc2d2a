"""Optimizers as pure functions over the model's parameter tree::

    state = opt.init(params)
    params, state = opt.update(grads, state, params)

Each is its update rule for one array (``rules.py``), lifted to the tree in
one place (:meth:`Optimizer.update`, ``base.py``, which documents the common
arguments: learning rate or schedule, clipping, decoupled weight decay).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Optimizer
from .rules import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "get"]

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
