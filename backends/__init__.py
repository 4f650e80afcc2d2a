"""Backends: one ops object per array library (``tinynet.backends``).

Each backend is an :class:`Ops` object (see ``backends/ops.py``): the
array namespace ``xp``, where new arrays go, and the operations tinynet
needs beyond the array API standard, portable in the base class and
overridden per backend only where a benchmark shows it pays.

Which backend makes *new* arrays (parameters, data) is chosen by the
``TINYNET_BACKEND`` environment variable (default ``numpy``), by
:func:`set_backend`, or inside ``with use_backend(name):``.  Computation never
consults that choice: it asks :func:`backend_of` which library its input
arrays belong to, so mixing libraries is an error rather than a silent copy.

Backends are loaded lazily; importing this package imports numpy only.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from .ops import Ops

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailableError",
    "backend_of",
    "Ops",
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


Backend = Ops  # the public name of a backend's ops object


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
            module = importlib.import_module(f"{__name__}._{name}")
            _loaded[name] = module.load()
    return _loaded[name]


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
