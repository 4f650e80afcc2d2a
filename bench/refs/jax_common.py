"""Pieces shared by the two JAX references: device choice, the optimizer
update (same equations as the raw NumPy reference) and the timing loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def jax_device(device: str):
    if device == "gpu":
        gpus = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
        if not gpus:
            raise RuntimeError("JAX sees no GPU")
        return gpus[0]
    return jax.devices("cpu")[0]


def jax_gpu_available() -> bool:
    try:
        return any(d.platform in ("gpu", "cuda", "rocm") for d in jax.devices())
    except RuntimeError:
        return False


def to_device(params, x, y, device):
    dev = jax_device(device)
    params = tuple((jax.device_put(W, dev), jax.device_put(b, dev)) for W, b in params)
    return params, jax.device_put(x, dev), jax.device_put(y, dev)


def init_state(opt, params):
    if opt.name == "sgd":
        return ()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return (jnp.zeros((), jnp.int32), zeros, jax.tree_util.tree_map(jnp.zeros_like, params))


def update(opt, params, grads, state):
    """``(new_params, new_state)``: plain SGD, or Adam in the Keras form."""
    if opt.name == "sgd":
        lr = opt.lr
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), state
    step, m, v = state
    t = (step + 1).astype(jnp.float32)
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    alpha = opt.lr * jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    m = jax.tree_util.tree_map(lambda m, g: m + (1.0 - b1) * (g - m), m, grads)
    v = jax.tree_util.tree_map(lambda v, g: v + (1.0 - b2) * (g * g - v), v, grads)
    params = jax.tree_util.tree_map(
        lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps), params, m, v
    )
    return params, (step + 1, m, v)


class JitRunner:
    """Calls a jitted ``step(params, state, x, y) -> (params, state, loss)``
    (params and state donated) and blocks on the last loss."""

    def __init__(self, step, opt, x, y, params, device):
        self.opt, self.params_np, self.device = opt, params, device
        _, self.x, self.y = to_device(params, x, y, device)
        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        dev = jax_device(self.device)
        self.params = tuple(
            (jax.device_put(W, dev), jax.device_put(b, dev)) for W, b in self.params_np
        )
        self.state = init_state(self.opt, self.params)

    def run(self, n: int) -> float:
        params, state, x, y, step = self.params, self.state, self.x, self.y, self.step
        loss = None
        for _ in range(n):
            params, state, loss = step(params, state, x, y)
        self.params, self.state = params, state
        return float(loss.block_until_ready())
