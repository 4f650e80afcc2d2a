"""Embedding: integer indices -> rows of a trained table ``W``."""

from __future__ import annotations

import math
from typing import Any

from .. import arguments, initializers, validation
from .base import Array, Layer, Params, Shape, positive_int


class Embedding(Layer):
    """One row of ``W`` per integer index (Keras's ``Embedding``):
    ``(batch, ...)`` indices -> ``(batch, ..., output_dim)`` in the model's dtype.

    Args:
        input_dim: the number of rows (the vocabulary size); indices must lie
            in ``[0, input_dim)``.
        output_dim: the width of each row.
        init: initialiser name or function for ``W`` ``(input_dim,
            output_dim)`` (Keras's default ``"uniform"``: U[-0.05, 0.05)).

    It takes the model's raw integer input, so it comes first; an index out of
    range is refused instead of clamped (docs/DESIGN.md, section 2).
    """

    has_params = True
    integer_input = True  # validation keeps the model's input integer

    def __init__(self, input_dim: int, output_dim: int, init: str = "uniform") -> None:
        self.input_dim = arguments.integer(
            "Embedding", "input_dim", input_dim, "a positive integer below 2**31",
            lambda v: 0 < v < 2**31,  # fit and predict hand the indices over as int32
        )  # fmt: skip
        self.output_dim = positive_int("Embedding", "output_dim", output_dim)
        self.init_name, self._init = initializers.resolve(init)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        W = self._init(key, (self.input_dim, self.output_dim), dtype)
        return self.output_shape(input_shape), {"W": W}, {}

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        if not xp.isdtype(x.dtype, "integral"):
            raise ValueError(
                f"Embedding: expects integer indices, received an input of dtype {x.dtype}; "
                "make Embedding the model's first layer (fit and predict then keep its "
                "input integer) or pass x.astype('int32')"
            )
        validation.check_indices(x, self.input_dim, "Embedding")
        flat = xp.reshape(x, (-1,))
        if flat.dtype not in (xp.int32, xp.int64):  # torch gathers with int32/int64 only
            flat = xp.astype(flat, xp.int64)
        y = xp.reshape(xp.take(params["W"], flat, axis=0), (*x.shape, self.output_dim))

        def backward(dy: Array, need_dx: bool = True) -> tuple[None, Params]:
            rows = xp.reshape(dy, (math.prod(x.shape), self.output_dim))
            return None, {"W": ops.scatter_add(flat, rows, self.input_dim)}

        return y, state, backward

    def get_config(self) -> dict[str, Any]:
        dims = {"input_dim": self.input_dim, "output_dim": self.output_dim}
        return {"type": "Embedding", **dims, "init": self.init_name}
