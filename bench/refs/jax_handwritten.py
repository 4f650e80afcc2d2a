"""Reference: the raw NumPy reference's hand-written backprop, in jax.numpy,
the whole step (forward, backward, update) under one ``jax.jit`` with the
parameters and optimizer state donated.  This is the bar for tinynet-jax."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .jax_common import JitRunner, jax_gpu_available, update


def make_step(opt):
    def step(params, state, x, y):
        n = x.shape[0]
        last = len(params) - 1
        acts = [x]
        h = x
        for i, (W, b) in enumerate(params):
            z = h @ W + b
            if i < last:
                z = jnp.maximum(z, 0.0)
            acts.append(z)
            h = z
        z = h - jnp.max(h, axis=1, keepdims=True)
        e = jnp.exp(z)
        s = jnp.sum(e, axis=1, keepdims=True)
        logp_y = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0] - jnp.log(s[:, 0])
        loss = -jnp.mean(logp_y)
        dz = (e / s - jax.nn.one_hot(y, h.shape[1], dtype=h.dtype)) / n
        grads = [None] * len(params)
        for i in range(last, -1, -1):
            a = acts[i]
            W = params[i][0]
            grads[i] = (a.T @ dz, jnp.sum(dz, axis=0))
            if i > 0:
                dz = jnp.where(a > 0, dz @ W.T, 0.0)
        params, state = update(opt, params, tuple(grads), state)
        return params, state, loss

    return step


class Runner(JitRunner):
    def __init__(self, config, opt, x, y, params, device="cpu"):
        super().__init__(make_step(opt), opt, x, y, params, device)


def available(device: str) -> tuple[bool, str]:
    if device == "gpu" and not jax_gpu_available():
        return False, "JAX sees no GPU"
    return True, ""
