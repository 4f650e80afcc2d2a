"""Convolution layers :class:`Conv1D` and :class:`Conv2D` (Keras's, channels-last)
and the window helpers they share with the pooling layers (maths: ``ops.conv``)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

from .. import arguments, initializers
from .base import Array, Layer, Params, Shape, positive_int

LAYOUTS = {1: "(batch, steps, channels)", 2: "(batch, height, width, channels)"}


def window_tuple(owner: str, name: str, value: Any, rank: int) -> tuple[int, ...]:
    """A kernel size, stride or dilation: a positive int (the same on every
    axis) or ``rank`` of them."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,) * rank
    if (
        not isinstance(value, (tuple, list))
        or len(value) != rank
        or any(isinstance(v, bool) or not isinstance(v, Integral) or v <= 0 for v in value)
    ):
        many = "" if rank == 1 else f" or a tuple of {rank} positive integers"
        raise ValueError(
            f"{owner}: {name} must be a positive integer{many}, received {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def check_rank(owner: str, x_shape: Shape, rank: int) -> None:
    """Refuse a batch (a forward on raw arrays) whose rank is not ``rank + 2``."""
    if len(x_shape) != rank + 2:
        raise ValueError(f"{owner} expects inputs {LAYOUTS[rank]}, received shape {tuple(x_shape)}")


def spatial_axes(input_shape: Shape, rank: int) -> Shape:
    """The spatial part of a sample shape (no batch axis); refuses the wrong rank."""
    input_shape = tuple(input_shape)
    if len(input_shape) != rank + 1:
        fix = ""
        if len(input_shape) == rank:
            dims = ", ".join(map(str, input_shape))
            fix = f"; add a channels axis, e.g. reshape the data to (n, {dims}, 1)"
        raise ValueError(
            f"expects inputs {LAYOUTS[rank]}, received shape {(None, *input_shape)}{fix}"
        )
    return input_shape[:-1]


def crop(dx: Array, widths: tuple[tuple[int, int], ...]) -> Array:
    """``dx`` without the padding ``widths`` added to the spatial axes."""
    if not any(b or a for b, a in widths):
        return dx
    spans = (slice(b, dx.shape[i] - a) for i, (b, a) in enumerate(widths, start=1))
    return dx[(slice(None), *spans, ...)]


class _Windowed(Layer):
    """What convolution and pooling share: a ``window`` slid with ``strides`` and
    ``dilation_rate`` over inputs padded as ``padding`` says (the subclass sets all four)."""

    rank = 2
    paddings: tuple[str, ...] = ("valid", "same")
    too_large = ("kernel", "kernel_size or dilation_rate,")  # the window's name; the fix

    def _padding(self, padding: Any) -> str:
        value = padding.lower() if isinstance(padding, str) else padding
        return arguments.choice(type(self).__name__, "padding", value, self.paddings)

    def _widths(self, spatial: Shape) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` per spatial axis as Keras pads: none for ``"valid"``;
        for ``"same"`` what ``ceil(n / stride)`` outputs need, the smaller half
        before; for ``"causal"`` ``(k - 1) * dilation`` before."""
        widths = []
        for n, k, s, d in zip(spatial, self.window, self.strides, self.dilation_rate, strict=True):
            span = (k - 1) * d + 1
            if self.padding == "same":
                total = max((-(-n // s) - 1) * s + span - n, 0)
                widths.append((total // 2, total - total // 2))
            elif self.padding == "causal":
                widths.append((span - 1, 0))
            else:
                widths.append((0, 0))
        return tuple(widths)

    def _spatial_output(self, input_shape: Shape) -> Shape:
        """The output's spatial shape; refuses a window larger than its (padded) input."""
        spatial = spatial_axes(input_shape, self.rank)
        padded = tuple(n + b + a for n, (b, a) in zip(spatial, self._widths(spatial), strict=True))
        spans = tuple((k - 1) * d + 1 for k, d in zip(self.window, self.dilation_rate, strict=True))
        if any(n < span for n, span in zip(padded, spans, strict=True)):
            name, fix = self.too_large
            dilated = ""
            if spans != self.window:
                dilated = f" (dilated by {self.dilation_rate}: {spans})"
            raise ValueError(
                f"has a {name} {self.window}{dilated} larger than its input "
                f"{spatial}{' (padded)' if padded != spatial else ''}; use a smaller "
                f"{fix} or padding='same'"
            )
        return tuple(
            (n - span) // s + 1 for n, span, s in zip(padded, spans, self.strides, strict=True)
        )


class _Conv(_Windowed):
    has_params = True

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        dilation_rate: Any = 1,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
    ) -> None:
        name, rank = type(self).__name__, self.rank
        self.filters = positive_int(name, "filters", filters)
        self.window = self.kernel_size = window_tuple(name, "kernel_size", kernel_size, rank)
        self.strides = window_tuple(name, "strides", strides, rank)
        self.dilation_rate = window_tuple(name, "dilation_rate", dilation_rate, rank)
        self.padding = self._padding(padding)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{name}: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras), "
                f"received strides={strides!r} and dilation_rate={dilation_rate!r}; "
                "use one of them"
            )
        self.use_bias = arguments.boolean(name, "use_bias", use_bias)
        self.kernel_initializer, self._init = initializers.resolve(kernel_initializer)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*self._spatial_output(input_shape), self.filters)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        out = self.output_shape(input_shape)
        params = {"W": self._init(key, (*self.kernel_size, input_shape[-1], self.filters), dtype)}
        if self.use_bias:
            params["b"] = initializers.zeros(key, (self.filters,), dtype)
        return out, params, {}

    def forward(self, params, state, x, ops, training=False, key=None):
        name, W = type(self).__name__, params["W"]
        check_rank(name, x.shape, self.rank)
        if x.shape[-1] != W.shape[-2]:
            raise ValueError(
                f"{name} expects inputs with {W.shape[-2]} channels (its kernel's), received "
                f"shape {tuple(x.shape)}"
            )
        widths = self._widths(tuple(x.shape[1:-1]))
        padded = ops.pad(x, widths)
        padded_shape = tuple(padded.shape)
        strides, dilation = self.strides, self.dilation_rate
        y, saved = ops.conv(padded, W, strides, dilation)
        if self.use_bias:
            y = y + params["b"]
        xp = ops.xp
        batch_axes = tuple(range(self.rank + 1))

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array | None, Params]:
            dx, dW = ops.conv_backward(dy, saved, padded_shape, W, strides, dilation, need_dx)
            grads = {"W": dW}
            if self.use_bias:
                grads["b"] = xp.sum(dy, axis=batch_axes)
            return (crop(dx, widths) if need_dx else None), grads

        return y, state, backward

    def __repr__(self) -> str:
        k = self.kernel_size if self.rank > 1 else self.kernel_size[0]
        ones = (1,) * self.rank
        defaults = {"strides": ones, "padding": "valid", "dilation_rate": ones, "use_bias": True}
        extra = [f"{n}={getattr(self, n)!r}" for n, d in defaults.items() if getattr(self, n) != d]
        return f"{type(self).__name__}({', '.join([str(self.filters), repr(k), *extra])})"


class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in Keras): ``(batch, height,
    width, channels)`` -> ``(batch, out_h, out_w, filters)``.

    Args:
        filters: the number of output channels.
        kernel_size, strides (default 1), dilation_rate (default 1): an int or
            ``(h, w)``; as in Keras, strides and dilation > 1 do not combine.
        padding: ``"valid"`` or ``"same"`` (``ceil(n / stride)`` outputs).
        use_bias: add a bias per filter.
        kernel_initializer: initialiser name or function for ``W``.

    Parameters: ``W`` ``(kh, kw, channels, filters)``, ``b`` ``(filters,)``
    (zeros; absent with ``use_bias=False``).
    """


class Conv1D(_Conv):
    """1-D convolution over ``(batch, steps, channels)``: :class:`Conv2D`'s
    arguments with one spatial axis, plus ``padding="causal"`` (step t sees
    inputs up to t only).  Parameters: ``W`` ``(k, channels, filters)``, ``b``."""

    rank = 1
    paddings = ("valid", "same", "causal")
