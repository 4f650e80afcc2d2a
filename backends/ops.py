"""The ops object: one per backend (thinc's ``Ops`` / ``NumpyOps`` shape).

:class:`Ops` carries the array namespace ``xp`` and the portable array-API
version of every operation that layers, losses, optimizers and the training
loop need beyond the standard.  A backend subclass overrides an operation
only where a benchmark shows it pays, and ``tests/test_backends.py`` checks
every override against the portable version.  Code outside ``backends/``
never asks which backend it runs on: it calls an op.

=====================  ======================================================
``name``, ``xp``       backend name, array-API namespace
``device``             where new arrays are made
``asarray``            host data -> array here (dtype names accepted)
``default_float_dtype`` the dtype of a float made without one
``to_numpy``           array -> host ``numpy.ndarray``
``device_of``          the device an array lives on
``jit``                compile a pure function (identity on eager backends)
``scope()``            context for tinynet's own calls (JAX: float64 enabled)
``fori_loop``          ``carry = body(carry)`` n times (one program on JAX)
``run_block``          a block of training steps, optionally NaN-guarded
``rows``               ``x[start:start + size]`` with a computed ``start``
``device_mesh``        data parallelism over N devices (JAX only)
``matmul_tn``          ``a.T @ b`` (a Dense layer's weight gradient)
``relu_grad``          ``dy * (x > 0)``
``all_finite``         one flag: every element of some arrays is finite
``scatter_add``        rows of values summed into a zero matrix (Embedding's backward)
``pad``                constant padding of the spatial axes
``im2col``, ``col2im`` the windows of channels-last data, and their adjoint
``conv``               convolution (cross-correlation) and ``conv_backward``
``max_pool``           window maxima (first maximum wins) and ``max_pool_backward``
``sum_pool``           window sums and ``sum_pool_backward``
``threefry2x32``       the Threefry-2x32-20 block on uint32 words
=====================  ======================================================
"""

from __future__ import annotations

