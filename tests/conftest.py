"""The cross-backend test matrix.

Every numeric test takes the ``backend`` fixture and so runs once per backend
(numpy, jax, strict, cupy, torch).  A backend that cannot run here is SKIPPED
with the reason (package missing, no CUDA device).  ``TINYNET_BACKEND=jax
pytest`` restricts the matrix to that one backend (``TINYNET_DEVICE`` picks
the device of jax, cupy and torch).
"""

from __future__ import annotations

import os

import pytest
from helpers import DTYPES

from tinynet import backends


def _selected_backends() -> list[str]:
    chosen = os.environ.get(backends.ENV_VAR)
    if chosen:
        return [chosen.strip().lower()]
    return list(backends.BACKEND_NAMES)


@pytest.fixture(params=_selected_backends())
def backend(request):
    """A loaded backend (its ops object), current for the duration of the
    test, which runs inside its scope: the tests call low-level functions
    (a layer's forward, a loss) on float64 arrays, which on JAX need float64
    enabled, as ``Sequential``'s entry points do for themselves
    (tests/test_side_effects.py checks those without any scope)."""
    loaded, why = backends.probe(request.param)
    if loaded is None:
        pytest.skip(why)
    with backends.use_backend(loaded.name), loaded.scope():
        yield loaded


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


@pytest.fixture
def jax_backend():
    """The JAX backend as an oracle (``jax.grad``/``jax.vjp``), float64
    enabled for the test; skipped if unavailable or if ``TINYNET_BACKEND``
    restricts the run to another backend."""
    chosen = os.environ.get(backends.ENV_VAR)
    if chosen and chosen.strip().lower() != "jax":
        pytest.skip(f"{backends.ENV_VAR}={chosen} restricts the run to another backend")
    loaded, why = backends.probe("jax")
    if loaded is None:
        pytest.skip(why)
    with backends.use_backend("jax"), loaded.scope():
        yield loaded
