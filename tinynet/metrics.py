"""Accuracy as per-batch counts of correct predictions, summed on the device.
``y_out`` is probabilities, or logits when the last activation was fused into
the loss (same argmax; the binary threshold 0.5 becomes 0)."""

from __future__ import annotations

import math
from typing import Any

from . import arguments
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, SparseCategoricalCrossentropy

Array = Any


class Accuracy:
    """Fraction of correct predictions.  kind: ``"sparse"`` (integer labels vs
    argmax), ``"categorical"`` (argmax vs argmax) or ``"binary"`` (``y_pred >
    0.5`` vs ``y_true > 0.5``, elementwise)."""

    def __init__(self, kind: str, from_logits: bool = False) -> None:
        self.kind = arguments.choice("Accuracy", "kind", kind, ("sparse", "categorical", "binary"))
        self._cut = 0.0 if from_logits else 0.5  # sigmoid(0) = 0.5

    def count(self, xp: Any, y_true: Array, y_out: Array) -> Array:
        """Number of correct predictions in the batch (0-d array)."""
        if self.kind == "sparse":
            hit = xp.argmax(y_out, axis=-1) == y_true
        elif self.kind == "categorical":
            hit = xp.argmax(y_out, axis=-1) == xp.argmax(y_true, axis=-1)
        else:
            hit = (y_out > self._cut) == (y_true > 0.5)
        return xp.sum(xp.astype(hit, y_out.dtype))

    def per_batch(self, y_out_shape: tuple[int, ...]) -> int:
        """How many predictions one batch of this shape holds."""
        return math.prod(y_out_shape) if self.kind == "binary" else y_out_shape[0]


def for_loss(loss: Loss, from_logits: bool) -> Accuracy | None:
    """The accuracy that fits a loss (``None`` for regression losses)."""
    if isinstance(loss, SparseCategoricalCrossentropy):
        return Accuracy("sparse", from_logits=from_logits)
    if isinstance(loss, CategoricalCrossentropy):
        return Accuracy("categorical", from_logits=from_logits)
    if isinstance(loss, BinaryCrossentropy):
        return Accuracy("binary", from_logits=from_logits)
    return None