import contextlib
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
    """One array library behind tinynet's interface (see the module docstring).

    The base class is the portable implementation: every method is written
    on the array API standard (what ``array-api-strict`` accepts) and runs
    eagerly.
    """

    name = "base"
    #: True for backends whose arrays live in host memory, where reading a
    #: 0-d array's value costs nothing (NumPy, strict): see :meth:`host_value`.
    host_memory = False

    def __init__(self, xp: Any, device: Any, version: str, description: str = "") -> None:
        self.xp = xp
        self.device = device
        self.version = version
        self.description = description
        self._dtypes: dict[str, Any] = {}

    # ------------------------------------------------------------ arrays

    def dtype(self, dtype: Any) -> Any:
        """The backend's dtype object for a name (``"float32"``) or dtype."""
        if isinstance(dtype, str):
            key = dtype
        else:
            key = getattr(dtype, "name", None)
            if not isinstance(key, str):  # np.float32 / jnp.float32 are types
                try:
                    key = np.dtype(dtype).name
                except TypeError:
                    key = str(dtype)
            key = key.rsplit(".", 1)[-1]
        found = self._dtypes.get(key)
        if found is None:
            try:
                found = self._dtypes[key] = getattr(self.xp, key)
            except AttributeError:
                raise TypeError(
                    f"unknown dtype {dtype!r} for backend {self.name!r}; "
                    "use a name such as 'float32', 'float64' or 'int64'"
                ) from None
        return found

    def default_float_dtype(self) -> Any:
        """The dtype of a float made without one (the array library's default)."""
        info = self.xp.__array_namespace_info__()
        return info.default_dtypes(device=self.device)["real floating"]

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        """Host data (lists, NumPy arrays) or an array of this backend -> array here."""
        if dtype is not None:
            dtype = self.dtype(dtype)
        if isinstance(data, np.generic):
            data = np.asarray(data)
        with self.scope():
            return self.xp.asarray(data, dtype=dtype, device=self.device)

    def device_of(self, a: Array) -> Any:
        """The device of an array of this backend, or None where it has none
        (a JAX tracer: new arrays then go to the default device)."""
        import array_api_compat

        try:
            return array_api_compat.device(a)
        except Exception:  # pragma: no cover - depends on library version
            return None

    def to_numpy(self, a: Array) -> np.ndarray:
        """Copy (or view, on NumPy) an array of this backend to host memory."""
        return np.asarray(a)

    def host_value(self, a: Array) -> int | float | None:
        """The Python value of a 0-d array where reading it is free (host
        memory backends); ``None`` on devices, where it would wait for the
        queue, and inside ``jit``."""
        if not self.host_memory:
            return None
        return a.item() if hasattr(a, "item") else (float(a) if "float" in str(a.dtype) else int(a))

    def is_traced(self, a: Array) -> bool:
        """True for an abstract value inside ``jit`` (its numbers are unknown)."""
        return False

    # ------------------------------------------------------------ running

    @property
    def compiles(self) -> bool:
        """True where :meth:`jit` really compiles."""
        return False

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        """``fn`` compiled into one program (``jax.jit`` keyword arguments
        accepted); eager backends return it unchanged."""
        return fn

    def scope(self) -> contextlib.AbstractContextManager:
        """A context around tinynet's own computations.  Nothing outside it
        changes (on JAX it enables float64 for tinynet's calls only)."""
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Block until all queued work on this backend has finished."""

    def ignore_fp_errors(self) -> contextlib.AbstractContextManager:
        """A context silencing floating-point warnings, for code that checks
        finiteness itself (the NaN guard)."""
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
        """``carry = step(carry, data)`` ``n`` times; returns ``(carry, status)``.

        A block of training steps with no host work in between.  Here: a
        Python loop that also ends early when ``stop()`` turns true (a
        Ctrl-C between two steps).  With ``guard`` (``guard(new_carry) ->
        0-d int``, 0 when the step went well), the first step whose status
        is non-zero is not taken: the carry from before it comes back with
        that status.  ``status`` is 0 when every step went well.
        """
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
        """``x[start : start + size]`` along axis 0, where ``start`` may be a
        0-d integer array (a step counter)."""
        start = operator.index(start)
        return x[start : start + size, ...]

    def device_mesh(self, devices: int) -> Any:
        """Data parallelism over ``devices`` devices: an object that places
        and splits arrays over a device mesh (``backends/_jax_parallel.py``),
        or None for one device.  Only JAX has meshes: elsewhere ``devices > 1``
        is a ``ValueError`` saying so."""
        if devices == 1:
            return None
        raise ValueError(
            f"data parallelism needs the JAX backend, but this model is on the {self.name} "
            "backend; run with TINYNET_BACKEND=jax (or model.to_backend('jax')) and "
            "--backend jax on the command line, or leave devices unset"
        )

    # ------------------------------------------------------------ maths

    def matmul_tn(self, a: Array, b: Array) -> Array:
        """``a.T @ b`` for 2-D ``a`` and ``b``: a Dense layer's weight gradient."""
        return a.T @ b

    def relu_grad(self, dy: Array, x: Array) -> Array:
        """ReLU's backward, ``dy * (x > 0)`` (the gradient at 0 taken as 0).
        A multiply by a 0/1 mask, not ``where``: NumPy's ``where`` is much
        slower, and this runs on every hidden layer of every step."""
        return dy * self.xp.astype(x > 0, dy.dtype)

    def all_finite(self, arrays: list[Array]) -> Array:
        """0-d bool: every element of every array is finite."""
        xp = self.xp
        ok = None
        for a in arrays:
            finite = xp.all(xp.isfinite(a))
            ok = finite if ok is None else ok & finite
        return xp.asarray(True) if ok is None else ok

    # ------------------------------------------------------------ scatter-add

    def scatter_add(self, indices: Array, values: Array, rows: int) -> Array:
        """A ``(rows, d)`` array whose row ``r`` is the sum of the rows
        ``values[i]`` with ``indices[i] == r`` (zeros where no index points):
        an Embedding's weight gradient.  ``indices``: 1-D integers in
        ``[0, rows)`` (checked by the caller), ``values``: ``(len(indices), d)``.
        Repeated indices accumulate.

        Portable version: the array API has no scatter, so the sum is a
        product with a one-hot matrix, ``onehot(indices).T @ values``.  It
        costs ``rows * len(indices)`` memory and time; backends with a
        scatter override it.
        """
        xp = self.xp
        targets = xp.arange(rows, dtype=indices.dtype, device=self.device)
        onehot = xp.astype(targets[:, None] == indices[None, :], values.dtype)
        return onehot @ values

    # ------------------------------------------------------------ convolution and pooling
    #
    # Channels-last windows: ``x`` is ``(batch, *spatial, channels)`` with any
    # padding already added (the layers pad); ``window``, ``strides`` and
    # ``dilation`` are tuples with one int per spatial axis.  The P elements
    # of a window are numbered in row-major order over the window (2-D:
    # ``p = i * kw + j``).  The array API has no convolution, strided windows,
    # scatter-add or pad: windows are strided slices stacked together
    # (im2col), and their adjoint places slices back with zeros built by
    # ``concat``/``stack``.

    def pad(self, x: Array, widths: tuple, value: float = 0.0) -> Array:
        """``x`` with ``widths[i] = (before, after)`` entries of ``value`` added
        on axis ``i + 1`` (the spatial axes of channels-last data)."""
        for axis, (before, after) in enumerate(widths, start=1):
            x = self._pad_axis(x, axis, before, after, value)
        return x

    def im2col(self, x: Array, window: tuple, strides: tuple, dilation: tuple) -> Array:
        """The windows of ``x``: ``(batch, *out, P, channels)``, one copy of
        every window (``out`` from :func:`window_output`)."""
        out = window_output(x.shape[1:-1], window, strides, dilation)
        pieces = [
            x[_window_slice(offset, out, strides, dilation)]
            for offset in itertools.product(*map(range, window))
        ]
        return self.xp.stack(pieces, axis=-2)

    def col2im(
        self, cols: Array, shape: tuple, window: tuple, strides: tuple, dilation: tuple
    ) -> Array:
        """The adjoint of :meth:`im2col`: every window element of ``cols``
        ``(batch, *out, P, channels)`` added back where it came from in an
        array of ``shape`` (zeros where no window reaches)."""
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
        """Cross-correlation of ``x`` with ``W`` ``(*window, channels, filters)``:
        ``(y, saved)`` with ``y`` ``(batch, *out, filters)``; ``saved`` is what
        :meth:`conv_backward` needs (here the im2col matrix)."""
        xp = self.xp
        cols = self.im2col(x, tuple(W.shape[:-2]), strides, dilation)
        rows = math.prod(cols.shape[:-2])
        cols = xp.reshape(cols, (rows, math.prod(cols.shape[-2:])))
        y = cols @ xp.reshape(W, (cols.shape[1], W.shape[-1]))
        out = window_output(x.shape[1:-1], tuple(W.shape[:-2]), strides, dilation)
        return xp.reshape(y, (x.shape[0], *out, W.shape[-1])), cols

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
        """``(dx, dW)`` of :meth:`conv` for the output gradient ``dy``
        (``dx`` is None without ``need_dx``)."""
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
        """``(y, which)``: the maximum of every window, and ``which``, what
        :meth:`max_pool_backward` needs to send each window's whole gradient
        to its FIRST maximum in row-major window order (to the window's first
        element when the maximum is NaN).  ``which`` is opaque to callers: a
        backend may keep its own form (torch: its kernels' indices into the
        input).

        Here ``which`` is the index ``p`` of that element in the window
        (integers, shaped like ``y``), from the elementwise maxima of the P
        strided slices (one per window element): no window is gathered."""
        xp = self.xp
        ones = (1,) * len(window)
        out = window_output(x.shape[1:-1], window, strides, ones)
        offsets = itertools.product(*map(range, window))
        views = [x[_window_slice(offset, out, strides, ones)] for offset in offsets]
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
        """``dx`` of :meth:`max_pool`: each window's ``dy`` goes to the element
        ``which`` designates."""
        xp = self.xp
        P = math.prod(window)
        if window == strides:
            p = xp.reshape(xp.arange(P), _tile_shape(None, window, False))
            hit = p == xp.reshape(which, _tile_shape(which.shape, window, True))
            dtiles = xp.astype(hit, dy.dtype) * xp.reshape(dy, _tile_shape(dy.shape, window, True))
            return self._untile(dtiles, x_shape, window)
        hit = xp.reshape(xp.arange(P), (P, 1)) == xp.expand_dims(which, axis=-2)
        dcols = xp.astype(hit, dy.dtype) * xp.expand_dims(dy, axis=-2)
        return self.col2im(dcols, tuple(x_shape), window, strides, (1,) * len(window))

    def sum_pool(self, x: Array, window: tuple, strides: tuple) -> Array:
        """The sum of every window (average pooling divides it)."""
        if window == strides:
            return self.xp.sum(self._tiles(x, window), axis=_tile_axes(window))
        return self.xp.sum(self.im2col(x, window, strides, (1,) * len(window)), axis=-2)

    def sum_pool_backward(self, dy: Array, x_shape: tuple, window: tuple, strides: tuple) -> Array:
        """``dx`` of :meth:`sum_pool`: ``dy`` added to every element of its window."""
        xp = self.xp
        if window == strides:
            tiled = _tile_shape(dy.shape, window, True)
            full = _tile_shape(dy.shape, window, False)
            return self._untile(xp.broadcast_to(xp.reshape(dy, tiled), full), x_shape, window)
        cols = xp.expand_dims(dy, axis=-2)
        cols = xp.broadcast_to(cols, (*dy.shape[:-1], math.prod(window), dy.shape[-1]))
        return self.col2im(cols, tuple(x_shape), window, strides, (1,) * len(window))

    def _pad_axis(self, x: Array, axis: int, before: int, after: int, value: float) -> Array:
        if not before and not after:
            return x
        xp = self.xp
        device = array_api_compat.device(x)  # None for a JAX tracer: the default
        parts = []
        for width in (before, after):
            shape = (*x.shape[:axis], width, *x.shape[axis + 1 :])
            parts.append(xp.full(shape, value, dtype=x.dtype, device=device) if width else None)
        return xp.concat([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)

    def _spread(self, x: Array, axis: int, stride: int) -> Array:
        """``stride - 1`` zeros after every entry along ``axis`` but the last."""
        if stride == 1:
            return x
        xp = self.xp
        n = x.shape[axis]
        spread = xp.stack([x] + [xp.zeros_like(x)] * (stride - 1), axis=axis + 1)
        spread = xp.reshape(spread, (*x.shape[:axis], n * stride, *x.shape[axis + 1 :]))
        return spread[(slice(None),) * axis + (slice(0, (n - 1) * stride + 1), ...)]

    def _tiles(self, x: Array, window: tuple) -> Array:
        """``x`` cropped to whole windows and reshaped to ``(batch, o1, k1, o2,
        k2, ..., channels)`` (windows that tile the input)."""
        out = tuple(n // k for n, k in zip(x.shape[1:-1], window, strict=True))
        x = x[(slice(None), *(slice(0, o * k) for o, k in zip(out, window, strict=True)), ...)]
        return self.xp.reshape(x, (x.shape[0], *_interleave(out, window), x.shape[-1]))

    def _untile(self, tiles: Array, x_shape: tuple, window: tuple) -> Array:
        """The inverse of :meth:`_tiles`, zeros where the crop cut."""
        xp = self.xp
        out = tiles.shape[1:-1:2]
        spatial = tuple(o * k for o, k in zip(out, window, strict=True))
        dx = xp.reshape(tiles, (tiles.shape[0], *spatial, tiles.shape[-1]))
        for axis, (o, k, n) in enumerate(zip(out, window, x_shape[1:-1], strict=True), start=1):
            dx = self._pad_axis(dx, axis, 0, n - o * k, 0.0)
        return dx

    def threefry2x32(self, k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
        """Threefry-2x32-20 on broadcastable 1-d ``uint32`` arrays: key words
        ``(k0, k1)``, counter words ``(x0, x1)`` -> the two output words
        (``tinynet.random`` builds every draw on it).  Wrapping ``uint32``
        arithmetic: add, xor, shifts."""
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


def window_output(spatial: tuple, window: tuple, strides: tuple, dilation: tuple) -> tuple:
    """The number of windows along each spatial axis (no padding added):
    ``(n - (k - 1) * d - 1) // s + 1``."""
    return tuple(
        (n - (k - 1) * d - 1) // s + 1
        for n, k, s, d in zip(spatial, window, strides, dilation, strict=True)
    )


def _window_slice(offset: tuple, out: tuple, strides: tuple, dilation: tuple) -> tuple:
    """The index of window element ``offset`` in every window: strided slices."""
    spans = zip(offset, out, strides, dilation, strict=True)
    return (
        slice(None),
        *(slice(o * d, o * d + (n - 1) * s + 1, s) for o, n, s, d in spans),
        slice(None),
    )


def _interleave(out: tuple, window: tuple) -> tuple:
    return tuple(v for pair in zip(out, window, strict=True) for v in pair)


def _tile_axes(window: tuple) -> tuple:
    return tuple(2 + 2 * i for i in range(len(window)))


def _tile_shape(shape: tuple | None, window: tuple, ones_for_window: bool) -> tuple:
    """A pooled ``shape`` ``(batch, *out, channels)`` spread over the tile
    layout: window axes of size 1 (``ones_for_window``) or k.  Without
    ``shape``, size-1 axes everywhere but the window axes (an index grid)."""
    if shape is None:
        return (1, *_interleave((1,) * len(window), window), 1)
    k = (1,) * len(window) if ones_for_window else window
    return (shape[0], *_interleave(tuple(shape[1:-1]), k), shape[-1])
