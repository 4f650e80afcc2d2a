"""Issue 18's cross-backend check: a convolutional network with batch
normalisation and dropout, trained for 2 shuffled epochs, ends with the same
parameters and batch-norm statistics on every backend as on NumPy (float64
to 1e-12, float32 to 1e-4).  The convolutions before a BatchNorm have no
bias, as usual: its gradient is exactly zero, so Adam would only amplify
rounding noise in it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import to_numpy

import tinynet as tn

TOLERANCE = {"float64": 1e-12, "float32": 1e-4}


def _train(backend_name: str, dtype: str) -> tn.Sequential:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(48, 10, 10, 2))
    y = rng.integers(0, 4, 48)
    model = tn.Sequential(
        [tn.Conv2D(6, 3, padding="same", use_bias=False), tn.BatchNorm(), tn.ReLU(),
         tn.MaxPool2D(2),
         tn.Conv2D(8, 3, strides=2, use_bias=False), tn.BatchNorm(momentum=0.9), tn.Tanh(),
         tn.Dropout(0.25), tn.Flatten(), tn.Dense(16), tn.ReLU(), tn.Dense(4), tn.Softmax()],
        input_shape=(10, 10, 2), dtype=dtype, seed=11, backend=backend_name,
    )  # fmt: skip
    model.fit(x, y, epochs=2, batch_size=12, shuffle=True, seed=3, verbose=0,
              optimizer=tn.optimizers.Adam(lr=0.01),
              loss="sparse_categorical_crossentropy")  # fmt: skip
    return model


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_normalised_cnn_trains_to_the_same_numbers_on_every_backend(backend, dtype):
    reference = _train("numpy", dtype)
    model = _train(backend.name, dtype)
    tol = TOLERANCE[dtype]
    untrained = tn.Sequential(reference.layers, input_shape=(10, 10, 2), dtype=dtype, seed=11)
    for i, (got, want, start) in enumerate(zip(model.params, reference.params, untrained.params)):
        for name in want:
            want_np = to_numpy(want[name])
            assert not np.allclose(want_np, to_numpy(start[name])), f"layer {i} {name} trained"
            np.testing.assert_allclose(
                to_numpy(got[name]), want_np, rtol=tol, atol=tol,
                err_msg=f"layer {i} {name} on {backend.name} ({dtype})",
            )  # fmt: skip
    moved = 0
    for i, (got, want) in enumerate(zip(model.state, reference.state)):
        for name in want:
            want_np = to_numpy(want[name])
            moved += not np.allclose(want_np, 0.0 if name == "moving_mean" else 1.0)
            np.testing.assert_allclose(
                to_numpy(got[name]), want_np, rtol=tol, atol=tol,
                err_msg=f"layer {i} state {name} on {backend.name} ({dtype})",
            )  # fmt: skip
    assert moved == 4  # both BatchNorms' mean and variance were updated
