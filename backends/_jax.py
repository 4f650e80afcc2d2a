"""JAX backend (CPU, GPU, TPU), compiled by XLA; float64 only inside :meth:`JaxOps.scope`."""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from . import BackendUnavailableError
from .ops import Ops

# matmul_tn on the CPU: up to this many multiplications, a broadcast product summed
# over the batch beats XLA's slow transposed dot (bench/README.md); rounding differs.
TN_MAX_PRODUCTS = 1 << 16


class JaxOps(Ops):
    name = "jax"
    compiles = True

    def __init__(self, jax: Any, device: Any, description: str) -> None:
        super().__init__(jax.numpy, device, jax.__version__, description)
        self._jax = jax
        self._cpu = device.platform == "cpu"
        self._blocks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def asarray(self, data, dtype=None):
        if not isinstance(data, (np.ndarray, np.generic, int, float)):
            return super().asarray(data, dtype)
        dtype = None if dtype is None else self.dtype(dtype)
        with self.scope():  # device_put: several times cheaper than jnp.asarray(..., device=)
            return self._jax.device_put(np.asarray(data, dtype=dtype), self.device)

    def is_traced(self, a):
        return isinstance(a, self._jax.core.Tracer)

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
        # a fresh tiny computation is ready after all work dispatched before it
        self.xp.zeros((), device=self.device).block_until_ready()

    def fori_loop(self, n, body, carry):
        return self._jax.lax.fori_loop(0, n, lambda i, c: body(c), carry)

    def run_block(self, step, n, carry, data, guard=None, stop=None):
        """One compiled program per ``step`` and ``guard`` runs the block (``stop`` read after
        it); on the CPU a step with a convolution runs compiled alone (jax-ml/jax#12868)."""
        by_guard = self._blocks.setdefault(step, {})
        if guard not in by_guard:
            by_guard[guard] = self._block_program(step, guard, carry, data)
        return by_guard[guard](carry, n, data, stop)

    def _block_program(self, step, guard, carry, data):
        jax, jnp = self._jax, self.xp

        def guarded(carry_status, data):
            old, status = carry_status
            new = step(old, data)
            status = jnp.where(status == 0, guard(new), status)
            good = status == 0
            return jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, old), status

        def loop(carry, n, data):
            return self.fori_loop(n, lambda c: body(c, data), carry)

        body = step if guard is None else guarded
        with self.scope():
            per_step = self._cpu and _has_conv(jax.make_jaxpr(step)(carry, data).jaxpr)
        program = self.jit(body if per_step else loop, donate_argnums=(0,))

        def run(carry, n, data, stop):
            if guard is not None:  # the status, on the device(s) of the (replicated) parameters
                where = jax.tree_util.tree_leaves(carry)[0].sharding
                carry = (carry, jax.device_put(np.int32(0), where))
            if per_step:  # the portable Python loop over the compiled step
                carry = Ops.run_block(self, program, n, carry, data, stop=stop)[0]
            else:
                carry = program(carry, n, data)
            return carry if guard is not None else (carry, 0)

        run.compiled = program.compiled  # for inspection
        return run

    def rows(self, x, start, size):
        return self._jax.lax.dynamic_slice_in_dim(x, start, size, axis=0)

    def device_mesh(self, devices):
        from . import _jax_parallel

        info = _jax_parallel.info()
        total, processes, platform = info["global_devices"], info["process_count"], info["platform"]
        if processes > 1 and devices != total:
            raise ValueError(
                f"this run has {total} JAX devices over {processes} processes "
                f"and a multi-process run trains on all of them; pass devices={total} "
                "(tinynet.parallel.device_count())"
            )
        if processes == 1 and devices > total:
            fake = ""
            if platform == "cpu":
                fake = (
                    "; to try data parallelism on one CPU, fake devices with XLA_FLAGS="
                    f"--xla_force_host_platform_device_count={devices} in the environment "
                    "before JAX starts (before the first import of jax in the process)"
                )
            raise ValueError(
                f"only {total} JAX device(s) are available ({platform}), "
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

    # XLA's convolution (beat im2col + dot); the backward is its VJP on the saved input.

    def conv(self, x, W, strides, dilation):
        return self._conv(x, W, strides, dilation), x

    def conv_backward(self, dy, saved, x_shape, W, strides, dilation, need_dx=True):
        conv = functools.partial(self._conv, strides=strides, dilation=dilation)
        if need_dx:
            return self._jax.vjp(conv, saved, W)[1](dy)
        return None, self._jax.vjp(lambda W: conv(saved, W), W)[1](dy)[0]

    def _conv(self, x, W, strides, dilation):
        spatial = "DHW"[3 - (W.ndim - 2) :]
        dims = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        return self._jax.lax.conv_general_dilated(
            x, W, tuple(strides), "VALID", rhs_dilation=tuple(dilation), dimension_numbers=dims
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
    """The JAX device for ``cpu``, ``gpu``/``cuda``/``rocm`` or ``tpu``, with an optional ``:N``."""
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
    if int(index or 0) >= len(found):
        raise BackendUnavailableError(
            f"tinynet backend 'jax': device {spec!r} is not available here (this JAX sees "
            f"{len(found)} {platform} device(s)); choose another with TINYNET_DEVICE or "
            "device=..."
        )
    return found[int(index or 0)]


def load(device: str | None = None) -> JaxOps:
    import jax

    # after jax.distributed.initialize: this process's first device
    device = jax.local_devices()[0] if device is None else _device(jax, device)
    n = len(jax.local_devices(backend=device.platform))
    return JaxOps(jax, device, f"{device.platform.upper()} ({n} device(s))")
