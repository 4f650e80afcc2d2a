"""Shared test helpers: the tolerance table and comparisons with references."""

from __future__ import annotations

import functools
import os

import numpy as np

from tinynet import backends

# One tolerance table per dtype, used by every comparison in the suite.
TOL = {
    "float32": {"rtol": 2e-5, "atol": 1e-6},
    "float64": {"rtol": 1e-10, "atol": 1e-12},
}
DTYPES = ("float32", "float64")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_devices_env(count: int) -> dict[str, str]:
    """The environment of a subprocess with ``count`` fake JAX CPU devices (JAX
    fixes its device count at start): no backend choice or XLA flags of ours,
    no proxies, this checkout importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (backends.ENV_VAR, "XLA_FLAGS") and not k.lower().endswith("_proxy")
    }
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def assert_close(actual, expected, dtype: str, what: str = "", scale: float = 1.0) -> None:
    """Compare a backend array (or number) with a float64 NumPy reference."""
    if not isinstance(actual, (np.ndarray, float, int)):
        actual = backends.backend_of(actual).to_numpy(actual)
    tol = TOL[dtype]
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=tol["rtol"] * scale,
        atol=tol["atol"] * scale,
        err_msg=what,
    )


def to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    return backends.backend_of(a).to_numpy(a)


# Central finite differences, in float64, are the reference for every backward.
FD_STEP = 1e-5
FD_RTOL = 1e-6


def central_fd(f, x: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    """d f / d x by central differences; ``f`` maps a float64 array to a float."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        x_plus, x_minus = x.copy(), x.copy()
        x_plus[i] += h
        x_minus[i] -= h
        grad[i] = (f(x_plus) - f(x_minus)) / (2 * h)
    return grad


def assert_fd_close(analytic, numeric: np.ndarray, what: str = "") -> None:
    """Max error relative to the largest finite-difference value < ``FD_RTOL``."""
    analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
    scale = max(float(np.max(np.abs(numeric))), 1e-12)
    rel = float(np.max(np.abs(analytic - numeric))) / scale
    assert rel < FD_RTOL, (
        f"{what}: relative error {rel:.3e} vs finite differences\n{analytic}\n{numeric}"
    )


def torch_autograd(fn):
    """Run a PyTorch-autograd oracle with gradients on: the torch backend's
    fixture runs each test inside tinynet's scope, which is ``torch.no_grad()``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.enable_grad():
            return fn(*args, **kwargs)

    return wrapper
