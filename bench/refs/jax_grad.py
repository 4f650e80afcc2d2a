"""Reference: the textbook JAX way, ``jax.value_and_grad`` of the loss
(``jax.nn.log_softmax`` cross-entropy) and the same update, one ``jax.jit``
with donation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .jax_common import JitRunner, jax_gpu_available, update


def loss_fn(params, x, y):
    h = x
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < last:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def make_step(opt):
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(params, state, x, y):
        loss, grads = value_and_grad(params, x, y)
        params, state = update(opt, params, grads, state)
        return params, state, loss

    return step


class Runner(JitRunner):
    def __init__(self, config, opt, x, y, params, device="cpu"):
        super().__init__(make_step(opt), opt, x, y, params, device)


def available(device: str) -> tuple[bool, str]:
    if device == "gpu" and not jax_gpu_available():
        return False, "JAX sees no GPU"
    return True, ""
