"""In-place optimizer updates for the NumPy backend (fused kernels).

tinynet's optimizers are written once, as pure functions on the array API
(``tinynet/optimizers.py``, ``_leaf``), and that is what runs on JAX, CuPy and
array-api-strict.  On NumPy a pure Adam update makes four fresh arrays per
parameter and streams each of its twelve elementwise passes through memory:
at MNIST size (234k parameters) that is ~0.75 ms, 0.55x of the whole SGD step.

When the caller *donates* the parameters and the optimizer state (JAX's
``donate_argnums``; on NumPy, ``backend.jit(step, donate_argnums=(0, 1))``
or ``fit``), the optimizer may overwrite them, and this kernel does: the
same operations in the same order as ``Adam._leaf`` (so the results are
equal bit for bit, which ``tests/test_optimizers.py`` checks), written with
``out=`` into the donated arrays and two scratch buffers, one cache-sized
chunk at a time so every pass stays in the L2 cache (PyTorch's "fused"
optimizers do the same on CPU).  Parameters and slots must be C-contiguous
ndarrays; those under ``MIN_SIZE`` elements are updated together by
:func:`adam_many` (one pass over all of them: a small model's update is
mostly per-call overhead), larger ones one by one, in chunks.

Where the optional C extension ``backends._fused`` was built at install
(``setup.py``; it needs a C compiler), each parameter's update is instead one
pass of a C loop doing the same operations in the same order and precision,
compiled without fused multiply-adds: again the same bits, and the tests run
against both.  The one difference: the C loop flushes subnormal values
(below 1.2e-38 in float32) to zero, as XLA does on JAX.  Moments decay into
that range where a gradient stays near zero, and then every operation on
them costs ~100 cycles (M Adam, after ~800 steps: 1.15 -> 2.6 ms per step
without flushing, 1.12 ms with).  Without it, the NumPy passes below run.

Measured (M, 234k parameters, 2-core CPU): the Adam update alone 889 us pure,
666-766 us with the NumPy passes below, 130-190 us with the C loop (Adam/SGD
step time 1.6 -> 1.07).  SGD has a kernel only with the C loop (see
:func:`has_sgd`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from . import _fused  # the one-pass C loop (optional, see setup.py)
except ImportError:  # not built: the NumPy passes below, same bits
    _fused = None

CHUNK = 32768  # elements: p, g, two slots and two scratch chunks ~ 0.8 MB of float32
MIN_SIZE = 16384  # smaller parameters are updated together (adam_many)


def _scratch(dtype: Any, cache: dict = {}) -> tuple[np.ndarray, np.ndarray]:  # noqa: B006
    bufs = cache.get(dtype)
    if bufs is None:
        bufs = cache[dtype] = (np.empty(CHUNK, dtype), np.empty(CHUNK, dtype))
    return bufs


def contiguous(*arrays: np.ndarray) -> bool:
    """True if every one is a C-contiguous ndarray (not a NumPy scalar) in
    native byte order: then ``reshape(-1)`` is a view and writes through it
    reach the array, and the C loop can read it."""
    return all(type(a) is np.ndarray and a.flags.c_contiguous and a.dtype.isnative for a in arrays)


def _chunks(*arrays: np.ndarray):
    flat = [a.reshape(-1) for a in arrays]  # views: the arrays are C-contiguous
    for start in range(0, flat[0].size, CHUNK):
        yield [f[start : start + CHUNK] for f in flat]


def _moments_and_step(g, m, v, t, u, alpha_neg, c1: float, c2: float, eps: float) -> None:
    """``Adam._leaf``'s operations, in its order: ``m`` and ``v`` updated in
    place, the step ``-alpha * m / (sqrt(v) + eps)`` written to ``t``
    (``u``: scratch of the same size)."""
    np.subtract(g, m, out=t)
    t *= c1
    m += t  # m + (g - m) * c1
    np.multiply(g, g, out=t)
    t -= v
    t *= c2
    v += t  # v + (g**2 - v) * c2
    np.sqrt(v, out=u)
    u += eps  # sqrt(v) + eps
    np.multiply(m, alpha_neg, out=t)
    t /= u


def _apply(p, step, keep) -> None:
    if keep is not None:
        p *= keep  # AdamW: p * (1 - lr * wd)
    p += step


def adam(p, g, m, v, alpha_neg, keep, c1: float, c2: float, eps: float) -> None:
    """``Adam._leaf`` (no amsgrad) in place: ``p``, ``m``, ``v`` are overwritten."""
    if _fused is not None and p.dtype.char in "fd":  # float32, float64
        _fused.adam(p, np.ascontiguousarray(g, p.dtype), m, v, alpha_neg, keep, c1, c2, eps)
        return
    t_buf, u_buf = _scratch(p.dtype)
    for pc, gc, mc, vc in _chunks(p, g, m, v):
        t = t_buf[: pc.size]
        _moments_and_step(gc, mc, vc, t, u_buf[: pc.size], alpha_neg, c1, c2, eps)
        _apply(pc, t, keep)


def flatten(arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(buffer, views)``: a new 1-d buffer holding the arrays' values one
    after the other, and a view of it shaped like each array."""
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    views, start = [], 0
    for a in arrays:
        views.append(flat[start : start + a.size].reshape(a.shape))
        start += a.size
    return flat, views


