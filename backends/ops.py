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
``threefry2x32``       the Threefry-2x32-20 block on uint32 words
=====================  ======================================================
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable
from typing import Any

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
