"""JAX backend (CPU, GPU, TPU), compiled by XLA through :meth:`Backend.jit`.

float64: x64 mode is switched on when this backend loads, so a float64 model
really computes in float64 (JAX would otherwise silently make float32).  Every
array tinynet makes carries an explicit dtype, so float32 models stay float32.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from . import Backend, missing_package

# matmul_tn: a Dense layer's weight gradient ``x.T @ dy`` (the batch
# contracted).  XLA's CPU runtime hands a dot whose left operand is transposed
# to Eigen, not to YNNPACK (xla/backends/cpu/ynn_support.cc), and Eigen is slow
# on small ones: on the small model S (300 x 64 by 300 x 3) that dot took
# 40 us of a ~80 us step.  Up to TN_MAX_PRODUCTS multiplications it is
# written as a broadcast product summed over the batch, which XLA fuses into
# one reduction without materialising the product: S's fit 28% faster per
# step (both of its layers).  M's smallest weight gradient (128 x 128 by
# 128 x 10, 164k products) measured the same either way, and larger ones
# stay dots.  (An explicit transpose of x before a plain dot, the other way
# around Eigen, gained 9% on S: XLA's transpose of x costs 25 us.)
TN_MAX_PRODUCTS = 1 << 16


def _fused_ops(jnp: Any, platform: str) -> Any:
    if platform != "cpu":
        return None

    def matmul_tn(a, b):
        if a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] <= TN_MAX_PRODUCTS:
            return jnp.sum(a[:, :, None] * b[:, None, :], axis=0)
        return a.T @ b

    return types.SimpleNamespace(matmul_tn=matmul_tn)


def load() -> Backend:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise missing_package("jax", "jax") from None
    jax.config.update("jax_enable_x64", True)
    device = jax.local_devices()[0]  # after jax.distributed.initialize: this process's

    def jit(fn, **kwargs):
        return jax.jit(fn, **kwargs)

    def sync():
        # block_until_ready on a fresh tiny computation orders after all
        # previously dispatched work on the device.
        jnp.zeros((), device=device).block_until_ready()

    def beside(like) -> bool:
        try:  # a tracer (init under jit) or an array sharded over several devices: no
            return like.devices() == {device}
        except (AttributeError, TypeError, jax.errors.ConcretizationTypeError):
            return False

    return Backend(
        name="jax",
        xp=jnp,
        device=device,
        version=jax.__version__,
        _to_numpy=np.asarray,
        _jit=jit,
        _sync=sync,
        _is_traced=lambda a: isinstance(a, jax.core.Tracer),
        _fori_loop=lambda n, body, carry: jax.lax.fori_loop(0, n, lambda i, c: body(c), carry),
        _rows=lambda x, start, size: jax.lax.dynamic_slice_in_dim(x, start, size, axis=0),
        _from_host=lambda a: jax.device_put(a, device, may_alias=False),
        _beside=beside,
        immutable=True,
        fused=_fused_ops(jnp, device.platform),
        description=f"{device.platform.upper()} ({len(jax.local_devices())} device(s))",
    )
