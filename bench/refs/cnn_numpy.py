"""Reference: the reference CNN written by hand in NumPy, done well.

A good, plain from-scratch NumPy CNN (no tricks a careful author would not
use, no strawman):

* im2col by ``sliding_window_view``, transposed so the channels stay the
  fastest axis: rows ``(n, y, x)``, columns ``(kh, kw, c)``, which is exactly
  ``W.reshape(kh * kw * c, filters)`` of the (kh, kw, c, filters) kernel;
  one copy per convolution, then one BLAS matmul;
* col2im (the input gradient) by 9 strided adds of the column gradient
  into the padded input's shape;
* 2x2 max-pooling as the maximum of the four strided sub-grids, its
  backward with a boolean mask built in the forward pass.  The mask is
  ``(a == max) & (max > 0)`` on the ReLU output ``a``: it also is the ReLU's
  derivative, and ties (which only happen between ReLU zeros) get no
  gradient, as the ReLU would zero them anyway;
* softmax / cross-entropy in place on the logits, ``dz = p; dz[rows, y] -= 1``;
* Adam in the Keras form (epsilon added to ``sqrt(v)`` of the uncorrected
  ``v``), moments kept in preallocated arrays, in-place parameter updates.

``NumpyCNN(params, opt, dtype, adam_form)`` also serves as the float64
reference of ``bench/cnn.py``'s loss check; ``adam_form="hat"`` adds epsilon
to ``sqrt(v_hat)`` instead, as PyTorch and optax do (``eps * sqrt(1 -
beta_2**t)`` in the Keras form): with epsilon 1e-7 the two forms already
differ by more than float32 rounding after three steps (bench/README.md).
Imports NumPy only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def im2col(a: np.ndarray, k: int) -> np.ndarray:
    """``(n, h, w, c)`` -> ``(n * ho * wo, k * k * c)`` for a valid k x k
    convolution (stride 1); columns in (kh, kw, c) order."""
    n, h, w, c = a.shape
    ho, wo = h - k + 1, w - k + 1
    windows = sliding_window_view(a, (k, k), axis=(1, 2))  # (n, ho, wo, c, k, k), a view
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c)


def col2im(dcols: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """The input gradient of :func:`im2col`: ``dcols`` ``(n * ho * wo, k * k * c)``
    summed back into an ``(n, h, w, c)`` array by ``k * k`` strided adds."""
    n, h, w, c = shape
    ho, wo = h - k + 1, w - k + 1
    d6 = dcols.reshape(n, ho, wo, k, k, c)
    out = np.zeros(shape, dcols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, i : i + ho, j : j + wo, :] += d6[:, :, :, i, j, :]
    return out


def max_pool(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 / stride 2 max-pooling of the ReLU output ``a`` ``(n, h, w, c)``
    (odd sizes drop the last row / column).  Returns the pooled ``(n, h//2,
    w//2, c)`` array and the backward mask ``(n, h//2, 2, w//2, 2, c)``
    (see the module docstring)."""
    n, h, w, c = a.shape
    hp, wp = h // 2, w // 2
    a = a[:, : 2 * hp, : 2 * wp, :]
    p = np.maximum(a[:, 0::2, 0::2], a[:, 0::2, 1::2])
    np.maximum(p, a[:, 1::2, 0::2], out=p)
    np.maximum(p, a[:, 1::2, 1::2], out=p)
    a6 = a.reshape(n, hp, 2, wp, 2, c)  # a view, also when rows / columns were dropped
    mask = a6 == p[:, :, None, :, None, :]
    mask &= (p > 0)[:, :, None, :, None, :]
    return p, mask


