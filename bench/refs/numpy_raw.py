"""Reference: the classic from-scratch NumPy training step, done well.

What a careful hand-written MLP looks like: activations kept from the forward
pass, ReLU applied in place, softmax in place on the logits, the fused
softmax/cross-entropy gradient ``dz = p; dz[rows, y] -= 1; dz /= n``, and
in-place parameter updates.  Adam keeps its moments in preallocated arrays
and uses the usual temporaries for the update expression (Keras form:
epsilon is added to ``sqrt(v)`` of the uncorrected ``v``).

Imports NumPy only (the peak-memory worker runs it in a fresh process).
"""

from __future__ import annotations

import math

import numpy as np


class NumpyMLP:
    def __init__(self, params, opt):
        self.W = [np.array(W, dtype=np.float32) for W, _ in params]
        self.b = [np.array(b, dtype=np.float32) for _, b in params]
        self.opt = opt
        self.t = 0
        if opt.name == "adam":
            self.m = [np.zeros_like(p) for p in self.W + self.b]
            self.v = [np.zeros_like(p) for p in self.W + self.b]
        self._rows = None

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        acts = self.forward(x)
        loss, dz = self.head(acts.pop(), y)
        grads_W, grads_b = self.backward(acts, dz)
        self.update(grads_W, grads_b)
        return loss

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """``[x, h1, ..., logits]``: the input of every layer, then the logits."""
        W, b = self.W, self.b
        last = len(W) - 1
        acts = [x]
        h = x
        for i in range(last + 1):
            z = h @ W[i]
            z += b[i]
            if i < last:
                np.maximum(z, 0, out=z)
            acts.append(z)
            h = z
        return acts

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
        return loss, dz

    def backward(self, acts: list[np.ndarray], dz: np.ndarray):
        """Gradients of every layer; ``acts[i]`` is the input of layer ``i``."""
        W = self.W
        last = len(W) - 1
        grads_W = [None] * (last + 1)
        grads_b = [None] * (last + 1)
        for i in range(last, -1, -1):
            a = acts[i]
            grads_W[i] = a.T @ dz
            grads_b[i] = dz.sum(axis=0)
            if i > 0:
                da = dz @ W[i].T
                da *= a > 0  # ReLU derivative (a is the ReLU output)
                dz = da
        return grads_W, grads_b

    def update(self, gW, gb) -> None:
        opt = self.opt
        params = self.W + self.b
        grads = gW + gb
        if opt.name == "sgd":
            for p, g in zip(params, grads, strict=True):
                g *= -opt.lr
                p += g
            return
        self.t += 1
        t = self.t
        b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
        alpha = opt.lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= alpha * m / (np.sqrt(v) + eps)


class Runner:
    def __init__(self, config, opt, x, y, params, device="cpu"):
        self.params, self.opt = params, opt
        self.mlp = NumpyMLP(params, opt)
        self.x, self.y = x, y

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        self.mlp = NumpyMLP(self.params, self.opt)

    def run(self, n: int) -> float:
        loss = None
        for _ in range(n):
            loss = self.mlp.step(self.x, self.y)
        return float(loss)


def available(device: str) -> tuple[bool, str]:
    return True, ""
