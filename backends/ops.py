"""The ops object: ``xp`` and the portable version of every extra op (docs/DESIGN.md)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import operator
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

Array = Any

THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
THREEFRY_PARITY = 0x1BD11BDA  # the key-schedule constant


class Ops:
    """One array library behind tinynet's interface; here the portable, eager version."""

    name = "base"
    #: arrays live in host memory, where reading a 0-d value is free (NumPy, strict)
    host_memory = False
    #: True where :meth:`jit` really compiles
    compiles = False

    def __init__(self, xp: Any, device: Any, version: str, description: str = "") -> None:
        self.xp = xp
        self.device = device
        self.version = version
        self.description = description

    def dtype(self, dtype: Any) -> Any:
        """The backend's dtype object for a name (``"float32"``) or a dtype."""
        key = dtype
        if not isinstance(dtype, str):
            try:
                key = np.dtype(dtype).name  # also np.float32 / jnp.float32, which are types
            except TypeError:
                key = str(dtype).rsplit(".", 1)[-1]  # torch.float32, array_api_strict.float32
        try:
            return getattr(self.xp, key)
        except AttributeError:
            raise TypeError(
                f"unknown dtype {dtype!r} for backend {self.name!r}; "
                "use a name such as 'float32', 'float64' or 'int64'"
            ) from None

    def default_float_dtype(self) -> Any:
        """The dtype of a float made without one (the array library's default)."""
        info = self.xp.__array_namespace_info__()
        return info.default_dtypes(device=self.device)["real floating"]

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        """Host data (lists, NumPy arrays) or an array of this backend -> array here."""
        dtype = None if dtype is None else self.dtype(dtype)
        if isinstance(data, np.generic):
            data = np.asarray(data)
        with self.scope():
            return self.xp.asarray(data, dtype=dtype, device=self.device)

    def device_of(self, a: Array) -> Any:
        """The device of an array, or None (a JAX tracer: the default device)."""
        try:
            return array_api_compat.device(a)
        except Exception:  # pragma: no cover - depends on library version
            return None

    def to_numpy(self, a: Array) -> np.ndarray:
        """Copy (or view, on NumPy) an array to host memory."""
        return np.asarray(a)

    def host_value(self, a: Array) -> int | float | None:
        """A 0-d array's Python value where reading it is free (host memory), else None."""
        if not self.host_memory:
            return None
        return a.item() if hasattr(a, "item") else (float(a) if "float" in str(a.dtype) else int(a))

    def is_traced(self, a: Array) -> bool:
        """True for an abstract value inside ``jit`` (its numbers are unknown)."""
        return False

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        """``fn`` compiled (``jax.jit`` keywords accepted); unchanged when eager."""
        return fn

    def scope(self) -> contextlib.AbstractContextManager:
        """A context for tinynet's own calls (JAX: float64 enabled inside only)."""
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Block until all queued work on this backend has finished."""

    def ignore_fp_errors(self) -> contextlib.AbstractContextManager:
        """A context silencing floating-point warnings (for the NaN guard)."""
        return contextlib.nullcontext()

    def fori_loop(self, n: Any, body: Callable[[Any], Any], carry: Any) -> Any:
        """``carry = body(carry)`` ``n`` times."""
        for _ in range(int(n)):
            carry = body(carry)
        return carry

    def run_block(
        self,
        step: Callable,
        n: int,
        carry: tuple,
        data: tuple,
        guard: Callable | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[tuple, Any]:
        """``carry = step(carry, data)`` ``n`` times (until ``stop()``) -> ``(carry, status)``;
        a step whose ``guard(new_carry)`` is non-zero is not taken: that status returns."""
        for _ in range(n):
            if stop is not None and stop():
                break
            new = step(carry, data)
            if guard is not None:
                status = int(self.to_numpy(guard(new)))
                if status:
                    return carry, status
            carry = new
        return carry, 0

    def rows(self, x: Array, start: Any, size: int) -> Array:
        """``x[start : start + size]``; ``start`` may be a 0-d integer array."""
        start = operator.index(start)
        return x[start : start + size, ...]

    def device_mesh(self, devices: int) -> Any:
        """A mesh over ``devices`` devices (JAX only), None for one device."""
        if devices == 1:
            return None
        raise ValueError(
            f"data parallelism needs the JAX backend, but this model is on the {self.name} "
            "backend; run with TINYNET_BACKEND=jax (or model.to_backend('jax')) and "
            "--backend jax on the command line, or leave devices unset"
        )

    def matmul_tn(self, a: Array, b: Array) -> Array:
        """``a.T @ b`` for 2-D arrays: a Dense layer's weight gradient."""
        return a.T @ b

    def relu_grad(self, dy: Array, x: Array) -> Array:
        """``dy * (x > 0)``: a 0/1-mask multiply, as NumPy's ``where`` is much slower."""
        return dy * self.xp.astype(x > 0, dy.dtype)

    def all_finite(self, arrays: list[Array]) -> Array:
        """0-d bool: every element of every array is finite."""
        xp = self.xp
        flags = [xp.all(xp.isfinite(a)) for a in arrays]
        return functools.reduce(operator.and_, flags) if flags else xp.asarray(True)

    def scatter_add(self, indices: Array, values: Array, rows: int) -> Array:
        """``(rows, d)``, row ``r`` the sum of ``values[i]`` with ``indices[i] == r`` (checked)."""
        xp = self.xp
        targets = xp.arange(rows, dtype=indices.dtype, device=self.device)
        onehot = xp.astype(targets[:, None] == indices[None, :], values.dtype)
        return onehot @ values

    # Windows of channels-last ``x``: one int per spatial axis; P elements, row-major.

    def pad(self, x: Array, widths: tuple, value: float = 0.0) -> Array:
        """``x`` with ``widths[i] = (before, after)`` entries of ``value`` on axis ``i + 1``."""
        xp = self.xp
        for axis, (before, after) in enumerate(widths, start=1):
            if not before and not after:
                continue
            device = array_api_compat.device(x)  # None for a JAX tracer: the default
            shapes = [(*x.shape[:axis], w, *x.shape[axis + 1 :]) for w in (before, after)]
            edges = [xp.full(shape, value, dtype=x.dtype, device=device) for shape in shapes]
            x = xp.concat([edges[0], x, edges[1]], axis=axis)
        return x

    def im2col(self, x: Array, window: tuple, strides: tuple, dilation: tuple) -> Array:
        """Every window of ``x``, copied: ``(batch, *out, P, channels)``."""
        return self.xp.stack(_window_views(x, window, strides, dilation), axis=-2)

    def col2im(
        self, cols: Array, shape: tuple, window: tuple, strides: tuple, dilation: tuple
    ) -> Array:
        """The adjoint of :meth:`im2col`: ``cols`` summed back into zeros of ``shape``."""
        out = cols.shape[1:-2]
        total = None
        for p, offset in enumerate(itertools.product(*map(range, window))):
            piece, widths = cols[..., p, :], []
            for axis, (o, d, s, n, size) in enumerate(
                zip(offset, dilation, strides, out, shape[1:-1], strict=True), start=1
            ):
                piece = self._spread(piece, axis, s)
                widths.append((o * d, size - o * d - (n - 1) * s - 1))
            piece = self.pad(piece, tuple(widths))
            total = piece if total is None else total + piece
        return total

    def conv(self, x: Array, W: Array, strides: tuple, dilation: tuple) -> tuple[Array, Array]:
        """Cross-correlation with ``W`` ``(*window, channels, filters)`` -> ``(y, saved)``."""
        xp = self.xp
        cols = self.im2col(x, tuple(W.shape[:-2]), strides, dilation)
        batch_out = cols.shape[:-2]
        cols = xp.reshape(cols, (math.prod(batch_out), math.prod(cols.shape[-2:])))
        y = cols @ xp.reshape(W, (cols.shape[1], W.shape[-1]))
        return xp.reshape(y, (*batch_out, W.shape[-1])), cols

    def conv_backward(
        self,
        dy: Array,
        saved: Array,
        x_shape: tuple,
        W: Array,
        strides: tuple,
        dilation: tuple,
        need_dx: bool = True,
    ) -> tuple[Array | None, Array]:
        """``(dx, dW)`` of :meth:`conv` (``dx`` None without ``need_dx``)."""
        xp = self.xp
        window, filters = tuple(W.shape[:-2]), W.shape[-1]
        dy2 = xp.reshape(dy, (saved.shape[0], filters))
        dW = xp.reshape(self.matmul_tn(saved, dy2), tuple(W.shape))
        if not need_dx:
            return None, dW
        dcols = dy2 @ xp.reshape(W, (saved.shape[1], filters)).T
        dcols = xp.reshape(dcols, (*dy.shape[:-1], math.prod(window), W.shape[-2]))
        return self.col2im(dcols, tuple(x_shape), window, strides, dilation), dW

    def max_pool(self, x: Array, window: tuple, strides: tuple) -> tuple[Array, Array]:
        """``(y, which)``: the window maxima, and (opaque) which element gets the
        gradient: the FIRST maximum (the first element if NaN); here its ``p``."""
        xp = self.xp
        views = _window_views(x, window, strides, (1,) * len(window))
        y = views[0]
        for view in views[1:]:
            y = xp.maximum(y, view)
        which = xp.zeros_like(y, dtype=xp.int32)
        for p in range(len(views) - 1, -1, -1):  # the lowest matching p is written last
            which = xp.where(views[p] == y, p, which)
        return y, which

    def max_pool_backward(
        self, dy: Array, which: Array, x_shape: tuple, window: tuple, strides: tuple
    ) -> Array:
        """``dx`` of :meth:`max_pool`: each window's ``dy`` to the element ``which`` names."""
        xp = self.xp
        P = math.prod(window)
        ones = (1,) * len(window)
        if window == strides:
            p = xp.reshape(xp.arange(P), _tile_shape((1, *ones, 1), window))
            hit = p == xp.reshape(which, _tile_shape(which.shape, ones))
            dtiles = xp.astype(hit, dy.dtype) * xp.reshape(dy, _tile_shape(dy.shape, ones))
            return self._untile(dtiles, x_shape, window)
        hit = xp.reshape(xp.arange(P), (P, 1)) == xp.expand_dims(which, axis=-2)
        dcols = xp.astype(hit, dy.dtype) * xp.expand_dims(dy, axis=-2)
        return self.col2im(dcols, tuple(x_shape), window, strides, ones)

    def sum_pool(self, x: Array, window: tuple, strides: tuple) -> Array:
        """The sum of every window (average pooling divides it)."""
        if window == strides:  # x cropped to whole windows, as tiles (see _tile_shape)
            out = tuple(n // k for n, k in zip(x.shape[1:-1], window, strict=True))
            x = x[(slice(None), *(slice(0, o * k) for o, k in zip(out, window, strict=True)), ...)]
            tiles = self.xp.reshape(x, _tile_shape((x.shape[0], *out, x.shape[-1]), window))
            return self.xp.sum(tiles, axis=tuple(range(2, 2 * len(window) + 1, 2)))
        return self.xp.sum(self.im2col(x, window, strides, (1,) * len(window)), axis=-2)

    def sum_pool_backward(self, dy: Array, x_shape: tuple, window: tuple, strides: tuple) -> Array:
        """``dx`` of :meth:`sum_pool`: ``dy`` added to every element of its window."""
        xp = self.xp
        ones = (1,) * len(window)
        if window == strides:
            tiled = xp.reshape(dy, _tile_shape(dy.shape, ones))
            full = xp.broadcast_to(tiled, _tile_shape(dy.shape, window))
            return self._untile(full, x_shape, window)
        cols = xp.expand_dims(dy, axis=-2)
        cols = xp.broadcast_to(cols, (*dy.shape[:-1], math.prod(window), dy.shape[-1]))
        return self.col2im(cols, tuple(x_shape), window, strides, ones)

    def _spread(self, x: Array, axis: int, stride: int) -> Array:
        """``stride - 1`` zeros after every entry along ``axis`` but the last."""
        if stride == 1:
            return x
        xp = self.xp
        n = x.shape[axis]
        spread = xp.stack([x] + [xp.zeros_like(x)] * (stride - 1), axis=axis + 1)
        spread = xp.reshape(spread, (*x.shape[:axis], n * stride, *x.shape[axis + 1 :]))
        return spread[(slice(None),) * axis + (slice(0, (n - 1) * stride + 1), ...)]

    def _untile(self, tiles: Array, x_shape: tuple, window: tuple) -> Array:
        """Tiles (see :meth:`sum_pool`) back to ``x_shape``, zeros where the crop cut."""
        out = tiles.shape[1:-1:2]
        spatial = tuple(o * k for o, k in zip(out, window, strict=True))
        dx = self.xp.reshape(tiles, (tiles.shape[0], *spatial, tiles.shape[-1]))
        return self.pad(dx, tuple((0, n - s) for n, s in zip(x_shape[1:-1], spatial, strict=True)))

    def threefry2x32(self, k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
        """Threefry-2x32-20 in wrapping ``uint32``: key and counter words -> output words."""
        ks = (k0, k1, k0 ^ k1 ^ THREEFRY_PARITY)
        x0 = x0 + ks[0]
        x1 = x1 + ks[1]
        for i in range(5):
            for r in THREEFRY_ROTATIONS[i % 2]:
                x0 = x0 + x1
                x1 = ((x1 << r) | (x1 >> (32 - r))) ^ x0
            x0 = x0 + ks[(i + 1) % 3]
            x1 = x1 + ks[(i + 2) % 3] + (i + 1)
        return x0, x1

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}({self.name!r}, version={self.version!r}, device={self.device!r})"


def _window_views(x: Array, window: tuple, strides: tuple, dilation: tuple) -> list:
    """For each window element ``p``, a strided view of it in every window."""
    sizes = zip(x.shape[1:-1], window, strides, dilation, strict=True)
    out = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in sizes]  # windows per axis
    views = []
    for offset in itertools.product(*map(range, window)):
        spans = zip(offset, out, strides, dilation, strict=True)
        index = (slice(o * d, o * d + (n - 1) * s + 1, s) for o, n, s, d in spans)
        views.append(x[(slice(None), *index, slice(None))])
    return views


def _tile_shape(shape: tuple, k: tuple) -> tuple:
    """``(batch, *out, channels)`` -> ``(batch, o1, k1, o2, k2, ..., channels)``."""
    spatial = (v for pair in zip(shape[1:-1], k, strict=True) for v in pair)
    return (shape[0], *spatial, shape[-1])
