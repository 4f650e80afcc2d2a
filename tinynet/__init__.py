"""tinynet: a small neural-network library with hand-written backprop on the
array API (NumPy, JAX, array-api-strict, PyTorch, CuPy); see docs/DESIGN.md.

    import tinynet as tn
    model = tn.Sequential([tn.Dense(2, 64), tn.ReLU(), tn.Dense(64, 3), tn.Softmax()])
    model.fit(x, y, loss="sparse_categorical_crossentropy", optimizer=tn.optimizers.Adam(lr=0.01))

Pick the backend with ``TINYNET_BACKEND=jax`` or :func:`set_backend`.
Importing tinynet imports NumPy only; the others load when first used.
"""

from __future__ import annotations

from typing import Any

from . import callbacks, datasets, initializers, layers, losses, optimizers, random, schedules
from .backends import Backend, BackendUnavailableError, get_backend, set_backend, use_backend
from .callbacks import EarlyStopping, History, ModelCheckpoint, TerminateOnNaN
from .checkpoint import CheckpointError
from .layers import *  # noqa: F403  (the layers, by their own and Keras's names)
from .losses import one_hot
from .model import Sequential, load
from .version import __version__ as __version__


def to_numpy(a: Any):
    """Any backend's array -> host ``numpy.ndarray``."""
    from . import backends

    return backends.backend_of(a).to_numpy(a)


__all__ = [
    "Backend",
    "BackendUnavailableError",
    "get_backend",
    "set_backend",
    "use_backend",
    "callbacks",
    "datasets",
    "initializers",
    "layers",
    "losses",
    "optimizers",
    "random",
    "schedules",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "CheckpointError",
    "load",
    "one_hot",
    "Sequential",
    "to_numpy",
]
__all__ += layers.__all__
