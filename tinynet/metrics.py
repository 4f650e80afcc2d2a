"""Accuracy as per-batch counts of correct predictions, summed on the device.
``y_out`` is probabilities, or logits when the last activation was fused into
the loss (same argmax; a threshold ``t`` becomes ``log(t / (1 - t))``)."""

from __future__ import annotations

import math
from typing import Any

from . import arguments
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, SparseCategoricalCrossentropy

Array = Any


class Accuracy:
    """Fraction of correct predictions.  kind: ``"sparse"`` (integer labels vs
    argmax), ``"categorical"`` (argmax vs argmax) or ``"binary"`` (``y_pred >
    threshold`` vs ``y_true > 0.5``, elementwise)."""

    name = "accuracy"

    def __init__(self, kind: str, threshold: float = 0.5, from_logits: bool = False) -> None:
        self.kind = arguments.choice("Accuracy", "kind", kind, ("sparse", "categorical", "binary"))
        self.threshold = arguments.real(
            "Accuracy", "threshold", threshold, "in (0, 1)", lambda v: 0.0 < v < 1.0
        )
        self.from_logits = from_logits
        self._cut = math.log(threshold / (1.0 - threshold)) if from_logits else threshold

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