def max_pool_backward(dp: np.ndarray, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Gradient w.r.t. the pre-activation of the ReLU before the pooling
    (``mask`` holds both derivatives), shaped ``shape`` ``(n, h, w, c)``."""
    n, h, w, c = shape
    hp, wp = h // 2, w // 2
    dp6 = dp[:, :, None, :, None, :]
    if h == 2 * hp and w == 2 * wp:
        return (mask * dp6).reshape(shape)
    out = np.zeros(shape, dp.dtype)
    view = out[:, : 2 * hp, : 2 * wp, :].reshape(n, hp, 2, wp, 2, c, copy=False)
    np.multiply(mask, dp6, out=view)
    return out


class NumpyCNN:
    """The reference CNN (``refs/cnn_common.py``) with its own training step."""

    def __init__(self, params, opt, dtype=np.float32, adam_form="keras"):
        if adam_form not in ("keras", "hat"):
            raise ValueError(f"adam_form must be 'keras' or 'hat', received {adam_form!r}")
        self.adam_form = adam_form
        self.dtype = np.dtype(dtype)
        # conv kernels as (kh * kw * c, filters) matrices: rows in im2col's order
        self.W = [np.array(W, dtype=self.dtype).reshape(-1, W.shape[-1]) for W, _ in params]
        self.b = [np.array(b, dtype=self.dtype) for _, b in params]
        self.k = [W.shape[0] for W, _ in params[:2]]
        self.opt = opt
        self.t = 0
        self.m = [np.zeros_like(p) for p in self.W + self.b]
        self.v = [np.zeros_like(p) for p in self.W + self.b]
        self._rows = None

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        W, b = self.W, self.b
        n = x.shape[0]
        x = np.asarray(x, self.dtype)
        # forward
        k1, k2 = self.k
        cols1 = im2col(x, k1)
        z1 = cols1 @ W[0]
        z1 += b[0]
        np.maximum(z1, 0, out=z1)
        h1 = x.shape[1] - k1 + 1
        a1 = z1.reshape(n, h1, h1, -1)
        p1, mask1 = max_pool(a1)
        cols2 = im2col(p1, k2)
        z2 = cols2 @ W[1]
        z2 += b[1]
        np.maximum(z2, 0, out=z2)
        h2 = p1.shape[1] - k2 + 1
        a2 = z2.reshape(n, h2, h2, -1)
        p2, mask2 = max_pool(a2)
        flat = p2.reshape(n, -1)
        a3 = flat @ W[2]
        a3 += b[2]
        np.maximum(a3, 0, out=a3)
        logits = a3 @ W[3]
        logits += b[3]
        loss, dz4 = self.head(logits, y)
        # backward
        gW, gb = [None] * 4, [None] * 4
        gW[3] = a3.T @ dz4
        gb[3] = dz4.sum(axis=0)
        dz3 = dz4 @ W[3].T
        dz3 *= a3 > 0
        gW[2] = flat.T @ dz3
        gb[2] = dz3.sum(axis=0)
        dp2 = (dz3 @ W[2].T).reshape(p2.shape)
        dz2 = max_pool_backward(dp2, mask2, a2.shape).reshape(z2.shape)
        gW[1] = cols2.T @ dz2
        gb[1] = dz2.sum(axis=0)
        dp1 = col2im(dz2 @ W[1].T, p1.shape, k2)
        dz1 = max_pool_backward(dp1, mask1, a1.shape).reshape(z1.shape)
        gW[0] = cols1.T @ dz1  # the first layer needs no input gradient
        gb[0] = dz1.sum(axis=0)
        self.update(gW, gb)
        return loss

    def head(self, logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Softmax + cross-entropy in place on the logits: ``(loss, dL/dlogits)``."""
        n = logits.shape[0]
        if self._rows is None or self._rows.shape[0] != n:
            self._rows = np.arange(n)
        rows = self._rows
        p = logits
        p -= p.max(axis=1, keepdims=True)
        np.exp(p, out=p)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(np.maximum(p[rows, y], 1e-30)))
        dz = p
        dz[rows, y] -= 1
        dz /= n
        return float(loss), dz

    def update(self, gW, gb) -> None:
        """Adam in place, Keras form (or epsilon on ``sqrt(v_hat)``, see above)."""
        opt = self.opt
        self.t += 1
        t = self.t
        b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
        if self.adam_form == "hat":
            eps *= math.sqrt(1.0 - b2**t)
        alpha = opt.lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        for p, g, m, v in zip(self.W + self.b, gW + gb, self.m, self.v, strict=True):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= alpha * m / (np.sqrt(v) + eps)


class Runner:
    def __init__(self, x, y, params, opt, dtype=np.float32, adam_form="keras"):
        self.params, self.opt, self.dtype, self.adam_form = params, opt, dtype, adam_form
        self.x, self.y = np.asarray(x, dtype), y
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        self.net = NumpyCNN(self.params, self.opt, self.dtype, self.adam_form)

    def run(self, n: int) -> float:
        loss = None
        for _ in range(n):
            loss = self.net.step(self.x, self.y)
        return float(loss)


def available() -> tuple[bool, str]:
    return True, ""
