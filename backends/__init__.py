"""The array shim: the only package in tinynet that imports numpy, jax or cupy.

A :class:`Backend` bundles one array library behind a small interface:

======================  =====================================================
``name``                ``"numpy"``, ``"jax"``, ``"cupy"`` or ``"strict"``
``xp``                  the array-API namespace used for all maths
``device``              where new arrays are made
``asarray(data, dtype)``host data -> array on this backend (dtype names ok)
``to_numpy(a)``         array -> host ``numpy.ndarray``
``jit(fn, **kw)``       ``jax.jit`` on JAX, the identity elsewhere
``synchronize()``       wait for queued device work (honest timing)
======================  =====================================================

Which backend makes *new* arrays (parameters, data) is chosen by the
``TINYNET_BACKEND`` environment variable (default ``numpy``), by
:func:`set_backend`, or inside ``with use_backend(name):``.  Computation never
consults that choice: it asks :func:`namespace` which library its input arrays
belong to, so mixing libraries is an error rather than a silent copy.

Backends are loaded lazily; importing this package imports numpy only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailableError",
    "backend_of",
    "donated",
    "fused",
    "get_backend",
    "load",
    "namespace",
    "probe",
    "set_backend",
    "use_backend",
]

BACKEND_NAMES = ("numpy", "jax", "cupy", "strict")
ENV_VAR = "TINYNET_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here (package missing, no device)."""


