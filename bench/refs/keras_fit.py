"""Reference: Keras 3 ``model.fit`` on the JAX backend.

A block of N steps is one ``fit`` call (``epochs=1``, ``shuffle=False``) over
a fixed data set of N batches, so the per-step time includes fit's own
per-step work and its fixed per-call cost divided by N -- it is "fit per-step
time", not a bare step.  Dense layers with ReLU, a linear output layer and
``SparseCategoricalCrossentropy(from_logits=True)``; ``keras.optimizers.SGD``
/ ``Adam(epsilon=1e-7)``.  ``KERAS_BACKEND=jax`` is set before the import.
"""

from __future__ import annotations

import os

import numpy as np


def available(device: str) -> tuple[bool, str]:
    backend = os.environ.setdefault("KERAS_BACKEND", "jax")
    if backend != "jax":
        return False, f"KERAS_BACKEND={backend} (this reference is Keras on JAX)"
    try:
        import keras  # noqa: F401
    except ImportError:
        return False, "keras is not installed (pip install keras)"
    if device == "gpu":
        from .jax_common import jax_gpu_available

        if not jax_gpu_available():
            return False, "JAX sees no GPU"
    return True, ""


class Runner:
    def __init__(self, config, opt, x, y, params, device="cpu"):
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        layers = [keras.Input((config.sizes[0],))]
        for i, (W, _) in enumerate(params):
            last = i == len(params) - 1
            layers.append(keras.layers.Dense(W.shape[1], activation=None if last else "relu"))
        self.model = keras.Sequential(layers)
        self.model.set_weights([a for W, b in params for a in (W, b)])
        if opt.name == "sgd":
            optimizer = keras.optimizers.SGD(learning_rate=opt.lr)
        else:
            optimizer = keras.optimizers.Adam(
                learning_rate=opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon
            )
        self.model.compile(
            optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        self.x, self.y, self.batch = x, y, config.batch
        self._data: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _dataset(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        data = self._data.get(n)
        if data is None:
            data = self._data[n] = (np.tile(self.x, (n, 1)), np.tile(self.y, n))
        return data

    def run(self, n: int) -> float:
        x, y = self._dataset(n)
        history = self.model.fit(x, y, batch_size=self.batch, epochs=1, shuffle=False, verbose=0)
        return float(history.history["loss"][-1])
