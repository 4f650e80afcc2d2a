"""The GEMM floor: only the matrix products of one training step, at the
step's exact shapes and layouts (``h @ W``, ``h.T @ dz``, ``dz @ W.T``), into
preallocated outputs.  Its time is the best any implementation that calls
the same BLAS can do; ``FLOPs / its time`` is the matmul peak at the step's
shapes.  NumPy on the CPU, CuPy (else jitted JAX) with ``--device gpu``."""

from __future__ import annotations

import numpy as np


def _bases(config, rng):
    """For each GEMM of ``config.gemms()``: ``(kind, A, B)`` host arrays in the
    layout they are stored in; ``kind`` says which operand is used transposed:
    ``h @ W`` (none), ``h.T @ dz`` ("a"), ``dz @ W.T`` ("b")."""
    out = []
    for what, m, k, n in config.gemms():
        if what.startswith("fwd"):
            out.append(("", rng.random((m, k), np.float32), rng.random((k, n), np.float32)))
        elif what.startswith("dW"):
            out.append(("a", rng.random((k, m), np.float32), rng.random((k, n), np.float32)))
        else:
            out.append(("b", rng.random((m, k), np.float32), rng.random((n, k), np.float32)))
    return out


def _operands(config, xp, rng):
    """``(a, b, out)`` per GEMM, transposed operands as transposed views."""
    to = (lambda a: a) if xp is np else xp.asarray
    ops = []
    for kind, A, B in _bases(config, rng):
        a, b = to(A), to(B)
        a = a.T if kind == "a" else a
        b = b.T if kind == "b" else b
        ops.append((a, b, xp.empty((a.shape[0], b.shape[1]), dtype=xp.float32)))
    return ops


class Runner:
    def __init__(self, config, opt, x, y, params, device="cpu"):
        rng = np.random.default_rng(0)
        self.sync = lambda: None
        self.matmul = np.matmul
        self._run = self._run_xp
        if device == "cpu":
            self.ops = _operands(config, np, rng)
            return
        try:
            import cupy as cp
        except ImportError:
            cp = None
        if cp is not None:
            self.ops = _operands(config, cp, rng)
            self.matmul = cp.matmul
            self.sync = lambda: cp.cuda.get_current_stream().synchronize()
            return
        import jax

        dev = [d for d in jax.devices() if d.platform != "cpu"][0]
        bases = _bases(config, rng)
        kinds = tuple(kind for kind, _, _ in bases)
        self.jops = [(jax.device_put(A, dev), jax.device_put(B, dev)) for _, A, B in bases]

        def products(ops):
            return [
                (a.T if kind == "a" else a) @ (b.T if kind == "b" else b)
                for kind, (a, b) in zip(kinds, ops, strict=True)
            ]

        self.jfn = jax.jit(products)
        self._run = self._run_jax

    def _run_xp(self, n):
        matmul, ops = self.matmul, self.ops
        for _ in range(n):
            for a, b, out in ops:
                matmul(a, b, out=out)
        self.sync()

    def _run_jax(self, n):
        out = None
        for _ in range(n):
            out = self.jfn(self.jops)
        out[-1].block_until_ready()

    def run(self, n: int):
        self._run(n)
        return None


def peak_1024(device: str = "cpu", repeats: int = 9) -> dict:
    """Median GFLOP/s of a float32 1024^3 matmul (NumPy; CuPy/JAX on GPU)."""
    import statistics
    import time

    n = 1024
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    if device == "gpu":
        try:
            import cupy as cp

            a, b = cp.asarray(a), cp.asarray(b)
            out = cp.empty((n, n), cp.float32)

            def f():
                cp.matmul(a, b, out=out)
                cp.cuda.get_current_stream().synchronize()

            lib = "cupy"
        except ImportError:
            import jax

            dev = [d for d in jax.devices() if d.platform != "cpu"][0]
            a, b = jax.device_put(a, dev), jax.device_put(b, dev)
            mm = jax.jit(lambda a, b: a @ b)

            def f():
                mm(a, b).block_until_ready()

            lib = "jax"
    else:
        out = np.empty((n, n), np.float32)

        def f():
            np.matmul(a, b, out=out)

        lib = "numpy"
    for _ in range(3):
        f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "library": lib,
        "shape": [n, n, n],
        "median_s": med,
        "best_s": min(times),
        "gflops_median": 2 * n**3 / med / 1e9,
        "gflops_best": 2 * n**3 / min(times) / 1e9,
    }


def available(device: str) -> tuple[bool, str]:
    return True, ""