@dataclass(eq=False)
class Backend:
    """One array library behind tinynet's interface (see module docstring)."""

    name: str
    xp: Any
    device: Any
    version: str
    _to_numpy: Callable[[Any], np.ndarray]
    _jit: Callable[..., Callable] | None = None
    _sync: Callable[[], None] | None = None
    _is_traced: Callable[[Any], bool] | None = None
    _fori_loop: Callable[..., Any] | None = None
    _rows: Callable[[Any, Any, int], Any] | None = None
    _from_host: Callable[[np.ndarray], Any] | None = None
    # True where ``like`` is a concrete array on the backend's own device, so
    # ``_from_host`` (which takes a list too) can make arrays next to it (see full)
    _beside: Callable[[Any], bool] | None = None
    immutable: bool = False  # arrays cannot change after they are made (JAX)
    kernels: Any = None  # in-place optimizer kernels (NumPy), see donated()
    fused: Any = None  # per-op kernels by attribute name, see fused()
    description: str = ""
    _dtypes: dict = field(default_factory=dict, repr=False)

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
        try:
            return self._dtypes[key]
        except KeyError:
            pass
        try:
            result = getattr(self.xp, key)
        except AttributeError:
            raise TypeError(
                f"unknown dtype {dtype!r} for backend {self.name!r}; "
                "use a name such as 'float32', 'float64' or 'int64'"
            ) from None
        self._dtypes[key] = result
        return result

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """Host data (lists, NumPy arrays) or a same-backend array -> array here."""
        if dtype is not None:
            dtype = self.dtype(dtype)
        if self._from_host is not None and isinstance(data, (np.ndarray, np.generic, int, float)):
            # a plain copy to the device (JAX: device_put, 40 us, where
            # jnp.asarray(..., device=) takes 160 us: it is on fit's per-epoch path)
            return self._from_host(np.asarray(data, dtype=dtype))
        if self.name != "numpy" and isinstance(data, np.generic):
            data = np.asarray(data)
        return self.xp.asarray(data, dtype=dtype, device=self.device)

    def full(self, specs: list[tuple[tuple[int, ...], Any, float]], like: Any) -> list:
        """Fresh arrays ``xp.full(shape, value, dtype=dtype)`` for each
        ``(shape, dtype, value)`` of ``specs``, on the device of the array
        ``like`` (an optimizer's initial state, made next to the parameters).

        On JAX, where ``like`` is a concrete array on the backend's device,
        they are made by NumPy and moved in one transfer: eager
        ``jnp.zeros_like`` costs ~200 us per array (M's Adam state, 13 arrays:
        2.4 ms, 4% of a 60-step epoch), the transfer ~0.5 ms for all.
        """
        if self._beside is not None and self._beside(like):
            return self._from_host(
                [np.full(shape, value, dtype=np.dtype(dtype)) for shape, dtype, value in specs]
            )
        device = getattr(like, "device", None)
        return [
            self.xp.full(shape, value, dtype=dtype, device=device) for shape, dtype, value in specs
        ]

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy (or view, on NumPy) an array of this backend to host memory."""
        return self._to_numpy(a)

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        """Compile ``fn`` (``jax.jit`` keyword arguments accepted) or return it.

        ``donate_argnums`` means what it means to JAX: the caller hands those
        arguments over and will not use them again.  On JAX their buffers are
        reused for the outputs; on a backend with in-place ``kernels`` (NumPy)
        the optimizer may update them in place (see :func:`donated`).
        """
        if self._jit is not None:
            return self._jit(fn, **kwargs)
        donate = kwargs.get("donate_argnums")
        if donate is None or self.kernels is None:
            return fn
        return _donating(fn, (donate,) if isinstance(donate, int) else tuple(donate))

    def synchronize(self) -> None:
        """Block until all queued work on this backend has finished."""
        if self._sync is not None:
            self._sync()

    def fori_loop(self, n: int, body: Callable[[Any], Any], carry: Any) -> Any:
        """``carry = body(carry)`` ``n`` times; one compiled loop on JAX."""
        if self._fori_loop is not None:
            return self._fori_loop(n, body, carry)
        for _ in range(n):
            carry = body(carry)
        return carry

    def rows(self, x: Any, start: Any, size: int) -> Any:
        """``x[start : start + size]`` along axis 0, where ``start`` may be a
        0-d array computed inside a compiled function (a dynamic slice on
        JAX; elsewhere a ``take`` of those rows)."""
        if self._rows is not None:
            return self._rows(x, start, size)
        xp = self.xp
        return xp.take(x, start + xp.arange(size, dtype=xp.int64), axis=0)

    def ignore_fp_errors(self) -> Any:
        """Context silencing floating-point warnings (overflow, invalid, divide)
        on CPU-NumPy-based backends; for code that checks finiteness itself."""
        if self.name in ("numpy", "strict"):
            return np.errstate(all="ignore")
        return contextlib.nullcontext()

    def host_scalar(self, a: Any) -> int | float | None:
        """The Python value of a 0-d array when reading it is free (arrays in
        host memory: NumPy, strict); ``None`` on devices (a read would wait
        for the device) and inside ``jit``."""
        if self.name in ("numpy", "strict"):
            return (
                a.item()
                if hasattr(a, "item")
                else (float(a) if "float" in str(a.dtype) else int(a))
            )
        return None

    def is_traced(self, a: Any) -> bool:
        """True for an abstract value inside ``jit`` (its numbers are unknown)."""
        return self._is_traced is not None and self._is_traced(a)

    @property
    def compiles(self) -> bool:
        """True when :meth:`jit` really compiles (JAX)."""
        return self._jit is not None

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, version={self.version!r}, device={self.device!r})"


# ---------------------------------------------------------------- donation

_DONATED: contextvars.ContextVar[Any] = contextvars.ContextVar("tinynet_donated", default=())


def _donating(fn: Callable, argnums: tuple[int, ...]) -> Callable:
    set_, reset = _DONATED.set, _DONATED.reset

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        token = set_([args[i] for i in argnums if i < len(args)])
        try:
            return fn(*args)
        finally:
            reset(token)

    return call


def donated(tree: Any) -> bool:
    """True inside an eager ``backend.jit(fn, donate_argnums=...)`` call when
    ``tree`` (the very list/dict object) is one of the donated arguments, so
    its arrays may be overwritten in place."""
    return any(tree is d for d in _DONATED.get())


# ---------------------------------------------------------------- loading

_EXTRA = {"jax": "jax", "cupy": "cupy", "strict": "strict"}
_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


def _check_name(name: Any, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKEND_NAMES:
        raise ValueError(
            f"unknown tinynet backend {name!r} {source}; "
            f"valid names are: {', '.join(BACKEND_NAMES)}"
        )
    return name.strip().lower()


def load(name: str) -> Backend:
    """The backend called ``name``, importing its library on first use.

    Raises ``ValueError`` for an unknown name and
    :class:`BackendUnavailableError` when it cannot run here.
    """
    name = _check_name(name, "(passed in code)")
    backend = _loaded.get(name)
    if backend is not None:
        return backend
    with _lock:
        if name not in _loaded:
            module = importlib.import_module(f"backends._{name}")
            backend = _loaded[name] = module.load()
            _fused_by_xp[backend.xp] = backend.fused
    return _loaded[name]


_fused_by_xp: dict[Any, Any] = {}


def fused(xp: Any, name: str) -> Callable | None:
    """The backend's own kernel for operation ``name``, for the backend whose
    namespace is ``xp``, or None where it has none (then the caller's
    array-API expression runs).  Each computes what that expression computes:

    * ``relu_grad(dy, x)`` = ``dy * xp.astype(x > 0, dy.dtype)`` (NumPy: one
      pass of a C loop, same bits; ``backends/_numpy_kernels.py``);
    * ``one_hot(labels, k, dtype)`` =
      ``xp.astype(labels[:, None] == xp.arange(k), dtype)`` (NumPy: C loop);
    * ``argmax_hits(scores, labels)`` =
      ``xp.sum(xp.astype(xp.argmax(scores, axis=-1) == labels, scores.dtype))``
      (NumPy: C loop; the sparse accuracy's count);
    * ``threefry_words(k0, k1, n)`` = ``tinynet.random._words`` of key
      ``(k0, k1)`` (NumPy: C loop, same bits);
    * ``matmul_tn(a, b)`` = ``a.T @ b`` for 2-D ``a``, ``b`` (a Dense layer's
      weight gradient; JAX on CPU: see ``backends/_jax.py``).
    """
    ops = _fused_by_xp.get(xp)
    return None if ops is None else getattr(ops, name, None)


def missing_package(name: str, package: str) -> BackendUnavailableError:
    """The error for a backend whose package is not installed."""
    return BackendUnavailableError(
        f"tinynet backend {name!r} needs the {package!r} package, which is not "
        f"installed; install it with: pip install 'tinynet[{_EXTRA[name]}]'"
    )


def probe(name: str) -> tuple[Backend | None, str]:
    """``(backend, "")`` if ``name`` can run here, else ``(None, why)``."""
    try:
        return load(name), ""
    except BackendUnavailableError as err:
        return None, str(err)


# ---------------------------------------------------------------- selection

_state = threading.local()


def _explicit() -> list[str]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


_global_choice: str | None = None


def current_name() -> tuple[str, str]:
    """``(name, why)``: the backend new arrays go to and why it was chosen."""
    stack = _explicit()
    if stack:
        return stack[-1], "use_backend() context"
    if _global_choice is not None:
        return _global_choice, "set_backend()"
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"in environment variable {ENV_VAR}"), f"{ENV_VAR}={env}"
    return "numpy", "default"


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``, or the current one if ``name`` is None."""
    if name is None:
        name, _ = current_name()
    return load(name)


def set_backend(name: str) -> Backend:
    """Make ``name`` the backend for new arrays from now on (any time)."""
    global _global_choice
    backend = load(name)
    _global_choice = backend.name
    return backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """``with use_backend("jax") as bk:`` -- new arrays go to ``bk`` inside."""
    backend = load(name)
    stack = _explicit()
    stack.append(backend.name)
    try:
        yield backend
    finally:
        stack.pop()


# ---------------------------------------------------------------- inference

_type_cache: dict[type, Backend] = {}


def _backend_for_type(tp: type, example: Any) -> Backend:
    import array_api_compat as compat

    if compat.is_numpy_array(example):
        return load("numpy")
    if compat.is_jax_array(example):
        return load("jax")
    if compat.is_cupy_array(example):
        return load("cupy")
    module = type(example).__module__.split(".", 1)[0]
    if module == "array_api_strict":
        return load("strict")
    raise TypeError(
        f"expected an array of a tinynet backend ({', '.join(BACKEND_NAMES)}), "
        f"got {tp.__module__}.{tp.__qualname__}; convert it with "
        "tinynet.get_backend().asarray(data)"
    )


def backend_of(a: Any) -> Backend:
    """The backend an array belongs to (``TypeError`` for non-arrays)."""
    tp = type(a)
    backend = _type_cache.get(tp)
    if backend is None:
        backend = _backend_for_type(tp, a)
        _type_cache[tp] = backend
    return backend


def namespace(*arrays: Any) -> Any:
    """The ``xp`` shared by ``arrays``; ``TypeError`` if libraries are mixed.

    Python scalars and ``None`` are ignored.
    """
    found: Backend | None = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool)):
            continue
        backend = backend_of(a)
        if found is None:
            found = backend
        elif backend is not found:
            raise TypeError(
                f"arrays from two backends were mixed: {found.name} and "
                f"{backend.name}; move them to one backend first with "
                f"tinynet.get_backend({found.name!r}).asarray(a)"
            )
    if found is None:
        return get_backend().xp
    return found.xp
