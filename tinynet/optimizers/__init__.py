"""Optimizers as pure functions over the parameter tree: ``state =
opt.init(params)``, then ``params, state = opt.update(grads, state, params)``
(common arguments: ``base.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Optimizer
from .rules import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "get"]

_OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)}


def _lookup(name: Any) -> type[Optimizer]:
    cls = _OPTIMIZERS.get(name.strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"unknown optimizer {name!r}; valid names are: {', '.join(sorted(_OPTIMIZERS))}"
        )
    return cls


def get(identifier: str | Mapping[str, Any] | Optimizer) -> Optimizer:
    """An optimizer from a name (``"adam"``, any case; default settings), a
    :meth:`Optimizer.get_config` dict, or an optimizer (returned as is)."""
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
