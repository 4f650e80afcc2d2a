"""tinynet: a small neural-network library with hand-written backprop on the
array API, running unchanged on NumPy, JAX and CuPy.

    import tinynet as tn
    model = tn.Sequential([tn.Dense(2, 64), tn.ReLU(), tn.Dense(64, 3), tn.Softmax()])
    model.fit(x, y, loss="sparse_categorical_crossentropy", optimizer=tn.optimizers.Adam(lr=0.01))

Pick the backend with ``TINYNET_BACKEND=jax`` or :func:`set_backend`.
Importing tinynet imports NumPy only; JAX or CuPy load when first used.
"""

from __future__ import annotations

from typing import Any

from . import callbacks, datasets, initializers, layers, losses, optimizers, random, schedules
from .backends import Backend, BackendUnavailableError, get_backend, set_backend, use_backend
from .callbacks import EarlyStopping, History, ModelCheckpoint, TerminateOnNaN
from .checkpoint import CheckpointError
from .layers import (
    ELU,
    GELU,
    AveragePooling1D,
    AveragePooling2D,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    Identity,
    LayerNorm,
    LayerNormalization,
    LeakyReLU,
    MaxPool1D,
    MaxPool2D,
    MaxPooling1D,
    MaxPooling2D,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
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
    "Dense",
    "Dropout",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Softplus",
    "Softmax",
    "BatchNorm",
    "BatchNormalization",
    "LayerNorm",
    "LayerNormalization",
    "Embedding",
    "AveragePooling1D",
    "AveragePooling2D",
    "AvgPool1D",
    "AvgPool2D",
    "Conv1D",
    "Conv2D",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPooling1D",
    "MaxPooling2D",
    "Reshape",
    "one_hot",
    "Sequential",
    "to_numpy",
]
