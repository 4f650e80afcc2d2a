"""The layer protocol: ``output_shape``, ``init``, ``forward`` returning its
``backward`` (docs/DESIGN.md, section 2).  A layer holds hyperparameters only;
its parameters and state are dicts of arrays owned by the model."""

from __future__ import annotations

import inspect
from typing import Any

from .. import arguments

Array = Any
Params = dict[str, Array]
Shape = tuple[int, ...]

_NO_GRADS: Params = {}


def identity_backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
    return dy, _NO_GRADS


def positive_int(owner: str, name: str, value: Any) -> int:
    return arguments.integer(owner, name, value, "a positive integer", lambda v: v > 0)


def features(input_shape: Shape) -> int:
    """The width of the last (feature) axis; refuses a shape without one."""
    if not input_shape:
        raise ValueError(
            "expects inputs with a feature axis, received input shape () "
            "(one number per sample); reshape the data to (n, 1)"
        )
    return input_shape[-1]


class Layer:
    """Base class: a parameter-free layer that keeps the shape of its input."""

    has_params = False  # True if init makes trained parameters
    needs_key = False  # True if the forward draws random numbers (Dropout)
    regularized = False  # True if penalty() adds to the loss

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        return self.output_shape(input_shape), {}, {}

    def forward(self, params, state, x, ops, training=False, key=None) -> tuple[Array, Params, Any]:
        raise NotImplementedError

    def penalty(self, params: Params, xp: Any) -> tuple[Array, Params]:
        """``(value, grads)`` of a regularisation term added to the loss."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-able hyperparameters (by default the constructor's arguments kept as
        attributes of the same names); ``layers.from_config`` rebuilds the layer."""
        config: dict[str, Any] = {"type": type(self).__name__}
        for name in inspect.signature(type(self)).parameters:
            if name not in vars(self):  # a subclass's argument kept under another name
                continue
            value = vars(self)[name]
            config[name] = list(value) if isinstance(value, tuple) else value
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"
