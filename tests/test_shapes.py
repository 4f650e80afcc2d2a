"""Shapes instead of widths: layers derive their output shapes, any layer may
come first, Dense acts on the last axis of inputs of any rank, and
``model.state`` runs parallel to ``model.params``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, central_fd, to_numpy

import tinynet as tn

X = np.random.default_rng(1).normal(size=(6, 4))


def test_any_layer_may_come_first_and_shapes_are_inferred(backend):
    model = tn.Sequential(
        [tn.Dropout(0.1), tn.Dense(3), tn.ReLU(), tn.Dense(2)], input_shape=(4,), seed=1
    )
    assert model.shapes == [(4,), (3,), (3,), (2,)]
    assert tuple(model.predict(X).shape) == (6, 2)
    assert isinstance(model.state, list) and len(model.state) == len(model.params) == 4
    assert model.state == [{}, {}, {}, {}]
    assert [sorted(p) for p in model.params] == [[], ["W", "b"], [], ["W", "b"]]
    assert tuple(model.params[1]["W"].shape) == (4, 3)
    # inference: Dropout is the identity, so the output is the plain affine chain
    p = [{k: to_numpy(v).astype(np.float64) for k, v in layer.items()} for layer in model.params]
    h = np.maximum(X @ p[1]["W"] + p[1]["b"], 0) @ p[3]["W"] + p[3]["b"]
    assert_close(model.predict(X), h, "float32")


def test_dense_with_stated_and_inferred_widths_gives_the_same_parameters():
    stated = tn.Sequential([tn.Dense(4, 3), tn.ReLU(), tn.Dense(3, 2)], seed=5)
    inferred = tn.Sequential([tn.Dense(3), tn.ReLU(), tn.Dense(2)], input_shape=(4,), seed=5)
    for a, b in zip(stated.params, inferred.params, strict=True):
        for k in a:
            np.testing.assert_array_equal(to_numpy(a[k]), to_numpy(b[k]))


def _dense3d_loss(params: list[dict], x: np.ndarray, y: np.ndarray) -> float:
    h = np.tanh(x @ params[0]["W"] + params[0]["b"])
    out = h @ params[2]["W"] + params[2]["b"]
    return float(np.mean((out - y) ** 2))


def test_dense_on_the_last_axis_of_rank_3_inputs(backend):
    """A sequence model (batch, steps, features): values and gradients
    against a float64 NumPy forward and its central finite differences."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 2))
    model = tn.Sequential(
        [tn.Dense(6), tn.Tanh(), tn.Dense(2)], input_shape=(3, 4), dtype="float64", seed=3
    )
    assert model.output_shape == (3, 2)
    assert tuple(model.predict(x).shape) == (5, 3, 2)
    value, grads = model.loss_and_grads(x, y, "mse")
    params = [{k: to_numpy(v) for k, v in layer.items()} for layer in model.params]
    assert_close(value, _dense3d_loss(params, x, y), "float64", "loss")
    for i in (0, 2):
        for name in ("W", "b"):

            def f(v, i=i, name=name):
                changed = [dict(layer) for layer in params]
                changed[i][name] = v
                return _dense3d_loss(changed, x, y)

            numeric = central_fd(f, params[i][name])
            np.testing.assert_allclose(to_numpy(grads[i][name]), numeric, rtol=1e-6, atol=1e-9)


def test_shape_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"^Sequential: pass input_shape=\.\.\."):
        tn.Sequential([tn.Dense(3)])
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 2 \(Dense\) expects 7 input features but the layer before "
        r"it produces 3; make them agree, e\.g\. Dense\(3, 2\) or Dense\(2\)$",
    ):
        tn.Sequential([tn.Dense(3), tn.ReLU(), tn.Dense(7, 2)], input_shape=(4,))
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of positive integers"):
        tn.Sequential([tn.Dense(3)], input_shape=(4, 0))
    with pytest.raises(ValueError, match=r"^Dense: pass Dense\(units\) or Dense\(in_features"):
        tn.Dense(1, 2, 3)
    with pytest.raises(ValueError, match=r"^Dense: units must be a positive integer"):
        tn.Dense(0)


def test_summary_lists_output_shapes_and_parameter_counts():
    model = tn.Sequential([tn.Dense(3), tn.ReLU(), tn.Dense(2)], input_shape=(4,))
    text = model.summary()
    lines = text.splitlines()
    assert "input shape (None, 4)" in lines[0]
    assert any("(None, 3)" in line and line.rstrip().endswith(" 15") for line in lines)
    assert any("(None, 2)" in line and line.rstrip().endswith(" 8") for line in lines)
    assert lines[-1] == "total parameters: 23"


def test_a_model_saves_and_loads_its_input_shape(tmp_path):
    model = tn.Sequential([tn.Dense(6), tn.Tanh(), tn.Dense(2)], input_shape=(3, 4))
    model.save(tmp_path / "m.safetensors")
    loaded = tn.load(tmp_path / "m.safetensors")
    assert loaded.input_shape == (3, 4) and loaded.shapes == model.shapes
    x = np.ones((2, 3, 4), np.float32)
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(model.predict(x)))
