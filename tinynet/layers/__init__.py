"""Layers: :class:`Dense`, the activations, :class:`Dropout`, convolution,
pooling, reshaping, the normalisations (:class:`BatchNorm`,
:class:`LayerNorm`) and :class:`Embedding`."""

from __future__ import annotations

from typing import Any

from .activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    log_softmax,
    sigmoid,
    softmax,
    softplus,
)
from .base import Layer
from .conv import Conv1D, Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .normalization import BatchNorm, LayerNorm
from .pooling import (
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    MaxPool1D,
    MaxPool2D,
)
from .reshape import Flatten, Reshape

# every layer class, by family: from_config's table and the start of __all__
_CORE = (Dense, Dropout, BatchNorm, LayerNorm, Embedding, Conv1D, Conv2D, Flatten, Reshape)
_ACTIVATIONS = (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, GELU, Softplus, Softmax)
_POOLING = (MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D)
_GLOBAL_POOLING = (GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D)
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (*_CORE, *_ACTIVATIONS, *_POOLING, *_GLOBAL_POOLING)
}

# Keras's names for the same layers
BatchNormalization, LayerNormalization = BatchNorm, LayerNorm
MaxPooling1D, MaxPooling2D = MaxPool1D, MaxPool2D
AveragePooling1D, AveragePooling2D = AvgPool1D, AvgPool2D
GlobalAveragePooling1D, GlobalAveragePooling2D = GlobalAvgPool1D, GlobalAvgPool2D
GlobalMaxPooling1D, GlobalMaxPooling2D = GlobalMaxPool1D, GlobalMaxPool2D

__all__ = [
    *LAYER_TYPES,
    "BatchNormalization",
    "LayerNormalization",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Layer",
    "from_config",
    "activation",
    "sigmoid",
    "softmax",
    "log_softmax",
    "softplus",
]

# each activation by its class name in lower case, and Keras's "linear" and "leaky_relu"
ACTIVATIONS: dict[str, type[Layer]] = {
    cls.__name__.lower(): cls
    for cls in (Identity, Sigmoid, Tanh, ReLU, ELU, GELU, Softplus, Softmax)
}
ACTIVATIONS.update(linear=Identity, leaky_relu=LeakyReLU)


def from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from :meth:`Layer.get_config` output."""
    if not isinstance(config, dict) or config.get("type") not in LAYER_TYPES:
        raise ValueError(
            f"unknown layer config {config!r}; known layer types: {', '.join(LAYER_TYPES)}"
        )
    kwargs = {k: v for k, v in config.items() if k != "type"}
    return LAYER_TYPES[config["type"]](**kwargs)


def activation(name: str) -> Layer:
    """An activation layer by name (``"relu"``, ``"tanh"``, ...)."""
    try:
        return ACTIVATIONS[name.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown activation {name!r}; valid names are: {', '.join(ACTIVATIONS)}"
        ) from None
