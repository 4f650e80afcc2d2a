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

Backends with devices (jax, cupy, torch) also take a device: the
``TINYNET_DEVICE`` environment variable, ``set_backend(name, device=...)``
or ``use_backend(name, device=...)`` (torch: ``cpu``, ``cuda``, ``cuda:1``,
``mps``; default CUDA if present, else MPS, else the CPU).  Each device has
its own ops object; a torch tensor belongs to the one of its device.  numpy
and strict compute on the CPU only (``TINYNET_DEVICE`` does not apply).

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

BACKEND_NAMES = ("numpy", "jax", "cupy", "strict", "torch")
ENV_VAR = "TINYNET_BACKEND"
DEVICE_ENV_VAR = "TINYNET_DEVICE"
#: the backends that place arrays on a chosen device
WITH_DEVICES = ("jax", "cupy", "torch")


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here (package missing, no device)."""


Backend = Ops  # the public name of a backend's ops object


# ---------------------------------------------------------------- loading

_EXTRA = {"jax": "jax", "cupy": "cupy", "strict": "strict", "torch": "torch"}
# "name" for a backend on its default device, "name@device" for a chosen one
_loaded: dict[str, Backend] = {}
_by_device: dict[tuple[str, str], Backend] = {}  # one ops object per real device
_lock = threading.Lock()


def _check_name(name: Any, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKEND_NAMES:
        raise ValueError(
            f"unknown tinynet backend {name!r} {source}; "
            f"valid names are: {', '.join(BACKEND_NAMES)}"
        )
    return name.strip().lower()


def _check_device(name: str, device: Any, source: str) -> str | None:
    """``device`` as a stripped lower-case string, or None for the default;
    ``ValueError`` for a CPU-only backend asked for another device."""
    if device is None:
        return None
    if not isinstance(device, str):
        device = str(device)  # a torch.device, a JAX device
    spec = device.strip().lower()
    if not spec:
        raise ValueError(f"tinynet device {device!r} {source} is empty; e.g. 'cpu' or 'cuda:0'")
    if name not in WITH_DEVICES:
        if spec != "cpu":
            raise ValueError(
                f"tinynet backend {name!r} computes on the CPU only, received device={device!r} "
                f"{source}; use device='cpu' (or none), or a backend with devices: "
                f"{', '.join(WITH_DEVICES)}"
            )
        return None
    return spec


def load(name: str, device: Any = None) -> Backend:
    """The backend called ``name`` on ``device`` (default: the device chosen
    for it, see :func:`current_device`), importing its library on first use.

    Raises ``ValueError`` for an unknown name or device and
    :class:`BackendUnavailableError` when it cannot run here.
    """
    name = _check_name(name, "(passed in code)")
    if device is None:
        device = current_device(name)
    else:
        device = _check_device(name, device, "(passed in code)")
    key = name if device is None else f"{name}@{device}"
    backend = _loaded.get(key)
    if backend is not None:
        return backend
    with _lock:
        if key not in _loaded:
            module = importlib.import_module(f"{__name__}._{name}")
            fresh = module.load() if device is None else module.load(device)
            # "cuda" and "cuda:0" are one device: one ops object
            _loaded[key] = _by_device.setdefault((name, str(fresh.device)), fresh)
    return _loaded[key]


def missing_package(name: str, package: str) -> BackendUnavailableError:
    """The error for a backend whose package is not installed."""
    return BackendUnavailableError(
        f"tinynet backend {name!r} needs the {package!r} package, which is not "
        f"installed; install it with: pip install 'tinynet[{_EXTRA[name]}]'"
    )


def probe(name: str, device: Any = None) -> tuple[Backend | None, str]:
    """``(backend, "")`` if ``name`` can run here (on ``device``), else ``(None, why)``."""
    try:
        return load(name, device), ""
    except BackendUnavailableError as err:
        return None, str(err)


# ---------------------------------------------------------------- selection

_state = threading.local()


def _explicit() -> list[tuple[str, str | None]]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


_global_choice: str | None = None
_global_devices: dict[str, str] = {}  # set_backend(name, device=...) per backend


def current_device(name: str) -> str | None:
    """The device chosen for backend ``name``: a ``use_backend`` context,
    then ``set_backend``, then ``TINYNET_DEVICE`` (backends with devices
    only); None for the backend's default."""
    for chosen, device in reversed(_explicit()):
        if chosen == name and device is not None:
            return device
    if name in _global_devices:
        return _global_devices[name]
    env = os.environ.get(DEVICE_ENV_VAR)
    if env and env.strip() and name in WITH_DEVICES:
        return _check_device(name, env, f"in environment variable {DEVICE_ENV_VAR}")
    return None


