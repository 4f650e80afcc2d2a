"""The reference CNN every implementation of ``bench/cnn.py`` trains.

Conv2D(32, 3, relu) - MaxPool2 - Conv2D(64, 3, relu) - MaxPool2 - Flatten -
Dense(128, relu) - Dense(10) logits, sparse categorical cross-entropy from
the logits, Adam (lr 1e-3, Keras form), batch 128, float32, input 28x28x1
channels-last (NHWC).  "valid" convolutions, 2x2 pooling with stride 2
(11x11 -> 5x5 drops the last row and column, as Keras and PyTorch do).

Shapes per sample: 28x28x1 -> 26x26x32 -> 13x13x32 -> 11x11x64 -> 5x5x64 ->
1600 -> 128 -> 10.

Parameters are a list of ``(W, b)`` float32 NumPy pairs in tinynet's (and
Keras') layouts: conv ``W`` (kh, kw, in_channels, filters), Dense ``W``
(in, out) whose 1600 input rows are in Flatten's (h, w, c) order.  Each
reference converts them to its own layout once, when it is built.

Imports NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

BATCH = 128
INPUT = (28, 28, 1)
CLASSES = 10
CONV = ((3, 1, 32), (3, 32, 64))  # (kernel, in_channels, filters)
DENSE = ((5 * 5 * 64, 128), (128, CLASSES))  # (in, out)


def make_data(n: int = BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 (n, 28, 28, 1) in [0, 1), y int64 (n,) in [0, 10))``."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *INPUT), dtype=np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int64)
    return x, y


def init_params(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W1, b1), (W2, b2), (W3, b3), (W4, b4)]`` float32: conv1, conv2,
    dense1, dense2.  He-uniform for the ReLU layers (fan-in = kh * kw *
    in_channels for a convolution), Glorot-uniform for the output layer,
    zero biases.  Every implementation starts from these numbers."""
    rng = np.random.default_rng(seed + 2000)
    params = []
    for k, c_in, c_out in CONV:
        limit = math.sqrt(6.0 / (k * k * c_in))
        W = rng.uniform(-limit, limit, (k, k, c_in, c_out)).astype(np.float32)
        params.append((W, np.zeros(c_out, np.float32)))
    for i, (n_in, n_out) in enumerate(DENSE):
        last = i == len(DENSE) - 1
        limit = math.sqrt(6.0 / (n_in + n_out)) if last else math.sqrt(6.0 / n_in)
        W = rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)
        params.append((W, np.zeros(n_out, np.float32)))
    return params


def dense1_rows_chw(W: np.ndarray) -> np.ndarray:
    """Dense1's ``W`` (1600, 128) with its input rows reordered from
    channels-last Flatten order (h, w, c) to channels-first (c, h, w), for
    libraries that flatten NCHW feature maps (PyTorch)."""
    return np.ascontiguousarray(W.reshape(5, 5, 64, -1).transpose(2, 0, 1, 3).reshape(1600, -1))


def flops(batch: int = BATCH) -> int:
    """Multiply-add FLOPs (2 per MAC) of one training step: forward, the
    weight gradient of every layer and the input gradient of every layer
    but the first (nobody needs the gradient of the data).  Pooling, ReLU,
    the loss and the update are not counted."""
    per_sample_fwd = []
    h = INPUT[0]
    for k, c_in, c_out in CONV:
        h_out = h - k + 1
        per_sample_fwd.append(2 * h_out * h_out * k * k * c_in * c_out)
        h = h_out // 2
    per_sample_fwd += [2 * n_in * n_out for n_in, n_out in DENSE]
    total = 3 * sum(per_sample_fwd) - per_sample_fwd[0]
    return batch * total
