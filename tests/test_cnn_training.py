"""Issue 18's cross-backend check: a convolutional network with batch
normalisation and dropout, trained for 2 shuffled epochs, ends with the same
parameters and batch-norm statistics on every backend as on NumPy (float64
to 1e-12, float32 to 1e-4).  The convolutions before a BatchNorm have no
bias, as usual: its gradient is exactly zero, so Adam would only amplify
rounding noise in it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import fake_devices_env, to_numpy

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


def test_jax_finds_the_convolution_in_a_nested_program():
    """What decides the JAX CPU backend's per-step blocks: a step with a
    convolution runs as a Python loop over a one-step program there."""
    jax = pytest.importorskip("jax")
    from tinynet.backends._jax import _has_conv

    def conv(x, W):
        return jax.lax.conv_general_dilated(x, W, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip

    x, W = np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 2), np.float32)
    nested = jax.jit(lambda x, W: jax.grad(lambda W: conv(x, W).sum())(W))
    assert _has_conv(jax.make_jaxpr(conv)(x, W).jaxpr)
    assert _has_conv(jax.make_jaxpr(lambda x, W: nested(x, W) * 2)(x, W).jaxpr)
    assert not _has_conv(jax.make_jaxpr(lambda x, W: x.reshape(16) @ np.ones((16, 2)))(x, W).jaxpr)


CNN_PARALLEL_WORKER = """
import json

import numpy as np
import tinynet as tn

rng = np.random.default_rng(2)
x, y = rng.normal(size=(44, 8, 8, 1)), rng.integers(0, 3, 44)


def train(devices):
    model = tn.Sequential(
        [tn.Conv2D(4, 3, use_bias=False), tn.BatchNorm(momentum=0.9), tn.ReLU(),
         tn.MaxPool2D(2), tn.Flatten(), tn.Dense(3), tn.Softmax()],
        input_shape=(8, 8, 1), dtype="float64", seed=5, backend="jax")
    model.fit(x, y, loss="sparse_categorical_crossentropy", epochs=2, batch_size=8,
              optimizer=tn.optimizers.SGD(lr=0.1), verbose=0, seed=1, devices=devices,
              nan_guard=True)
    host = lambda tree: [{k: tn.to_numpy(v).tolist() for k, v in d.items()} for d in tree]
    return {"params": host(model.params), "state": host(model.state)}


print(json.dumps([train(None), train(2)]))
"""


def test_data_parallel_cnn_equals_one_device():
    """``fit(devices=2)`` on a CNN with BatchNorm (fake CPU devices, in a
    subprocess: JAX fixes its device count at start) ends with one device's
    parameters and moving statistics (44 rows in batches of 8: the ragged
    last batch of 4 splits too), with the NaN guard's status on the devices."""
    pytest.importorskip("jax", reason="data parallelism needs jax")
    proc = subprocess.run([sys.executable, "-c", CNN_PARALLEL_WORKER], env=fake_devices_env(2),
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not np.allclose(one["state"][1]["moving_var"], 1.0)
    for kind in ("params", "state"):
        for i, (a, b) in enumerate(zip(two[kind], one[kind], strict=True)):
            for name in b:
                np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-13,
                                           err_msg=f"{kind}[{i}][{name}]")  # fmt: skip


SWAPPED = {  # input shape, layers; a ReLU before a max pooling runs after it
    "2d": ((9, 9, 2), lambda: [
        tn.Conv2D(4, 3, padding="same"), tn.ReLU(), tn.MaxPool2D(3, strides=2, padding="same"),
        tn.Conv2D(5, 2), tn.ReLU(), tn.GlobalMaxPool2D(), tn.Dense(3)]),
    "1d": ((11, 3), lambda: [
        tn.Conv1D(4, 3), tn.ReLU(), tn.MaxPool1D(2), tn.ReLU(), tn.MaxPool1D(2, strides=1),
        tn.Flatten(), tn.Dense(3)]),
}  # fmt: skip
ORDERS = {"2d": [0, 2, 1, 3, 5, 4, 6], "1d": [0, 2, 1, 4, 3, 5, 6]}


@pytest.mark.parametrize("name", list(SWAPPED))
def test_a_relu_before_max_pooling_runs_after_it_with_the_same_numbers(backend, name):
    """``core.run_order`` swaps each ReLU + max-pool pair (not on JAX, which
    compiles); loss, gradients and predictions equal those of the layers run
    as written (``record=True`` runs them so), on inputs where many windows
    hold no positive value (the gradients to rounding: a sum may run in
    another order)."""
    from tinynet import core

    shape, make = SWAPPED[name]
    model = tn.Sequential(make(), input_shape=shape, dtype="float64", seed=5)
    order = list(range(len(model.layers))) if backend.compiles else ORDERS[name]
    assert core.run_order(model.layers, backend) == order
    rng = np.random.default_rng(3)
    x = backend.asarray(rng.normal(size=(6, *shape)) - 0.3, "float64")
    y = backend.asarray(rng.integers(0, 3, 6), "int64")
    loss = tn.losses.SparseCategoricalCrossentropy(from_logits=True)
    params, state = model.params, model.state
    swapped = core.make_loss_and_grads(model.layers, loss, backend)(params, state, x, y)
    as_written = core.make_loss_and_grads(model.layers, loss, backend, record=True)(
        params, state, x, y
    )
    assert float(to_numpy(swapped[0])) == float(to_numpy(as_written[0]))
    np.testing.assert_array_equal(to_numpy(swapped[3]), to_numpy(as_written[3]))
    relu_out = to_numpy(as_written[4]["outputs"][1])
    assert (relu_out == 0).any() and (relu_out > 0).any()
    for i, (got, want) in enumerate(zip(swapped[1], as_written[1], strict=True)):
        for key in want:
            assert np.abs(to_numpy(want[key])).max() > 0, f"layer {i} {key} gets a gradient"
            # equal up to summation order (torch sums a gradient of another layout)
            np.testing.assert_allclose(to_numpy(got[key]), to_numpy(want[key]), rtol=1e-13)
    h = x
    for i, layer in enumerate(model.layers):
        h, _, _ = layer.forward(params[i], state[i], h, backend)
    out, _ = core.make_forward(model.layers, backend)(params, state, x)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(h))
