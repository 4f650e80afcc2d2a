"""Dense (fully connected) layer: ``y = x @ W + b`` on the last axis."""

from __future__ import annotations

from typing import Any

from .. import arguments, initializers
from .base import Array, Layer, Params, Shape, features, positive_int


class Dense(Layer):
    """Fully connected layer on the last axis: ``(batch, ..., in_features)`` ->
    ``(batch, ..., units)``.  ``Dense(units)`` takes ``in_features`` from the
    layer before it (or the model's ``input_shape``); ``Dense(in_features,
    out_features)`` states it, and it is checked.

    Args:
        units: output width (``out_features``).
        init: initialiser name or function for ``W``.
        weight_l1, weight_l2, bias_l1, bias_l2: regularisation strengths (Keras's
            ``L1L2``): ``l1 * sum|P| + l2 * sum P**2`` is added to the loss.

    Parameters: ``W`` ``(in_features, units)``, ``b`` ``(units,)`` (zeros).
    """

    has_params = True

    def __init__(
        self,
        *sizes: int,
        init: str = "glorot_uniform",
        units: int | None = None,
        in_features: int | None = None,
        out_features: int | None = None,
        weight_l1: float = 0.0,
        weight_l2: float = 0.0,
        bias_l1: float = 0.0,
        bias_l2: float = 0.0,
    ) -> None:
        if len(sizes) > 2:
            raise ValueError(
                f"Dense: pass Dense(units) or Dense(in_features, out_features), "
                f"received {len(sizes)} sizes {sizes!r}"
            )
        if len(sizes) == 2:
            in_features, out_features = sizes
        elif len(sizes) == 1:
            out_features = sizes[0]
        if units is not None:
            if out_features is not None:
                raise ValueError(
                    f"Dense: pass the output width once, received units={units!r} "
                    f"and out_features={out_features!r}"
                )
            out_features = units
        if out_features is None:
            raise ValueError("Dense: pass the output width, e.g. Dense(64)")
        self.units = positive_int("Dense", "units", out_features)
        self.in_features = (
            None if in_features is None else positive_int("Dense", "in_features", in_features)
        )
        self.init_name, self._init = initializers.resolve(init)
        self.weight_l1 = arguments.non_negative("Dense", "weight_l1", weight_l1)
        self.weight_l2 = arguments.non_negative("Dense", "weight_l2", weight_l2)
        self.bias_l1 = arguments.non_negative("Dense", "bias_l1", bias_l1)
        self.bias_l2 = arguments.non_negative("Dense", "bias_l2", bias_l2)
        self.regularized = any((self.weight_l1, self.weight_l2, self.bias_l1, self.bias_l2))

    @property
    def out_features(self) -> int:
        return self.units

    def output_shape(self, input_shape: Shape) -> Shape:
        width = features(input_shape)
        if self.in_features is not None and width != self.in_features:
            raise ValueError(
                f"expects {self.in_features} input features but the layer before it "
                f"produces {width}; make them agree, e.g. Dense({width}, {self.units}) "
                f"or Dense({self.units})"
            )
        return (*input_shape[:-1], self.units)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        out = self.output_shape(input_shape)
        W = self._init(key, (input_shape[-1], self.units), dtype)
        b = initializers.zeros(key, (self.units,), dtype)
        return out, {"W": W, "b": b}, {}

    def forward(self, params, state, x, ops, training=False, key=None):
        W = params["W"]
        y = x @ W
        y += params["b"]  # in place on the fresh product (a rebind on JAX): one temporary less
        xp = ops.xp

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array | None, Params]:
            if dy.ndim == 2:
                x2, dy2 = x, dy
            else:  # every leading axis is a batch axis
                x2 = xp.reshape(x, (-1, x.shape[-1]))
                dy2 = xp.reshape(dy, (-1, dy.shape[-1]))
            grads = {"W": ops.matmul_tn(x2, dy2), "b": xp.sum(dy2, axis=0)}
            return (dy @ W.T if need_dx else None), grads

        return y, state, backward

    def penalty(self, params: Params, xp: Any) -> tuple[Array, Params]:
        value, grads = 0.0, {}
        strengths = {"W": (self.weight_l1, self.weight_l2), "b": (self.bias_l1, self.bias_l2)}
        for name, (l1, l2) in strengths.items():
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
        config: dict[str, Any] = {"type": "Dense", "units": self.units}
        if self.in_features is not None:
            config["in_features"] = self.in_features
        config["init"] = self.init_name
        for name in ("weight_l1", "weight_l2", "bias_l1", "bias_l2"):
            if getattr(self, name):
                config[name] = getattr(self, name)
        return config
