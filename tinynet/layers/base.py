"""The layer protocol.

A layer holds hyperparameters only.  Its parameters are a plain dict of
arrays owned by the model (``{}`` for parameter-free layers), so that a whole
training step is a pure function of arrays:

``init(key, in_features, dtype) -> params``
    make the parameters (``key``: a :mod:`tinynet.random` key).
``forward(params, x, xp, training, key) -> (y, backward)``
    ``x`` has shape ``(batch, in_features)``; ``backward(dy, need_dx=True)``
    returns ``(dx, grads)`` with ``grads`` shaped like ``params`` (``dx`` is
    ``None`` when ``need_dx`` is False: the first layer needs no input grad).

The backward closes over exactly what it needs from the forward (thinc's
``(Y, backprop)`` pattern), right next to the forward maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any
Params = dict[str, Array]
Backward = Callable[..., tuple[Array | None, Params]]

_NO_GRADS: Params = {}


class Layer:
    """Base class: a parameter-free layer that passes its width through."""

    has_params = False
    needs_key = False  # True if the forward draws random numbers (Dropout)

    def output_features(self, in_features: int | None, index: int) -> int | None:
        """Width of the output given the input width (``None``: unknown yet)."""
        return in_features

    def init(self, key: Array, in_features: int | None, dtype: Any) -> Params:
        return {}

    def forward(
        self, params: Params, x: Array, xp: Any, training: bool = False, key: Array = None
    ) -> tuple[Array, Backward]:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-able hyperparameters; ``layers.from_config`` rebuilds the layer."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"
