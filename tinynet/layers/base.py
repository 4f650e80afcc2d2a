"""The layer protocol: shape functions plus a forward with its backward.

A layer holds hyperparameters only.  Its parameters and its state are plain
dicts of arrays owned by the model (``{}`` for layers without), so that a
whole training step is a pure function of arrays (stax's ``init_fun`` /
``apply_fun``; thinc's ``(Y, backprop)``):

``output_shape(input_shape) -> output_shape``
    shapes without the batch axis, as tuples; raises ``ValueError`` saying
    what the layer expects and what it received, phrased to follow the
    layer's name ("expects 784 input features but ...": ``Sequential``
    prefixes "layer 2 (Dense)").
``init(key, input_shape, dtype) -> (output_shape, params, state)``
    make the parameters (``key``: a :mod:`tinynet.random` key) and the
    non-trained state (e.g. batch-norm statistics).
``forward(params, state, x, ops, training, key) -> (y, state, backward)``
    ``x`` has shape ``(batch, *input_shape)``; ``ops`` is the backend's ops
    object (``ops.xp`` the array namespace); ``backward(dy, need_dx=True)``
    returns ``(dx, grads)`` with ``grads`` shaped like ``params`` (``dx`` is
    ``None`` when ``need_dx`` is False: the first layer with parameters
    needs no input gradient).

The backward closes over exactly what it needs from the forward, right next
to the forward maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any
Params = dict[str, Array]
Shape = tuple[int, ...]
Backward = Callable[..., tuple[Array | None, Params]]

_NO_GRADS: Params = {}


def identity_backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
    return dy, _NO_GRADS


class Layer:
    """Base class: a parameter-free layer that keeps the shape of its input."""

    has_params = False  # True if init makes trained parameters
    needs_key = False  # True if the forward draws random numbers (Dropout)
    regularized = False  # True if penalty() adds to the loss

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape (no batch axis) for ``input_shape``."""
        return tuple(input_shape)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        return self.output_shape(input_shape), {}, {}

    def forward(
        self,
        params: Params,
        state: Params,
        x: Array,
        ops: Any,
        training: bool = False,
        key: Array = None,
    ) -> tuple[Array, Params, Backward]:
        raise NotImplementedError

    def penalty(self, params: Params, xp: Any) -> tuple[Array, Params]:
        """``(value, grads)`` of a regularisation term added to the loss."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-able hyperparameters; ``layers.from_config`` rebuilds the layer."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"
