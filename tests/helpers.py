"""Shared test helpers: the tolerance table and comparisons with references."""

from __future__ import annotations

import numpy as np

import backends

# One tolerance table per dtype, used by every comparison in the suite.
TOL = {
    "float32": {"rtol": 2e-5, "atol": 1e-6},
    "float64": {"rtol": 1e-10, "atol": 1e-12},
}
DTYPES = ("float32", "float64")


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
