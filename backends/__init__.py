"""Backends (``tinynet.backends``): one lazily loaded ops object per library and device."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
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
WITH_DEVICES = ("jax", "cupy", "torch")  # the backends that place arrays on a chosen device
# the package each backend imports, for the error when it is missing
PACKAGES = {"jax": "jax", "cupy": "cupy-cuda12x", "strict": "array-api-strict", "torch": "torch"}
MODULES = {"jax": "jax", "cupy": "cupy", "strict": "array_api_strict", "torch": "torch"}


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here (package missing, no device)."""


Backend = Ops  # the public name of a backend's ops object

_loaded: dict[str, Backend] = {}  # "name" on its default device, "name@device" on a chosen one
_by_device: dict[tuple[str, str], Backend] = {}  # one ops object per real device
_lock = threading.Lock()


def _check_name(name: Any, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKEND_NAMES:
        raise ValueError(
            f"unknown tinynet backend {name!r} {source}; "
            f"valid names are: {', '.join(BACKEND_NAMES)}"
        )
    return name.strip().lower()


def _check_device(name: str, device: Any, source: str = "(passed in code)") -> str | None:
    """``device`` stripped and lower-case; None for the default and CPU-only backends."""
    if device is None:
        return None
    device = str(device)  # also a torch.device, a JAX device
    spec = device.strip().lower()
    if not spec:
        raise ValueError(f"tinynet device {device!r} {source} is empty; e.g. 'cpu' or 'cuda:0'")
    if name not in WITH_DEVICES and spec != "cpu":
        raise ValueError(
            f"tinynet backend {name!r} computes on the CPU only, received device={device!r} "
            f"{source}; use device='cpu' (or none), or a backend with devices: "
            f"{', '.join(WITH_DEVICES)}"
        )
    return spec if name in WITH_DEVICES else None


def load(name: str, device: Any = None) -> Backend:
    """The backend ``name`` on ``device`` (None: :func:`current_device`), imported on first
    use; ``ValueError`` if unknown, :class:`BackendUnavailableError` if it cannot run."""
    name = _check_name(name, "(passed in code)")
    device = current_device(name) if device is None else _check_device(name, device)
    key = name if device is None else f"{name}@{device}"
    if key not in _loaded:
        with _lock:
            if key not in _loaded:
                module = importlib.import_module(f"{__name__}._{name}")
                try:
                    fresh = module.load() if device is None else module.load(device)
                except ImportError as err:
                    if importlib.util.find_spec(MODULES[name]) is None:
                        raise missing_package(name, PACKAGES[name]) from None
                    raise BackendUnavailableError(
                        f"tinynet backend {name!r}: {PACKAGES[name]} is installed but does not "
                        f"import ({err}); reinstall it: pip install --force-reinstall "
                        f"'tinynet[{name}]'"
                    ) from err
                # "cuda" and "cuda:0" are one device: one ops object
                _loaded[key] = _by_device.setdefault((name, str(fresh.device)), fresh)
    return _loaded[key]


def missing_package(name: str, package: str) -> BackendUnavailableError:
    """The error for a backend whose package is not installed."""
    return BackendUnavailableError(
        f"tinynet backend {name!r} needs the {package!r} package, which is not "
        f"installed; install it with: pip install 'tinynet[{name}]'"
    )


def probe(name: str, device: Any = None) -> tuple[Backend | None, str]:
    """``(backend, "")`` if ``name`` can run here (on ``device``), else ``(None, why)``."""
    try:
        return load(name, device), ""
    except BackendUnavailableError as err:
        return None, str(err)


class _Contexts(threading.local):
    def __init__(self) -> None:
        self.stack: list[tuple[str, str | None]] = []  # this thread's use_backend contexts


_contexts = _Contexts()
_global_choice: str | None = None
_global_devices: dict[str, str] = {}  # set_backend(name, device=...) per backend


def current_device(name: str) -> str | None:
    """The device for ``name`` from ``use_backend``, ``set_backend`` or ``TINYNET_DEVICE``."""
    for chosen, device in reversed(_contexts.stack):
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
    if _contexts.stack:
        return _contexts.stack[-1][0], "use_backend() context"
    if _global_choice is not None:
        return _global_choice, "set_backend()"
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"in environment variable {ENV_VAR}"), f"{ENV_VAR}={env}"
    return "numpy", "default"


def get_backend(name: str | None = None, device: Any = None) -> Backend:
    """The backend ``name`` (None: the current one) on ``device`` (None: its chosen one)."""
    return load(current_name()[0] if name is None else name, device)


def set_backend(name: str, device: Any = None) -> Backend:
    """Make ``name`` (on ``device`` if given) the backend for new arrays from now on."""
    global _global_choice
    backend = load(name, device)
    _global_choice = backend.name
    if device is not None:
        _global_devices[backend.name] = _check_device(backend.name, device)
    return backend


@contextlib.contextmanager
def use_backend(name: str, device: Any = None) -> Iterator[Backend]:
    """``with use_backend("jax") as bk:``: new arrays go to ``bk`` inside."""
    backend = load(name, device)
    stack = _contexts.stack
    stack.append((backend.name, _check_device(backend.name, device)))
    try:
        yield backend
    finally:
        stack.pop()


# array type -> the Backend of its arrays, or "torch" (its tensors live on several devices)
_type_cache: dict[type, Any] = {}


def _backend_for_type(tp: type, example: Any) -> Any:
    import array_api_compat as compat

    for name in ("numpy", "jax", "cupy", "torch"):
        if getattr(compat, f"is_{name}_array")(example):
            return name if name == "torch" else load(name)
    if tp.__module__.split(".", 1)[0] == "array_api_strict":
        return load("strict")
    raise TypeError(
        f"expected an array of a tinynet backend ({', '.join(BACKEND_NAMES)}), "
        f"got {tp.__module__}.{tp.__qualname__}; convert it with "
        "tinynet.get_backend().asarray(data)"
    )


def backend_of(a: Any) -> Backend:
    """The backend an array belongs to (a torch tensor: of its device); else ``TypeError``."""
    backend = _type_cache.get(type(a))
    if backend is None:
        backend = _type_cache[type(a)] = _backend_for_type(type(a), a)
    if isinstance(backend, Ops):
        return backend
    return _by_device.get(("torch", str(a.device))) or load("torch", a.device)


def namespace(*arrays: Any) -> Any:
    """The ``xp`` shared by ``arrays`` (scalars, None ignored); mixed ones: ``TypeError``."""
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
    return (get_backend() if found is None else found).xp
