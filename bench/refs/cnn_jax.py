"""Reference: the reference CNN as a hand-written JAX program: the forward
with ``lax.conv_general_dilated`` (NHWC, HWIO kernels: the common layouts
as they are), ``jax.value_and_grad`` of the from-logits cross-entropy and
``optax.adam`` (epsilon 1e-7; optax adds it to ``sqrt(v_hat)``, Keras to
``sqrt(v)``: the same arithmetic cost), the whole step under one
``jax.jit`` with parameters and optimizer state donated.

Two pooling formulations (``pool``):

* ``"reduce_window"``: ``lax.reduce_window(max)``, what ``flax.linen.max_pool``
  and Keras on JAX use; its gradient is a select-and-scatter;
* ``"reshape"``: ``x[:, :2h, :2w].reshape(n, h, 2, w, 2, c).max(axis=(2, 4))``,
  whose gradient XLA fuses into elementwise code.
"""

from __future__ import annotations


def available() -> tuple[bool, str]:
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError as err:
        return False, f"{err.name} is not installed"
    return True, ""


def make_loss(pool: str):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def max_pool(a):
        if pool == "reduce_window":
            return lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        n, h, w, c = a.shape
        h, w = h // 2, w // 2
        return a[:, : 2 * h, : 2 * w].reshape(n, h, 2, w, 2, c).max(axis=(2, 4))

    def conv(a, W, b):
        y = lax.conv_general_dilated(
            a, W, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y + b)

    def loss_fn(params, x, y):
        (W1, b1), (W2, b2), (W3, b3), (W4, b4) = params
        h = max_pool(conv(x, W1, b1))
        h = max_pool(conv(h, W2, b2))
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ W3 + b3)
        logits = h @ W4 + b4
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss_fn


class Runner:
    def __init__(self, x, y, params, opt, pool="reduce_window"):
        import jax
        import optax

        self.jax = jax
        self.params_np = params
        self.tx = optax.adam(opt.lr, b1=opt.beta_1, b2=opt.beta_2, eps=opt.epsilon)
        loss_fn = make_loss(pool)
        tx = self.tx

        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self.step = jax.jit(step, donate_argnums=(0, 1))
        cpu = jax.devices("cpu")[0]
        self.x, self.y = jax.device_put(x, cpu), jax.device_put(y, cpu)
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        put = self.jax.device_put
        self.params = tuple((put(W.copy()), put(b.copy())) for W, b in self.params_np)
        self.opt_state = self.tx.init(self.params)

    def run(self, n: int) -> float:
        params, opt_state, x, y, step = self.params, self.opt_state, self.x, self.y, self.step
        loss = None
        for _ in range(n):
            params, opt_state, loss = step(params, opt_state, x, y)
        self.params, self.opt_state = params, opt_state
        return float(loss.block_until_ready())
