"""Layers that only change the shape of each sample: :class:`Reshape`, :class:`Flatten`."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

from .base import _NO_GRADS, Layer, Shape


class Reshape(Layer):
    """Each sample reshaped, in row-major order as Keras, to ``target_shape``:
    positive ints (no batch axis) with at most one -1, inferred from the
    others, e.g. ``(28, 28, 1)`` or ``(-1, 4)``."""

    def __init__(self, target_shape: Any) -> None:
        if isinstance(target_shape, Integral) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        if (
            not isinstance(target_shape, (tuple, list))
            or not target_shape
            or any(
                isinstance(d, bool) or not isinstance(d, Integral) or (d <= 0 and d != -1)
                for d in target_shape
            )
            or sum(d == -1 for d in target_shape) > 1
        ):
            raise ValueError(
                "Reshape: target_shape must be a tuple of positive integers with at most one "
                f"-1 (no batch axis), e.g. (28, 28, 1) or (-1, 4), received "
                f"target_shape={target_shape!r}"
            )
        self.target_shape = tuple(int(d) for d in target_shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        size, known = math.prod(input_shape), math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if -1 not in self.target_shape and size == known:
            return self.target_shape
        need = "a multiple of " if -1 in self.target_shape else ""
        raise ValueError(
            f"cannot reshape inputs of shape {(None, *input_shape)} ({size} values per sample) "
            f"to target_shape {self.target_shape}, which needs {need}{known} values; pick a "
            "target_shape with the same number of values"
        )

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        try:
            shape = self.output_shape(tuple(x.shape[1:]))
        except ValueError as err:
            raise ValueError(f"Reshape {err}") from None
        x_shape = tuple(x.shape)
        y = xp.reshape(x, (x.shape[0], *shape))
        return y, state, lambda dy, need_dx=True: (xp.reshape(dy, x_shape), _NO_GRADS)


class Flatten(Reshape):
    """``(batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)`` in row-major order
    (Keras's channels-last ``Flatten``); ``(batch,)`` becomes ``(batch, 1)``."""

    def __init__(self) -> None:
        super().__init__(-1)
