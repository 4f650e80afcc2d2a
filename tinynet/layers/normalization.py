"""Batch and layer normalisation over the last (feature) axis, with Keras's
defaults (docs/DESIGN.md, section 2)."""

from __future__ import annotations

from typing import Any

from .. import arguments
from ..initializers import ones, zeros
from .base import Array, Layer, Params, Shape, features


def _affine_grads(xp: Any, dy: Array, xhat: Array) -> Params:
    """The gradients of ``y = xhat * gamma + beta``: sums over all axes but the last."""
    width = dy.shape[-1]
    dy2 = xp.reshape(dy, (-1, width))
    return {
        "gamma": xp.sum(dy2 * xp.reshape(xhat, (-1, width)), axis=0),
        "beta": xp.sum(dy2, axis=0),
    }


class _Normalization(Layer):
    """``y = xhat * gamma + beta`` per feature (the last axis)."""

    has_params = True

    def output_shape(self, input_shape: Shape) -> Shape:
        features(input_shape)
        return tuple(input_shape)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        width = (features(input_shape),)
        params = {"gamma": ones(key, width, dtype), "beta": zeros(key, width, dtype)}
        return tuple(input_shape), params, {}


class BatchNorm(_Normalization):
    """Batch normalisation (Keras's ``BatchNormalization``, ``axis=-1``):
    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta`` per feature, the
    statistics over every other axis: the batch's in training (then the new
    state is ``moving * momentum + batch_stat * (1 - momentum)``), the moving
    ones in inference.

    Parameters ``gamma`` (ones), ``beta`` (zeros); state ``moving_mean``
    (zeros), ``moving_var`` (ones); all ``(features,)``.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3) -> None:
        self.momentum = arguments.real(
            "BatchNorm", "momentum", momentum, "in [0, 1]", lambda v: 0 <= v <= 1
        )
        self.epsilon = arguments.positive("BatchNorm", "epsilon", epsilon)

    def init(self, key: Array, input_shape: Shape, dtype: Any) -> tuple[Shape, Params, Params]:
        shape, params, _ = super().init(key, input_shape, dtype)
        width = shape[-1:]
        state = {"moving_mean": zeros(key, width, dtype), "moving_var": ones(key, width, dtype)}
        return shape, params, state

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        gamma, beta = params["gamma"], params["beta"]
        if not training:
            inv = 1.0 / xp.sqrt(state["moving_var"] + self.epsilon)
            xhat = (x - state["moving_mean"]) * inv
            scale = gamma * inv

            def backward_inference(dy: Array, need_dx: bool = True):
                return (dy * scale if need_dx else None), _affine_grads(xp, dy, xhat)

            return xhat * gamma + beta, state, backward_inference

        width = x.shape[-1]
        x2 = xp.reshape(x, (-1, width))
        n = x2.shape[0]  # values per feature: batch (* H * W, * T)
        mean = xp.mean(x2, axis=0)
        xc = x - mean
        var = xp.mean(xp.reshape(xc * xc, (-1, width)), axis=0)  # biased
        inv = 1.0 / xp.sqrt(var + self.epsilon)
        xhat = xc * inv
        m = self.momentum
        new_state = {
            "moving_mean": state["moving_mean"] * m + mean * (1.0 - m),
            "moving_var": state["moving_var"] * m + var * (1.0 - m),
        }

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array | None, Params]:
            # y depends on x directly and through the batch mean and variance:
            # dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat))
            grads = _affine_grads(xp, dy, xhat)
            if not need_dx:
                return None, grads
            dx = (gamma * inv) * (dy - (grads["beta"] + xhat * grads["gamma"]) * (1.0 / n))
            return dx, grads

        return xhat * gamma + beta, new_state, backward


class LayerNorm(_Normalization):
    """Layer normalisation (Keras's ``LayerNormalization``, ``axis=-1``): each
    sample (each position of a sequence) normalised over its last axis, then
    ``* gamma + beta``, with ``epsilon`` added to the variance; no state.
    Parameters ``gamma`` (ones) and ``beta`` (zeros) of shape ``(features,)``."""

    def __init__(self, epsilon: float = 1e-3) -> None:
        self.epsilon = arguments.positive("LayerNorm", "epsilon", epsilon)

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        gamma, beta = params["gamma"], params["beta"]
        xc = x - xp.mean(x, axis=-1, keepdims=True)
        var = xp.mean(xc * xc, axis=-1, keepdims=True)  # biased
        inv = 1.0 / xp.sqrt(var + self.epsilon)
        xhat = xc * inv

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array | None, Params]:
            grads = _affine_grads(xp, dy, xhat)
            if not need_dx:
                return None, grads
            g = dy * gamma
            mean_g = xp.mean(g, axis=-1, keepdims=True)
            mean_gx = xp.mean(g * xhat, axis=-1, keepdims=True)
            return inv * (g - mean_g - xhat * mean_gx), grads

        return xhat * gamma + beta, state, backward
