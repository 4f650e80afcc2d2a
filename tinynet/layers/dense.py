"""Dense (fully connected) layer: ``y = x @ W + b``."""

from __future__ import annotations

import math
from typing import Any

import backends

from .. import initializers
from .base import Array, Backward, Layer, Params


def _check_size(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, received {name}={value!r}")
    return value


def _check_penalty(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Dense: {name} must be a finite number >= 0, received {name}={value!r}")
    return float(value)


class Dense(Layer):
    """Fully connected layer.

    Args:
        in_features: width of the input, ``x`` has shape ``(batch, in_features)``.
        out_features: width of the output, ``y`` has shape ``(batch, out_features)``.
        init: initialiser name or function for ``W`` (``"glorot_uniform"``,
            ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"zeros"``).
        weight_l1, weight_l2, bias_l1, bias_l2: regularisation strengths; the
            penalty ``l1 * sum|P| + l2 * sum P**2`` is added to the loss and
            its gradient to the gradients.

    Parameters: ``W`` of shape ``(in_features, out_features)``, ``b`` of shape
    ``(out_features,)``, initialised to zeros.
    """

    has_params = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "glorot_uniform",
        *,
        weight_l1: float = 0.0,
        weight_l2: float = 0.0,
        bias_l1: float = 0.0,
        bias_l2: float = 0.0,
    ) -> None:
        self.in_features = _check_size("Dense", "in_features", in_features)
        self.out_features = _check_size("Dense", "out_features", out_features)
        self.init_name = init if isinstance(init, str) else getattr(init, "__name__", str(init))
        self._init = initializers.get(init)
        self.weight_l1 = _check_penalty("weight_l1", weight_l1)
        self.weight_l2 = _check_penalty("weight_l2", weight_l2)
        self.bias_l1 = _check_penalty("bias_l1", bias_l1)
        self.bias_l2 = _check_penalty("bias_l2", bias_l2)

    def output_features(self, in_features: int | None, index: int) -> int:
        if in_features is not None and in_features != self.in_features:
            raise ValueError(
                f"layer {index} (Dense) expects {self.in_features} input features but the "
                f"layer before it produces {in_features}; make them agree, e.g. "
                f"Dense({in_features}, {self.out_features})"
            )
        return self.out_features

    def init(self, key: Array, in_features: int | None, dtype: Any) -> Params:
        W = self._init(key, (self.in_features, self.out_features), dtype)
        b = initializers.zeros(key, (self.out_features,), dtype)
        return {"W": W, "b": b}

    def forward(
        self, params: Params, x: Array, xp: Any, training: bool = False, key: Array = None
    ) -> tuple[Array, Backward]:
        W = params["W"]
        y = x @ W
        y += params["b"]  # in place on the fresh product (a rebind on JAX): one temporary less
        matmul_tn = backends.fused(xp, "matmul_tn")  # x.T @ dy, faster on XLA's CPU runtime

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array | None, Params]:
            gW = x.T @ dy if matmul_tn is None else matmul_tn(x, dy)
            grads = {"W": gW, "b": xp.sum(dy, axis=0)}
            return (dy @ W.T if need_dx else None), grads

        return y, backward

    @property
    def regularized(self) -> bool:
        return any((self.weight_l1, self.weight_l2, self.bias_l1, self.bias_l2))

    def penalty(self, params: Params, xp: Any) -> tuple[Array, Params]:
        """``(penalty value, its gradient)`` of the L1/L2 regularisation."""
        value, grads = 0.0, {}
        for name, l1, l2 in (
            ("W", self.weight_l1, self.weight_l2),
            ("b", self.bias_l1, self.bias_l2),
        ):
            p = params[name]
            g = xp.zeros_like(p)
            if l1:
                value = value + l1 * xp.sum(xp.abs(p))
                g = g + l1 * xp.sign(p)
            if l2:
                value = value + l2 * xp.sum(p * p)
                g = g + (2.0 * l2) * p
            grads[name] = g
        return value, grads

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "type": "Dense",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init_name,
        }
        for name in ("weight_l1", "weight_l2", "bias_l1", "bias_l2"):
            if getattr(self, name):
                config[name] = getattr(self, name)
        return config
