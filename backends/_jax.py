"""JAX backend (CPU, GPU, TPU), compiled by XLA through :meth:`JaxOps.jit`.

float64 without a global switch: JAX computes in float32 unless its x64 flag
is on, and tinynet never turns it on for the process.  Instead every
tinynet computation runs inside :meth:`JaxOps.scope` (``jax.enable_x64``,
a thread-local context): compiled functions enter it on every call, and the
model's entry points (construction, fit, evaluate, predict) around their
eager work.  Every array tinynet makes has an explicit dtype, so a float32
model stays float32; the user's own ``jnp.ones(2)`` stays float32 too.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from . import missing_package
from .ops import Ops

# matmul_tn: a Dense layer's weight gradient ``x.T @ dy`` (the batch
# contracted).  XLA's CPU runtime hands a dot whose left operand is transposed
# to Eigen, which is slow on small ones; up to TN_MAX_PRODUCTS multiplications
# the product is written as a broadcast product summed over the batch, which
# XLA fuses into one reduction (bench/README.md has the measurement).  Larger
# ones stay dots.  The two round differently (within float32 tolerance, tested).
TN_MAX_PRODUCTS = 1 << 16


class JaxOps(Ops):
    name = "jax"

    def __init__(self, jax: Any, device: Any, description: str) -> None:
        super().__init__(jax.numpy, device, jax.__version__, description)
        self._jax = jax
        self._cpu = device.platform == "cpu"
        self._blocks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def asarray(self, data, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        with self.scope():
            if isinstance(data, (np.ndarray, np.generic, int, float)):
                # a plain copy to the device (device_put is several times
                # cheaper than jnp.asarray(..., device=) on fit's per-epoch path)
                return self._jax.device_put(np.asarray(data, dtype=dtype), self.device)
            return self.xp.asarray(data, dtype=dtype, device=self.device)

    def is_traced(self, a):
        return isinstance(a, self._jax.core.Tracer)

    @property
    def compiles(self) -> bool:
        return True

    def scope(self):
        return self._jax.enable_x64(True)

    def jit(self, fn, **kwargs):
        compiled = self._jax.jit(fn, **kwargs)
        enable_x64 = self._jax.enable_x64

        @functools.wraps(fn)
        def call(*args, **kw):
            with enable_x64(True):
                return compiled(*args, **kw)

        call.compiled = compiled  # for inspection (lowering, cache sizes)
        return call

    def synchronize(self):
        # block_until_ready on a fresh tiny computation orders after all
        # previously dispatched work on the device.
        self.xp.zeros((), device=self.device).block_until_ready()

    def fori_loop(self, n, body, carry):
        return self._jax.lax.fori_loop(0, n, lambda i, c: body(c), carry)

    def run_block(self, step, n, carry, data, guard=None, stop=None):
        """One compiled program per ``step`` and ``guard`` (donating the carry)
        running the whole block; its trip count is an argument, so every block
        length shares it.  ``stop`` is not consulted: a Ctrl-C ends the run
        after the block.

        Except for a step with a convolution on the CPU: XLA's CPU runtime
        runs convolutions inside a loop body many times slower than the same
        ones at the top level of a program (jax-ml/jax#12868), so there the
        compiled program is one step, run by a Python loop that also consults
        ``stop``."""
        by_guard = self._blocks.setdefault(step, {})
        run = by_guard.get(guard)
        if run is None:
            run = by_guard[guard] = self._block_program(step, guard, carry, data)
        return run(carry, n, data, stop)

    def _block_program(self, step, guard, carry, data):
        with self.scope():
            per_step = self._cpu and _has_conv(self._jax.make_jaxpr(step)(carry, data).jaxpr)
        if not per_step:
            loop = self.jit(functools.partial(self._loop, step, guard), donate_argnums=(0,))

            def block(carry, n, data, stop):
                return loop(carry, n, data)

            block.compiled = loop.compiled  # the program, for inspection
            return block
        if guard is None:
            one = self.jit(step, donate_argnums=(0,))
        else:
            one = self.jit(functools.partial(self._guarded, step, guard), donate_argnums=(0,))

        def steps(carry, n, data, stop):
            if guard is not None:  # on the device(s) of the (replicated) parameters
                where = self._jax.tree_util.tree_leaves(carry)[0].sharding
                carry = (carry, self._jax.device_put(np.int32(0), where))
            for _ in range(n):
                if stop is not None and stop():
                    break
                carry = one(carry, data)
            return carry if guard is not None else (carry, 0)

        steps.compiled = one.compiled
        return steps

    def _loop(self, step, guard, carry, n, data):
        lax, jnp = self._jax.lax, self.xp
        if guard is None:
            return lax.fori_loop(0, n, lambda _, c: step(c, data), carry), 0
        body = functools.partial(self._guarded, step, guard)
        return lax.fori_loop(
            0, n, lambda _, c: body(c, data), (carry, jnp.zeros((), dtype=jnp.int32))
        )

    def _guarded(self, step, guard, carry_status, data):
        # a step that goes bad, and every step after it, keeps its inputs:
        # one status read per block instead of one per step
        jnp, tree_map = self.xp, self._jax.tree_util.tree_map
        old, status = carry_status
        new = step(old, data)
        status = jnp.where(status == 0, guard(new), status)
        good = status == 0
        return tree_map(lambda a, b: jnp.where(good, a, b), new, old), status

    def rows(self, x, start, size):
        return self._jax.lax.dynamic_slice_in_dim(x, start, size, axis=0)

    def device_mesh(self, devices):
        from . import _jax_parallel

        info = _jax_parallel.info()
        total = info["global_devices"]
        if info["process_count"] > 1:
            if devices != total:
                raise ValueError(
                    f"this run has {total} JAX devices over {info['process_count']} processes "
                    f"and a multi-process run trains on all of them; pass devices={total} "
                    "(tinynet.parallel.device_count())"
                )
        elif devices > total:
            fake = ""
            if info["platform"] == "cpu":
                fake = "; to try data parallelism on one CPU, fake devices with " + (
                    _jax_parallel.FAKE_DEVICES_HINT.format(n=devices)
                )
            raise ValueError(
                f"only {total} JAX device(s) are available ({info['platform']}), "
                f"{devices} were requested{fake}"
            )
        return _jax_parallel.JaxDataParallel(devices)

    def matmul_tn(self, a, b):
        if self._cpu and a.ndim == 2 and b.ndim == 2:
            if a.shape[0] * a.shape[1] * b.shape[1] <= TN_MAX_PRODUCTS:
                return self.xp.sum(a[:, :, None] * b[:, None, :], axis=0)
        return a.T @ b

    def scatter_add(self, indices, values, rows):
        # XLA's scatter-add: no (rows, len(indices)) one-hot matrix
        out = self.xp.zeros((rows, values.shape[1]), dtype=values.dtype)
        return out.at[indices].add(values)
    # Convolution by XLA's own convolution: on a whole CNN training step it beat
    # the portable im2col + dot.  The input is saved for the backward, which is
    # the convolution's VJP (the forward inside it is unused and pruned by XLA).

    def conv(self, x, W, strides, dilation):
        return self._conv(x, W, strides, dilation), x

    def conv_backward(self, dy, saved, x_shape, W, strides, dilation, need_dx=True):
        def conv(x, W):
            return self._conv(x, W, strides, dilation)

        if need_dx:
            return self._jax.vjp(conv, saved, W)[1](dy)
        return None, self._jax.vjp(lambda W: conv(saved, W), W)[1](dy)[0]

    def _conv(self, x, W, strides, dilation):
        spatial = "DHW"[3 - (W.ndim - 2) :]
        return self._jax.lax.conv_general_dilated(
            x,
            W,
            window_strides=tuple(strides),
            padding="VALID",
            rhs_dilation=tuple(dilation),
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )


def _has_conv(jaxpr: Any) -> bool:
    """Does ``jaxpr`` (or a jaxpr nested in it) hold a convolution?"""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns") and _has_conv(inner):
                    return True
    return False


def _device(jax: Any, spec: str) -> Any:
    """The JAX device for ``cpu``, ``gpu``/``cuda``/``rocm``, ``tpu``, each
    with an optional ``:N`` (this process's N-th device of that platform)."""
    platform, _, index = spec.partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
    if platform not in ("cpu", "gpu", "tpu") or (index and not index.isdigit()):
        raise ValueError(
            f"unknown JAX device {spec!r} for tinynet; use cpu, gpu, tpu or cuda, each "
            "optionally with :N (e.g. gpu:1)"
        )
    try:
        found = jax.local_devices(backend=platform)
    except RuntimeError:
        found = []
    if not found or int(index or 0) >= len(found):
        from . import BackendUnavailableError

        raise BackendUnavailableError(
            f"tinynet backend 'jax': device {spec!r} is not available here (this JAX sees "
            f"{len(found)} {platform} device(s)); choose another with TINYNET_DEVICE or "
            "device=..."
        )
    return found[int(index or 0)]


def load(device: str | None = None) -> JaxOps:
    try:
        import jax
    except ImportError:
        raise missing_package("jax", "jax") from None
    if device is None:
        device = jax.local_devices()[0]  # after jax.distributed.initialize: this process's
    else:
        device = _device(jax, device)
    n = len(jax.local_devices(backend=device.platform))
    return JaxOps(jax, device, f"{device.platform.upper()} ({n} device(s))")
