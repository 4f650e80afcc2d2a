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

# matmul_tn: XLA's CPU runtime gives a dot to YNNPACK only when its left
# operand is not transposed (xla/backends/cpu/ynn_support.cc); a weight
# gradient ``x.T @ dy`` goes to Eigen instead, which is slow when the product
# has few columns: on the small model S (300 x 64 by 300 x 3) 40 us of a
# ~80 us step.  Transposing x first (an optimization barrier keeps XLA from
# folding the transpose back into the dot) costs a copy of x and gives a
# plain dot: S's fit 9% faster per step; M and L (more columns) unchanged or
# slower, so only up to this many columns.
TN_MAX_COLUMNS = 16


def _fused_ops(jax, platform: str) -> Any:
    if platform != "cpu":
        return None
    barrier = jax.lax.optimization_barrier

    def matmul_tn(a, b):
        if a.ndim == 2 and b.ndim == 2 and b.shape[1] <= TN_MAX_COLUMNS:
            return barrier(a.T) @ b
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
        fused=_fused_ops(jax, device.platform),
        description=f"{device.platform.upper()} ({len(jax.local_devices())} device(s))",
    )
