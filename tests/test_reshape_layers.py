"""Flatten and Reshape on every backend: forward against NumPy's row-major
reshape, the backward as its inverse, inferred sizes, errors, configs, and
a model that reshapes flat data into images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import tinynet as tn

X = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) * 0.25 - 7.0


def _run(layer, backend, x, dtype="float64"):
    y, state, back = layer.forward({}, {}, backend.asarray(x, dtype), backend)
    assert state == {}
    dy = np.sin(np.arange(np.prod(y.shape))).reshape(tuple(y.shape))
    dx, grads = back(backend.asarray(dy, dtype))
    assert grads == {}
    return y, dy, dx


def test_flatten_is_a_row_major_reshape(backend, dtype):
    y, dy, dx = _run(tn.Flatten(), backend, X, dtype)
    assert tuple(y.shape) == (2, 60) and tn.Flatten().output_shape((3, 4, 5)) == (60,)
    assert_close(y, X.reshape(2, 60), dtype, "Flatten forward")
    assert_close(dx, dy.reshape(X.shape), dtype, "Flatten backward")
    y, _, dx = _run(tn.Flatten(), backend, np.arange(3.0))
    assert tuple(y.shape) == (3, 1) and tuple(dx.shape) == (3,)
    assert tn.Flatten().output_shape(()) == (1,)


@pytest.mark.parametrize(
    "target, shape", [((12, 5), (12, 5)), ((-1, 10), (6, 10)), ((5, -1, 2), (5, 6, 2)), (60, (60,))]
)
def test_reshape_with_an_inferred_axis(backend, target, shape):
    layer = tn.Reshape(target)
    assert layer.output_shape((3, 4, 5)) == shape
    y, dy, dx = _run(layer, backend, X)
    assert tuple(y.shape) == (2, *shape)
    np.testing.assert_array_equal(to_numpy(y), X.reshape(2, *shape))
    np.testing.assert_array_equal(to_numpy(dx), dy.reshape(X.shape))


def test_reshape_refuses_sizes_that_do_not_match(backend):
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 1 \(Reshape\) cannot reshape inputs of shape \(None, 3, 4, 5\) "
        r"\(60 values per sample\) to target_shape \(7, 8\), which needs 56 values; pick a "
        r"target_shape with the same number of values$",
    ):
        tn.Sequential([tn.ReLU(), tn.Reshape((7, 8))], input_shape=(3, 4, 5))
    with pytest.raises(ValueError, match=r"target_shape \(-1, 7\), which needs a multiple of 7"):
        tn.Reshape((-1, 7)).output_shape((3, 4, 5))
    with pytest.raises(ValueError, match=r"^Reshape cannot reshape inputs of shape \(None, 3, 4"):
        tn.Reshape((7, 8)).forward({}, {}, backend.asarray(X, "float64"), backend)


@pytest.mark.parametrize("target", [(-1, -1), (0, 5), (3, -2), (), "12", (2.0, 3), (True, 2)])
def test_reshape_refuses_bad_target_shapes(target):
    with pytest.raises(ValueError, match=r"^Reshape: target_shape must be a tuple of positive "):
        tn.Reshape(target)


def test_configs_round_trip():
    for layer in (tn.Flatten(), tn.Reshape((-1, 4)), tn.Reshape([28, 28, 1])):
        config = json.loads(json.dumps(layer.get_config()))
        rebuilt = tn.layers.from_config(config)
        assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()
    assert tn.Reshape([28, 28, 1]).get_config() == {"type": "Reshape", "target_shape": [28, 28, 1]}
    assert tn.Flatten().get_config() == {"type": "Flatten"}


def test_a_model_reshapes_flat_rows_into_images(backend):
    """Reshape in front of a Conv2D gives exactly the gradients of the same
    model fed with images."""
    rng = np.random.default_rng(0)
    images, y = rng.normal(size=(4, 6, 6, 1)), rng.integers(0, 3, 4)

    def model(first, shape):
        layers = [tn.Conv2D(2, 3), tn.ReLU(), tn.Flatten(), tn.Dense(3), tn.Softmax()]
        return tn.Sequential(
            first + layers, input_shape=shape, dtype="float64", seed=4, backend=backend.name
        )

    flat = model([tn.Reshape((6, 6, 1))], (36,))
    plain = model([], (6, 6, 1))
    assert flat.shapes[0] == (6, 6, 1) and flat.output_shape == (3,)
    flat.params[1:] = [dict(p) for p in plain.params]  # layer i's init key depends on i
    loss = "sparse_categorical_crossentropy"
    value, grads = flat.loss_and_grads(images.reshape(4, 36), y, loss)
    value_ref, grads_ref = plain.loss_and_grads(images, y, loss)
    assert_close(value, float(to_numpy(value_ref)), "float64", "loss")
    for got, want in zip(grads[1:], grads_ref):
        for name in want:
            assert_close(got[name], to_numpy(want[name]), "float64", name)
