"""Reference: the reference CNN in Keras 3 on JAX (``KERAS_BACKEND=jax``):
``Conv2D(32, 3, activation="relu")``, ``MaxPooling2D(2)``, ...,
``Dense(10)``; ``compile(Adam(1e-3, epsilon=1e-7),
SparseCategoricalCrossentropy(from_logits=True))`` with Keras' default
``jit_compile`` (the train step is one XLA program on JAX), and one
``model.train_on_batch(x, y)`` per step.  The batch is converted to a JAX
array once (untimed), so a step does no host-to-device copy; each call
returns the loss as a Python float, i.e. waits for the step.

Keras layouts are the common ones, so ``set_weights`` takes the parameters
as they are.  Keras is not reset between timed blocks (no public API for
the optimizer state; it runs on XLA, which flushes denormals).
"""

from __future__ import annotations

import os


def available() -> tuple[bool, str]:
    if os.environ.get("KERAS_BACKEND") != "jax":
        return False, f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')} (needs jax)"
    try:
        import keras  # noqa: F401
    except ImportError:
        return False, "keras is not installed (pip install keras)"
    return True, ""


class Runner:
    def __init__(self, x, y, params, opt):
        import keras

        (W1, _), (W2, _), (W3, _), (W4, _) = params
        layers = keras.layers
        self.model = keras.Sequential(
            [
                keras.Input(x.shape[1:]),
                layers.Conv2D(W1.shape[3], W1.shape[0], activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(W2.shape[3], W2.shape[0], activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(W3.shape[1], activation="relu"),
                layers.Dense(W4.shape[1]),
            ]
        )
        self.model.set_weights([a for W, b in params for a in (W, b)])
        self.model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.x = keras.ops.convert_to_tensor(x)
        self.y = keras.ops.convert_to_tensor(y)

    def run(self, n: int) -> float:
        model, x, y = self.model, self.x, self.y
        loss = None
        for _ in range(n):
            loss = model.train_on_batch(x, y)
        return float(loss)