def adam_many(ps, gs, m_flat, v_flat, alpha_neg, keep, c1: float, c2: float, eps: float) -> None:
    """:func:`adam` for many small parameters at once (a small model's step
    is mostly per-call overhead): their moments are consecutive views of
    ``m_flat`` / ``v_flat`` (see :func:`flatten`), so the moment and step
    maths is one pass over all of them; only ``p += step`` is per parameter.
    Same operations, same bits."""
    if _fused is not None and m_flat.dtype.char in "fd":
        try:  # one C call for all (it checks every buffer before writing any)
            _fused.adam_list(ps, gs, m_flat, v_flat, alpha_neg, keep, c1, c2, eps)
            return
        except (TypeError, ValueError):
            pass  # e.g. a non-contiguous gradient: one call per parameter
        start = 0
        for p, g in zip(ps, gs, strict=True):
            end = start + p.size
            _fused.adam(
                p, np.ascontiguousarray(g, p.dtype), m_flat[start:end], v_flat[start:end],
                alpha_neg, keep, c1, c2, eps,
            )  # fmt: skip
            start = end
        return
    g_flat = np.concatenate([g.reshape(-1) for g in gs])
    t, u = np.empty_like(g_flat), np.empty_like(g_flat)
    _moments_and_step(g_flat, m_flat, v_flat, t, u, alpha_neg, c1, c2, eps)
    start = 0
    for p in ps:
        _apply(p, t[start : start + p.size].reshape(p.shape), keep)
        start += p.size


def has_sgd() -> bool:
    """True where SGD has an in-place kernel: only the C loop.  (SGD with
    NumPy passes in place was tried: its update alone was 7% faster, whole
    steps 10-15% slower, so without the C loop SGD stays pure.)"""
    return _fused is not None


def sgd(p, g, velocity, neg_lr, momentum: float, nesterov: bool) -> None:
    """``SGD._leaf`` in place (C loop only, see :func:`has_sgd`): ``p`` and
    ``velocity`` (None without momentum) are overwritten."""
    _fused.sgd(p, np.ascontiguousarray(g, p.dtype), velocity, neg_lr, momentum, nesterov)


def _relu_grad(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dy * astype(x > 0, dy.dtype)``, ReLU's backward, in one pass of the C
    loop (same bits: a multiply by exactly 1 or 0) instead of three passes
    and three temporaries; NumPy's expression where the C loop does not take
    the arrays (other dtypes or shapes, not C-contiguous)."""
    if dy.shape == x.shape:
        out = np.empty(dy.shape, dy.dtype)
        try:
            _fused.relu_grad(dy, x, out)
            return out
        except (TypeError, ValueError):
            pass
    return dy * np.astype(x > 0, dy.dtype)


def _one_hot(labels: np.ndarray, k: int, dtype: Any) -> np.ndarray:
    """``astype(labels[:, None] == arange(k), dtype)`` (sparse cross-entropy's
    targets; a label outside ``0..k-1`` gives a row of zeros) in one pass of
    the C loop instead of a broadcast comparison and a cast (~9 us at S's
    300 x 3); NumPy's expression for what the loop does not take."""
    out = np.empty((labels.shape[0], k), dtype)
    try:
        _fused.one_hot(labels, out)
        return out
    except (TypeError, ValueError, IndexError):
        return np.astype(labels[:, None] == np.arange(k, dtype=labels.dtype), dtype)


def _argmax_hits(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``sum(astype(argmax(scores, axis=-1) == labels, scores.dtype))`` (the
    sparse accuracy's count) by one call of the C loop instead of four NumPy
    calls (inside a training step at M: 6.1 us instead of 16.5, the four
    taking 2.8 us when called in a loop: inside a step they run cold);
    NumPy's expression for what the loop does not take."""
    try:
        return np.asarray(_fused.argmax_hits(scores, labels), dtype=scores.dtype)
    except (TypeError, ValueError):
        return np.sum(np.astype(np.argmax(scores, axis=-1) == labels, scores.dtype))


def _threefry_words(k0: int, k1: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``tinynet.random._words``: the two uint32 output words of Threefry-2x32
    with key ``(k0, k1)`` on counters ``(0, i)``, ``i < n``, by one pass of
    the C loop (the same integer operations: the same bits)."""
    w0, w1 = np.empty(n, np.uint32), np.empty(n, np.uint32)
    _fused.threefry_words(k0, k1, w0, w1)
    return w0, w1


# see backends.fused
relu_grad = None if _fused is None else _relu_grad
one_hot = None if _fused is None else _one_hot
threefry_words = None if _fused is None else _threefry_words
argmax_hits = None if _fused is None else _argmax_hits


def sgd_many(ps, gs, v_flat, neg_lr, momentum: float, nesterov: bool) -> None:
    """:func:`sgd` for many small parameters, whose velocities (if any) are
    consecutive views of ``v_flat`` (see :func:`flatten`)."""
    try:  # one C call for all (it checks every buffer before writing any)
        _fused.sgd_list(ps, gs, v_flat, neg_lr, momentum, nesterov)
        return
    except (TypeError, ValueError):
        pass  # e.g. a non-contiguous gradient: one call per parameter
    start = 0
    for p, g in zip(ps, gs, strict=True):
        end = start + p.size
        v = None if v_flat is None else v_flat[start:end]
        _fused.sgd(p, np.ascontiguousarray(g, p.dtype), v, neg_lr, momentum, nesterov)
        start = end