def current_name() -> tuple[str, str]:
    """``(name, why)``: the backend new arrays go to and why it was chosen."""
    stack = _explicit()
    if stack:
        return stack[-1][0], "use_backend() context"
    if _global_choice is not None:
        return _global_choice, "set_backend()"
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"in environment variable {ENV_VAR}"), f"{ENV_VAR}={env}"
    return "numpy", "default"


def get_backend(name: str | None = None, device: Any = None) -> Backend:
    """The backend called ``name``, or the current one if ``name`` is None,
    on ``device`` (default: the device chosen for it)."""
    if name is None:
        name, _ = current_name()
    return load(name, device)


def set_backend(name: str, device: Any = None) -> Backend:
    """Make ``name`` the backend for new arrays from now on (any time), on
    ``device`` if given (e.g. ``set_backend("torch", device="cuda:1")``)."""
    global _global_choice
    backend = load(name, device)
    _global_choice = backend.name
    if device is not None:
        _global_devices[backend.name] = _check_device(backend.name, device, "(passed in code)")
    return backend


@contextlib.contextmanager
def use_backend(name: str, device: Any = None) -> Iterator[Backend]:
    """``with use_backend("jax") as bk:`` -- new arrays go to ``bk`` inside
    (on ``device`` if given)."""
    backend = load(name, device)
    stack = _explicit()
    stack.append((backend.name, _check_device(backend.name, device, "(passed in code)")))
    try:
        yield backend
    finally:
        stack.pop()


# ---------------------------------------------------------------- inference

# array type -> the Backend of its arrays, or a function of the array for a
# library whose arrays of one type live on several devices (torch)
_type_cache: dict[type, Any] = {}


def _torch_backend(a: Any) -> Backend:
    """The torch ops object of the tensor's device."""
    found = _by_device.get(("torch", str(a.device)))
    return found if found is not None else load("torch", a.device)


def _backend_for_type(tp: type, example: Any) -> Any:
    import array_api_compat as compat

    if compat.is_numpy_array(example):
        return load("numpy")
    if compat.is_jax_array(example):
        return load("jax")
    if compat.is_cupy_array(example):
        return load("cupy")
    if compat.is_torch_array(example):
        return _torch_backend
    module = type(example).__module__.split(".", 1)[0]
    if module == "array_api_strict":
        return load("strict")
    raise TypeError(
        f"expected an array of a tinynet backend ({', '.join(BACKEND_NAMES)}), "
        f"got {tp.__module__}.{tp.__qualname__}; convert it with "
        "tinynet.get_backend().asarray(data)"
    )


def backend_of(a: Any) -> Backend:
    """The backend an array belongs to (``TypeError`` for non-arrays).  JAX
    and CuPy arrays belong to the current choice of device of their backend,
    torch tensors to the ops object of their own device."""
    tp = type(a)
    backend = _type_cache.get(tp)
    if backend is None:
        backend = _backend_for_type(tp, a)
        _type_cache[tp] = backend
    return backend if isinstance(backend, Ops) else backend(a)


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
            if backend.name == found.name:  # one library, two devices
                raise TypeError(
                    f"arrays on two {found.name} devices were mixed: {found.device} and "
                    f"{backend.device}; move them to one device first with "
                    f"tinynet.get_backend({found.name!r}, device={str(found.device)!r}).asarray(a)"
                )
            raise TypeError(
                f"arrays from two backends were mixed: {found.name} and "
                f"{backend.name}; move them to one backend first with "
                f"tinynet.get_backend({found.name!r}).asarray(a)"
            )
    if found is None:
        return get_backend().xp
    return found.xp
