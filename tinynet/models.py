"""The models ``tinynet train --model`` builds (``mlp``, ``cnn``), and fitting a
dataset's arrays to a model's input shape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import layers as tl
from .model import Sequential

MODELS = ("mlp", "cnn")
DENSE_DROPOUT = 0.25  # the cnn's dropout rate after its Dense(128)
BN_MOMENTUM = 0.9  # the cnn's BatchNorm momentum: see build_cnn
SMALLEST_IMAGE = 4  # the cnn's two 2x2 poolings need at least 4x4 (with padding="same")


def _dense_init(activation: str) -> str:
    return "he_uniform" if activation == "relu" else "glorot_uniform"


def cnn_padding(height: int, width: int) -> str:
    """``"valid"`` where the cnn's two 3x3 convolutions and 2x2 poolings
    leave at least one pixel (images of 10x10 or more), else ``"same"``
    (8x8 digits: 8 -> 8 -> 4 -> 4 -> 2 instead of 8 -> 6 -> 3 -> 1 -> 0)."""
    side = min(height, width)
    return "valid" if ((side - 2) // 2 - 2) // 2 >= 1 else "same"


def build_cnn(
    input_shape: Sequence[int],
    classes: int,
    activation: str = "relu",
    dtype: str = "float32",
    seed: int = 0,
    backend: str | None = None,
) -> Sequential:
    """For images of ``input_shape = (height, width, channels)``: two blocks
    of Conv2D (32 then 64 filters, 3x3, padding from :func:`cnn_padding`),
    BatchNorm, activation and MaxPool2D(2), then Flatten, Dense(128),
    activation, Dropout(0.25), Dense(classes), Softmax.  Raises
    ``ValueError`` for samples that are not images of at least 4x4 pixels.
    No conv bias (the BatchNorm subtracts the batch mean); BatchNorm momentum
    0.9, PyTorch's: with Keras's 0.99 the moving statistics lag the weights.
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"the cnn takes images of shape (height, width, channels), received samples of "
            f"shape {shape}; use --model mlp for feature vectors"
        )
    height, width, _ = shape
    if min(height, width) < SMALLEST_IMAGE:
        raise ValueError(
            f"the cnn needs images of at least {SMALLEST_IMAGE}x{SMALLEST_IMAGE} pixels for "
            f"its two 2x2 poolings, received {height}x{width}; use --model mlp"
        )
    padding = cnn_padding(height, width)
    stack = []
    for filters in (32, 64):
        stack += [
            tl.Conv2D(filters, 3, padding=padding, use_bias=False),
            tl.BatchNorm(BN_MOMENTUM),
            tl.activation(activation),
            tl.MaxPool2D(2),
        ]
    stack += [
        tl.Flatten(),
        tl.Dense(128, init=_dense_init(activation)),
        tl.activation(activation),
        tl.Dropout(DENSE_DROPOUT),
        tl.Dense(classes),
        tl.Softmax(),
    ]
    return Sequential(stack, input_shape=shape, dtype=dtype, seed=seed, backend=backend)


def build(
    kind: str,
    sample_shape: Sequence[int],
    classes: int,
    *,
    hidden: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    dtype: str = "float32",
    seed: int = 0,
    backend: str | None = None,
) -> Sequential:
    """The ``--model kind`` (``mlp`` or ``cnn``) for samples of ``sample_shape``;
    ``hidden`` and ``dropout`` shape the mlp only: Dense + activation (+ Dropout)
    per hidden width on the flattened sample, then Dense + Softmax."""
    if kind == "mlp":
        stack: list[tl.Layer] = []
        for h in hidden:
            stack += [tl.Dense(h, init=_dense_init(activation)), tl.activation(activation)]
            if dropout:
                stack.append(tl.Dropout(dropout))
        stack += [tl.Dense(classes), tl.Softmax()]
        shape = (math.prod(sample_shape),)
        return Sequential(stack, input_shape=shape, dtype=dtype, seed=seed, backend=backend)
    if kind == "cnn":
        return build_cnn(sample_shape, classes, activation, dtype, seed, backend)
    raise ValueError(f"unknown model {kind!r}; use one of {', '.join(MODELS)}")


def describe(model: Sequential) -> str:
    """A short name of a model :func:`build` made, for the run's first line:
    ``mlp 784-256-128-10`` (the Dense widths) or ``cnn on 28x28x1 images``."""
    if len(model.input_shape) == 1:
        pairs = zip(model.layers, model.shapes, strict=True)
        widths = [model.input_shape[0]] + [s[-1] for lay, s in pairs if isinstance(lay, tl.Dense)]
        return "mlp " + "-".join(map(str, widths))
    return "cnn on " + "x".join(map(str, model.input_shape)) + " images"


def fit_to(x: Any, input_shape: Sequence[int]) -> Any | None:
    """``x`` reshaped to ``(n, *input_shape)``, or ``None`` when ambiguous or
    impossible: flattening is always fine, and an image model also takes
    flat rows or samples equal to its shape without axes of size 1."""
    target = tuple(input_shape)
    sample = tuple(x.shape[1:])
    if math.prod(sample) != math.prod(target):
        return None
    squeezed = tuple(d for d in sample if d != 1)
    if len(target) == 1 or len(sample) == 1 or squeezed == tuple(d for d in target if d != 1):
        return x.reshape((x.shape[0], *target))
    return None
