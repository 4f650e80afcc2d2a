"""Pooling layers (Keras's, channels-last): the maximum or mean of windows, and
of all spatial positions (the global ones).  With ``padding="same"`` the padding
never wins a maximum and a mean counts the real elements only, as in Keras."""

from __future__ import annotations

import math
from typing import Any

from .. import arguments
from .base import _NO_GRADS, Array, Layer, Params, Shape
from .conv import _Windowed, check_rank, crop, spatial_axes, window_tuple


class _Pool(_Windowed):
    kind = "max"
    too_large = ("pool_size", "pool_size")

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid") -> None:
        name = type(self).__name__
        self.window = self.pool_size = window_tuple(name, "pool_size", pool_size, self.rank)
        self.strides = (
            self.pool_size if strides is None else window_tuple(name, "strides", strides, self.rank)
        )
        self.dilation_rate = (1,) * self.rank
        self.padding = self._padding(padding)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*self._spatial_output(input_shape), input_shape[-1])

    def forward(self, params, state, x, ops, training=False, key=None):
        check_rank(type(self).__name__, x.shape, self.rank)
        widths = self._widths(tuple(x.shape[1:-1]))
        window, strides = self.pool_size, self.strides
        if self.kind == "max":
            padded = ops.pad(x, widths, -math.inf)
            y, which = ops.max_pool(padded, window, strides)

            def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
                dx = ops.max_pool_backward(dy, which, tuple(padded.shape), window, strides)
                return crop(dx, widths), _NO_GRADS

            return y, state, backward

        padded = ops.pad(x, widths)
        if any(b or a for b, a in widths):  # windows over the edge hold fewer real elements
            ones = ops.xp.ones_like(x[:1, ..., :1])
            count = ops.sum_pool(ops.pad(ones, widths), window, strides)
        else:
            count = float(math.prod(window))
        y = ops.sum_pool(padded, window, strides) / count

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            dx = ops.sum_pool_backward(dy / count, tuple(padded.shape), window, strides)
            return crop(dx, widths), _NO_GRADS

        return y, state, backward

    def __repr__(self) -> str:
        size = self.pool_size if self.rank > 1 else self.pool_size[0]
        extra = "" if self.strides == self.pool_size else f", strides={self.strides!r}"
        extra += "" if self.padding == "valid" else f", padding={self.padding!r}"
        return f"{type(self).__name__}({size!r}{extra})"


class MaxPool2D(_Pool):
    """The maximum of each window of ``(batch, height, width, channels)`` inputs.

    Args:
        pool_size: an int or ``(ph, pw)``; default 2.
        strides: an int or ``(sh, sw)``; default ``pool_size``.
        padding: ``"valid"`` or ``"same"`` (``ceil(n / stride)`` outputs).
    """


class AvgPool2D(_Pool):
    """The mean of each window; :class:`MaxPool2D`'s arguments."""

    kind = "avg"


class MaxPool1D(_Pool):
    """:class:`MaxPool2D` over ``(batch, steps, channels)``."""

    rank = 1


class AvgPool1D(_Pool):
    """:class:`AvgPool2D` over ``(batch, steps, channels)``."""

    rank = 1
    kind = "avg"


class _GlobalPool(Layer):
    rank = 2
    kind = "avg"

    def __init__(self, keepdims: bool = False) -> None:
        self.keepdims = arguments.boolean(type(self).__name__, "keepdims", keepdims)

    def output_shape(self, input_shape: Shape) -> Shape:
        spatial_axes(input_shape, self.rank)
        return ((1,) * self.rank if self.keepdims else ()) + (input_shape[-1],)

    def forward(self, params, state, x, ops, training=False, key=None):
        check_rank(type(self).__name__, x.shape, self.rank)
        xp = ops.xp
        x_shape = tuple(x.shape)
        n, channels = math.prod(x_shape[1:-1]), x_shape[-1]
        kept = (x_shape[0], *(1,) * self.rank, channels)
        if self.kind == "avg":
            y = xp.mean(x, axis=tuple(range(1, self.rank + 1)), keepdims=self.keepdims)

            def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
                return xp.broadcast_to(xp.reshape(dy / n, kept), x_shape), _NO_GRADS

            return y, state, backward

        flat = xp.reshape(x, (x_shape[0], n, channels))
        which = xp.argmax(flat, axis=1)  # the first maximum in row-major order
        y = xp.max(flat, axis=1)
        if self.keepdims:
            y = xp.reshape(y, kept)

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            hit = xp.reshape(xp.arange(n), (n, 1)) == xp.expand_dims(which, axis=1)
            dy = xp.reshape(dy, (x_shape[0], 1, channels))
            return xp.reshape(xp.astype(hit, dy.dtype) * dy, x_shape), _NO_GRADS

        return y, state, backward

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": type(self).__name__}
        if self.keepdims:
            config["keepdims"] = True
        return config


class GlobalAvgPool2D(_GlobalPool):
    """The mean over height and width: ``(batch, h, w, channels)`` ->
    ``(batch, channels)``, or ``(batch, 1, 1, channels)`` with ``keepdims``."""


class GlobalMaxPool2D(_GlobalPool):
    """The maximum over height and width (:class:`GlobalAvgPool2D`'s shapes)."""

    kind = "max"


class GlobalAvgPool1D(_GlobalPool):
    """The mean over steps: ``(batch, steps, channels)`` -> ``(batch, channels)``."""

    rank = 1


class GlobalMaxPool1D(_GlobalPool):
    """The maximum over steps (:class:`GlobalAvgPool1D`'s shapes)."""

    rank = 1
    kind = "max"
