"""BatchNorm and LayerNorm on every backend and dtype, for vectors ``(batch,
C)``, images ``(batch, H, W, C)`` and sequences ``(batch, T, D)``.

References, each independent of tinynet's maths: float64 NumPy formulas
written here, PyTorch autograd (``torch.nn.functional.batch_norm`` /
``layer_norm``, when torch is installed), ``jax.vjp`` of ``jax.numpy``
formulas, central finite differences of the layer's own forward, a float64
NumPy recurrence of the moving statistics, and numbers computed by Keras
(tests/keras_norm_reference.py).  Then the layers inside models: ``fit``
changes the state, ``evaluate``/``predict`` use the moving statistics,
checkpoints carry the state, callbacks see it, every backend trains to the
same numbers, and ``fit(devices=2)`` equals one device.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keras_norm_reference as kref
import numpy as np
import pytest
from helpers import (
    assert_close,
    assert_fd_close,
    central_fd,
    fake_devices_env,
    to_numpy,
    torch_autograd,
)

import tinynet
from tinynet import random as tnrandom

EPS = 1e-3  # Keras's default epsilon for both layers
SHAPES = {"vectors": (6, 3), "images": (2, 3, 2, 3), "sequences": (3, 4, 2)}


def _data(shape, seed=0):
    """``(x, dy, gamma, beta)``: features with different means and scales."""
    rng = np.random.default_rng(seed)
    width = shape[-1]
    x = rng.normal(size=shape) * (0.5 + np.arange(width)) + np.linspace(-1.0, 2.0, width)
    dy = rng.normal(size=shape)
    gamma = 1.0 + 0.3 * rng.normal(size=width)
    beta = 0.2 * rng.normal(size=width)
    return x, dy, gamma, beta


def _rounded(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _params(backend, dtype, gamma, beta):
    return {"gamma": backend.asarray(gamma, dtype), "beta": backend.asarray(beta, dtype)}


def _bn_state(backend, dtype, mean, var):
    return {"moving_mean": backend.asarray(mean, dtype), "moving_var": backend.asarray(var, dtype)}


# ------------------------------------------------------------ float64 NumPy references


def bn_train_ref(x, gamma, beta, eps=EPS):
    """Training-mode batch norm: statistics over every axis but the last."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)  # biased
    return (x - mean) / np.sqrt(var + eps) * gamma + beta, mean, var


def bn_infer_ref(x, gamma, beta, mean, var, eps=EPS):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def ln_ref(x, gamma, beta, eps=EPS):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


# ------------------------------------------------------------ forward


@pytest.mark.parametrize("kind", SHAPES)
def test_batchnorm_training_forward_and_new_state(backend, dtype, kind):
    x, _, gamma, beta = _data(SHAPES[kind])
    mm, mv = np.array([0.3, -0.2, 0.1])[: x.shape[-1]], np.array([0.5, 2.0, 1.5])[: x.shape[-1]]
    layer = tinynet.BatchNorm()
    y, state, _ = layer.forward(
        _params(backend, dtype, gamma, beta),
        _bn_state(backend, dtype, mm, mv),
        backend.asarray(x, dtype),
        backend,
        True,
    )
    xr = _rounded(x, dtype)
    y_ref, mean, var = bn_train_ref(xr, _rounded(gamma, dtype), _rounded(beta, dtype))
    assert to_numpy(y).dtype == np.dtype(dtype) and tuple(y.shape) == x.shape
    assert_close(y, y_ref, dtype, "BatchNorm training forward", scale=4)
    assert sorted(state) == ["moving_mean", "moving_var"]
    assert to_numpy(state["moving_var"]).dtype == np.dtype(dtype)
    m = 0.99
    assert_close(state["moving_mean"], _rounded(mm, dtype) * m + mean * (1 - m), dtype, "mean")
    assert_close(state["moving_var"], _rounded(mv, dtype) * m + var * (1 - m), dtype, "var")


@pytest.mark.parametrize("kind", SHAPES)
def test_batchnorm_inference_uses_the_moving_statistics(backend, dtype, kind):
    x, _, gamma, beta = _data(SHAPES[kind])
    width = x.shape[-1]
    mm, mv = np.linspace(-0.5, 0.5, width), np.linspace(0.4, 2.5, width)
    state = _bn_state(backend, dtype, mm, mv)
    y, new_state, _ = tinynet.BatchNorm().forward(
        _params(backend, dtype, gamma, beta), state, backend.asarray(x, dtype), backend, False
    )
    r = [_rounded(a, dtype) for a in (x, gamma, beta, mm, mv)]
    assert_close(y, bn_infer_ref(*r), dtype, "BatchNorm inference forward")
    assert new_state is state  # inference never changes the state


@pytest.mark.parametrize("kind", SHAPES)
def test_layernorm_forward(backend, dtype, kind):
    x, _, gamma, beta = _data(SHAPES[kind])
    layer = tinynet.LayerNorm()
    params = _params(backend, dtype, gamma, beta)
    for training in (False, True):  # the same in both modes
        y, state, _ = layer.forward(params, {}, backend.asarray(x, dtype), backend, training)
        assert state == {} and to_numpy(y).dtype == np.dtype(dtype)
        r = [_rounded(a, dtype) for a in (x, gamma, beta)]
        assert_close(y, ln_ref(*r), dtype, f"LayerNorm forward training={training}", scale=4)


def test_batchnorm_of_a_constant_feature_is_beta(backend):
    """Zero variance: epsilon keeps it finite, the feature becomes beta."""
    x = np.array([[2.0, 1.0], [2.0, -1.0], [2.0, 3.0]])
    y, _, back = tinynet.BatchNorm().forward(
        _params(backend, "float64", [1.5, 1.0], [0.25, 0.0]),
        _bn_state(backend, "float64", [0.0, 0.0], [1.0, 1.0]),
        backend.asarray(x, "float64"),
        backend,
        True,
    )
    np.testing.assert_array_equal(to_numpy(y)[:, 0], 0.25)
    dx, _ = back(backend.asarray(np.ones((3, 2)), "float64"))
    assert np.all(np.isfinite(to_numpy(dx)))


# ------------------------------------------------------------ backward: PyTorch autograd


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the autograd oracle here")


@torch_autograd
def _torch_grads(torch, fn, x, dy, gamma, beta):
    """``fn(x, gamma, beta)`` in float64 torch; its output and the gradients
    of ``sum(y * dy)``."""
    tx, tg, tb = (
        torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta)
    )
    y = fn(tx, tg, tb)
    (y * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    return [t.detach().numpy() for t in (y, tx.grad, tg.grad, tb.grad)]


def _check_grads(what, dtype, got, ref, scale=4):
    y, dx, grads = got
    y_ref, dx_ref, dgamma_ref, dbeta_ref = ref
    if y is not None:
        assert_close(y, y_ref, dtype, f"{what}: y", scale=scale)
    assert_close(dx, dx_ref, dtype, f"{what}: dx", scale=scale)
    assert_close(grads["gamma"], dgamma_ref, dtype, f"{what}: dgamma", scale=scale)
    assert_close(grads["beta"], dbeta_ref, dtype, f"{what}: dbeta", scale=scale)


def _run(layer, backend, dtype, x, dy, gamma, beta, training, state=None):
    y, new_state, back = layer.forward(
        _params(backend, dtype, gamma, beta),
        state if state is not None else {},
        backend.asarray(x, dtype),
        backend,
        training,
    )
    dx, grads = back(backend.asarray(dy, dtype))
    for g in (dx, grads["gamma"], grads["beta"]):
        assert to_numpy(g).dtype == np.dtype(dtype)
    assert tuple(dx.shape) == x.shape and tuple(grads["gamma"].shape) == (x.shape[-1],)
    return (y, dx, grads), new_state


@pytest.mark.parametrize("kind", SHAPES)
def test_batchnorm_training_matches_torch_autograd(backend, dtype, kind):
    torch = _torch()
    F = torch.nn.functional
    x, dy, gamma, beta = _data(SHAPES[kind])
    width = x.shape[-1]
    running = [torch.zeros(width, dtype=torch.float64), torch.ones(width, dtype=torch.float64)]

    def fn(tx, tg, tb):  # channels-last: every leading axis is a batch axis for torch
        flat = F.batch_norm(
            tx.reshape(-1, width), *running, tg, tb, training=True, momentum=0.01, eps=EPS
        )
        return flat.reshape(tx.shape)

    r = [_rounded(a, dtype) for a in (x, dy, gamma, beta)]
    ref = _torch_grads(torch, fn, *r)
    state = _bn_state(backend, dtype, np.zeros(width), np.ones(width))
    got, new_state = _run(tinynet.BatchNorm(), backend, dtype, x, dy, gamma, beta, True, state)
    _check_grads(f"BatchNorm {kind} vs torch", dtype, got, ref)
    assert_close(new_state["moving_mean"], running[0].numpy(), dtype, "moving mean vs torch")


@pytest.mark.parametrize("kind", SHAPES)
def test_batchnorm_inference_matches_torch_autograd(backend, dtype, kind):
    torch = _torch()
    x, dy, gamma, beta = _data(SHAPES[kind])
    width = x.shape[-1]
    mm, mv = np.linspace(-0.5, 0.5, width), np.linspace(0.4, 2.5, width)
    running = [torch.tensor(_rounded(a, dtype), dtype=torch.float64) for a in (mm, mv)]

    def fn(tx, tg, tb):
        flat = torch.nn.functional.batch_norm(
            tx.reshape(-1, width), *running, tg, tb, training=False, eps=EPS
        )
        return flat.reshape(tx.shape)

    ref = _torch_grads(torch, fn, *(_rounded(a, dtype) for a in (x, dy, gamma, beta)))
    state = _bn_state(backend, dtype, mm, mv)
    got, _ = _run(tinynet.BatchNorm(), backend, dtype, x, dy, gamma, beta, False, state)
    _check_grads(f"BatchNorm inference {kind} vs torch", dtype, got, ref)


@pytest.mark.parametrize("kind", SHAPES)
def test_layernorm_matches_torch_autograd(backend, dtype, kind):
    torch = _torch()
    x, dy, gamma, beta = _data(SHAPES[kind])

    def fn(tx, tg, tb):
        return torch.nn.functional.layer_norm(tx, (tx.shape[-1],), tg, tb, eps=EPS)

    ref = _torch_grads(torch, fn, *(_rounded(a, dtype) for a in (x, dy, gamma, beta)))
    got, _ = _run(tinynet.LayerNorm(), backend, dtype, x, dy, gamma, beta, True)
    _check_grads(f"LayerNorm {kind} vs torch", dtype, got, ref)


def test_moving_variance_is_keras_biased_not_torch_unbiased(backend, dtype):
    """torch's running variance uses the unbiased batch variance, Keras's (and
    tinynet's) the biased one: with ``m = momentum`` and ``n`` values per
    feature, after k steps from 1, ``ours - m**k == (torch - m**k) * (n-1)/n``."""
    torch = _torch()
    shape = SHAPES["images"]
    n, width, m = int(np.prod(shape[:-1])), shape[-1], 0.99
    running = [torch.zeros(width, dtype=torch.float64), torch.ones(width, dtype=torch.float64)]
    layer, params = tinynet.BatchNorm(), _params(backend, dtype, np.ones(width), np.zeros(width))
    state = _bn_state(backend, dtype, np.zeros(width), np.ones(width))
    steps = 4
    for step in range(steps):
        x = _rounded(_data(shape, seed=step)[0], dtype)
        _, state, _ = layer.forward(params, state, backend.asarray(x, dtype), backend, True)
        torch.nn.functional.batch_norm(
            torch.tensor(x.reshape(-1, width)), *running, training=True, momentum=1 - m, eps=EPS
        )
    assert_close(state["moving_mean"], running[0].numpy(), dtype, "moving mean")
    expected = m**steps + (running[1].numpy() - m**steps) * (n - 1) / n
    assert_close(state["moving_var"], expected, dtype, "moving variance (biased)")
    assert not np.allclose(to_numpy(state["moving_var"]), running[1].numpy(), rtol=1e-4)


# ------------------------------------------------------------ backward: jax.vjp


def _jnp_formulas(jnp, lax):
    def bn_train(x, g, b):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return (x - mean) * lax.rsqrt(var + EPS) * g + b

    def ln(x, g, b):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * lax.rsqrt(var + EPS) * g + b

    return bn_train, ln


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("which", ["batchnorm-training", "batchnorm-inference", "layernorm"])
def test_backward_matches_jax_vjp(jax_backend, kind, which):
    import jax
    import jax.numpy as jnp

    bn_train, ln = _jnp_formulas(jnp, jax.lax)
    x, dy, gamma, beta = _data(SHAPES[kind])
    width = x.shape[-1]
    mm, mv = np.linspace(-0.5, 0.5, width), np.linspace(0.4, 2.5, width)
    if which == "batchnorm-inference":

        def f(x, g, b):
            return (x - mm) * jax.lax.rsqrt(mv + EPS) * g + b

    else:
        f = bn_train if which == "batchnorm-training" else ln
    arrays = [jnp.asarray(a, dtype=jnp.float64) for a in (x, gamma, beta, dy)]
    y_ref, vjp = jax.vjp(f, *arrays[:3])
    dx_ref, dg_ref, db_ref = vjp(arrays[3])
    layer = tinynet.LayerNorm() if which == "layernorm" else tinynet.BatchNorm()
    state = {} if which == "layernorm" else _bn_state(jax_backend, "float64", mm, mv)
    training = which != "batchnorm-inference"
    got, _ = _run(layer, jax_backend, "float64", x, dy, gamma, beta, training, state)
    ref = [np.asarray(a) for a in (y_ref, dx_ref, dg_ref, db_ref)]
    _check_grads(f"{which} {kind} vs jax.vjp", "float64", got, ref, scale=1)


# ------------------------------------------------------------ backward: finite differences


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("which", ["batchnorm-training", "batchnorm-inference", "layernorm"])
def test_backward_matches_finite_differences_float64(backend, kind, which):
    x, dy, gamma, beta = _data(SHAPES[kind])
    width = x.shape[-1]
    layer = tinynet.LayerNorm() if which == "layernorm" else tinynet.BatchNorm()
    mm, mv = np.linspace(-0.5, 0.5, width), np.linspace(0.4, 2.5, width)
    state = {} if which == "layernorm" else _bn_state(backend, "float64", mm, mv)
    training = which != "batchnorm-inference"

    def value(x, g, b):
        params = _params(backend, "float64", g, b)
        y, _, _ = layer.forward(params, state, backend.asarray(x, "float64"), backend, training)
        return float(np.sum(to_numpy(y) * dy))

    (_, dx, grads), _ = _run(layer, backend, "float64", x, dy, gamma, beta, training, state)
    assert_fd_close(dx, central_fd(lambda a: value(a, gamma, beta), x), f"{which} dx")
    assert_fd_close(grads["gamma"], central_fd(lambda g: value(x, g, beta), gamma), "dgamma")
    assert_fd_close(grads["beta"], central_fd(lambda b: value(x, gamma, b), beta), "dbeta")


@pytest.mark.parametrize("layer", [tinynet.BatchNorm(), tinynet.LayerNorm()], ids=repr)
def test_backward_without_input_gradient(backend, layer):
    x, dy, gamma, beta = _data(SHAPES["sequences"])
    state = _bn_state(backend, "float64", np.zeros(2), np.ones(2)) if "Batch" in repr(layer) else {}
    _, _, back = layer.forward(
        _params(backend, "float64", gamma, beta),
        state,
        backend.asarray(x, "float64"),
        backend,
        True,
    )
    dx, grads = back(backend.asarray(dy, "float64"))
    none, grads2 = back(backend.asarray(dy, "float64"), need_dx=False)
    assert none is None
    for name in ("gamma", "beta"):
        np.testing.assert_array_equal(to_numpy(grads2[name]), to_numpy(grads[name]))


# ------------------------------------------------------------ moving statistics


@pytest.mark.parametrize("momentum", [0.99, 0.9, 0.0, 1.0])
def test_moving_statistics_follow_a_float64_recurrence(backend, dtype, momentum):
    shape = SHAPES["sequences"]
    width = shape[-1]
    layer = tinynet.BatchNorm(momentum=momentum)
    params = _params(backend, dtype, np.ones(width), np.zeros(width))
    state = _bn_state(backend, dtype, np.zeros(width), np.ones(width))
    mean_ref, var_ref = np.zeros(width), np.ones(width)
    for step in range(6):
        x = _rounded(_data(shape, seed=10 + step)[0] * (1 + step), dtype)
        _, state, _ = layer.forward(params, state, backend.asarray(x, dtype), backend, True)
        axes = tuple(range(x.ndim - 1))
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)  # biased (ddof=0)
        mean_ref = mean_ref * momentum + batch_mean * (1 - momentum)
        var_ref = var_ref * momentum + batch_var * (1 - momentum)
        assert_close(state["moving_mean"], mean_ref, dtype, f"moving mean, step {step}", scale=4)
        assert_close(state["moving_var"], var_ref, dtype, f"moving var, step {step}", scale=4)


# ------------------------------------------------------------ Keras's numbers

KERAS_BN = [name for name, c in kref.CASES.items() if c["layer"] == "BatchNormalization"]
KERAS_LN = [name for name, c in kref.CASES.items() if c["layer"] == "LayerNormalization"]


def _keras_expected(case, dtype, name, shape):
    return np.reshape(case[dtype][name], shape)


@pytest.mark.parametrize("name", KERAS_BN)
def test_batchnorm_matches_keras(backend, dtype, name):
    case = kref.CASES[name]
    shape, steps, width = case["shape"], case["steps"], case["shape"][-1]
    layer = tinynet.BatchNorm(**case["kwargs"])
    gamma, beta = kref.affine(width)
    params = _params(backend, dtype, gamma, beta)
    _, _, state = layer.init(tnrandom.key(0, backend), shape[1:], backend.dtype(dtype))
    for step in range(steps):
        x = backend.asarray(kref.keras_input(shape, step), dtype)
        y, new_state, back = layer.forward(params, state, x, backend, True)
        if step == steps - 1:
            dx, grads = back(backend.asarray(kref.upstream(shape), dtype))
        state = new_state
    x_eval = backend.asarray(kref.keras_input(shape, steps), dtype)
    y_eval, _, _ = layer.forward(params, state, x_eval, backend, False)
    scale = 1 if dtype == "float64" else 8  # Keras's float32 rounds its own way
    for what, got in (
        ("train_y", y),
        ("infer_y", y_eval),
        ("grad_x", dx),
        ("moving_mean", state["moving_mean"]),
        ("moving_var", state["moving_var"]),
        ("grad_gamma", grads["gamma"]),
        ("grad_beta", grads["beta"]),
    ):
        expected = _keras_expected(case, dtype, what, tuple(got.shape))
        assert_close(got, expected, dtype, f"{name}: {what} vs Keras", scale=scale)


@pytest.mark.parametrize("name", KERAS_LN)
def test_layernorm_matches_keras(backend, dtype, name):
    case = kref.CASES[name]
    shape = case["shape"]
    gamma, beta = kref.affine(shape[-1])
    x, dy = kref.keras_input(shape, 0), kref.upstream(shape)
    (y, dx, grads), _ = _run(tinynet.LayerNorm(), backend, dtype, x, dy, gamma, beta, True)
    scale = 1 if dtype == "float64" else 8
    for what, got in (("y", y), ("grad_x", dx), ("grad_gamma", grads["gamma"])):
        expected = _keras_expected(case, dtype, what, tuple(got.shape))
        assert_close(got, expected, dtype, f"{name}: {what} vs Keras", scale=scale)
    assert_close(grads["beta"], case[dtype]["grad_beta"], dtype, "grad_beta", scale=scale)


def test_keras_defaults_and_names():
    bn, ln = tinynet.BatchNorm(), tinynet.LayerNorm()
    assert (bn.momentum, bn.epsilon, ln.epsilon) == (0.99, 1e-3, 1e-3)
    assert tinynet.BatchNormalization is tinynet.BatchNorm
    assert tinynet.LayerNormalization is tinynet.LayerNorm
    for layer in (tinynet.BatchNorm(momentum=0.9, epsilon=1e-5), tinynet.LayerNorm(epsilon=1e-6)):
        again = tinynet.layers.from_config(layer.get_config())
        assert type(again) is type(layer) and again.get_config() == layer.get_config()


# ------------------------------------------------------------ init


@pytest.mark.parametrize("kind", SHAPES)
def test_init_shapes_and_values(backend, dtype, kind):
    shape = SHAPES[kind][1:]
    width = shape[-1]
    key = tnrandom.key(0, backend)
    out, params, state = tinynet.BatchNorm().init(key, shape, backend.dtype(dtype))
    assert out == shape and sorted(params) == ["beta", "gamma"]
    expected = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_var": 1.0}
    for name, value in {**params, **state}.items():
        host = to_numpy(value)
        assert host.shape == (width,) and host.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(host, expected[name], err_msg=name)
    out, params, state = tinynet.LayerNorm().init(key, shape, backend.dtype(dtype))
    assert out == shape and state == {} and sorted(params) == ["beta", "gamma"]


# ------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tinynet.BatchNorm(momentum=1.5), r"BatchNorm: momentum must be in \[0, 1\], "
         r"received momentum=1.5"),
        (lambda: tinynet.BatchNorm(momentum=-0.1), "received momentum=-0.1"),
        (lambda: tinynet.BatchNorm(momentum="0.9"), "received momentum='0.9'"),
        (lambda: tinynet.BatchNorm(momentum=True), "received momentum=True"),
        (lambda: tinynet.BatchNorm(epsilon=0), "BatchNorm: epsilon must be a positive number, "
         "received epsilon=0"),
        (lambda: tinynet.BatchNorm(epsilon=float("nan")), "received epsilon=nan"),
        (lambda: tinynet.LayerNorm(epsilon=-1e-3), "LayerNorm: epsilon must be a positive number, "
         "received epsilon=-0.001"),
        (lambda: tinynet.LayerNorm(epsilon=None), "received epsilon=None"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("cls", [tinynet.BatchNorm, tinynet.LayerNorm])
def test_input_without_a_feature_axis_is_refused(backend, cls):
    """A per-sample shape of () (a layer before it producing one number per
    sample) has no feature axis to normalise."""
    layer = cls()
    with pytest.raises(ValueError, match=r"expects inputs with a feature axis, received input sh"):
        layer.output_shape(())
    with pytest.raises(ValueError, match="expects inputs with a feature axis"):
        layer.init(tnrandom.key(0, backend), (), backend.dtype("float32"))


# ------------------------------------------------------------ inside models

LOSS = "sparse_categorical_crossentropy"


def _classification(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) * np.array([1.0, 3.0, 0.5, 2.0, 1.0]) + 1.5
    return x, (x[:, 0] + x[:, 1] > 3.0).astype("int64") + (x[:, 3] > 1.5)


def _bn_model(backend, dtype="float32", dropout=0.0, seed=1):
    layers = [tinynet.Dense(16), tinynet.BatchNorm(), tinynet.ReLU()]
    if dropout:
        layers.append(tinynet.Dropout(dropout))
    layers += [tinynet.Dense(3), tinynet.Softmax()]
    return tinynet.Sequential(layers, input_shape=(5,), dtype=dtype, seed=seed, backend=backend)


def _host_state(model):
    return [{k: to_numpy(v).copy() for k, v in s.items()} for s in model.state]


def _manual_predict(model, x):
    """The model's inference output from its params and state, in float64 NumPy."""
    p = [{k: to_numpy(v).astype(np.float64) for k, v in d.items()} for d in model.params]
    s = [{k: to_numpy(v).astype(np.float64) for k, v in d.items()} for d in model.state]
    h = x @ p[0]["W"] + p[0]["b"]
    h = bn_infer_ref(h, p[1]["gamma"], p[1]["beta"], s[1]["moving_mean"], s[1]["moving_var"])
    h = np.maximum(h, 0.0) @ p[3]["W"] + p[3]["b"]
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_updates_the_state_and_inference_uses_it(backend, dtype):
    x, y = _classification()
    model = _bn_model(backend.name, dtype)
    seen = []

    class Record(tinynet.callbacks.Callback):
        def on_epoch_end(self, model, epoch, logs):
            seen.append(_host_state(model))

    history = model.fit(
        x, y, loss=LOSS, epochs=3, batch_size=16, verbose=0, callbacks=[Record()], seed=2
    )
    assert len(history.history["loss"]) == 3 and len(seen) == 3
    final = _host_state(model)
    for name in ("moving_mean", "moving_var"):  # callbacks saw the state of each epoch
        np.testing.assert_array_equal(seen[-1][1][name], final[1][name])
        assert not np.array_equal(seen[0][1][name], seen[1][1][name])
    assert not np.allclose(final[1]["moving_mean"], 0.0)  # started at zeros / ones
    assert not np.allclose(final[1]["moving_var"], 1.0)
    assert [s for i, s in enumerate(final) if i != 1] == [{}, {}, {}, {}]

    out = to_numpy(model.predict(x))
    assert_close(out, _manual_predict(model, x.astype(dtype)), dtype, "predict", scale=10)
    probs = _manual_predict(model, x.astype(dtype))
    loss = -np.mean(np.log(probs[np.arange(len(y)), y]))
    logs = model.evaluate(x, y, loss=LOSS, batch_size=7)  # batches of 7: statistics unused
    assert_close(logs["loss"], loss, dtype, "evaluate", scale=10)
    after = _host_state(model)  # predict / evaluate leave the state alone
    for name in ("moving_mean", "moving_var"):
        np.testing.assert_array_equal(after[1][name], final[1][name])


def test_loss_and_grads_is_inference_mode(backend):
    """``model.loss_and_grads`` uses the moving statistics and keeps the state."""
    x, y = _classification(8)
    model = _bn_model(backend.name, "float64")
    model.state[1]["moving_mean"] = backend.asarray(np.linspace(-1, 1, 16), "float64")
    before = _host_state(model)
    value, grads = model.loss_and_grads(x, y, LOSS)
    probs = _manual_predict(model, x)
    assert_close(value, -np.mean(np.log(probs[np.arange(8), y])), "float64", "loss")
    assert sorted(grads[1]) == ["beta", "gamma"]
    np.testing.assert_array_equal(_host_state(model)[1]["moving_mean"], before[1]["moving_mean"])


def test_checkpoint_round_trips_params_and_state(backend, tmp_path):
    x, y = _classification()
    model = _bn_model(backend.name, dropout=0.2)
    model.fit(x, y, loss=LOSS, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "bn.tnet"
    model.save(path)
    loaded = tinynet.load(path, backend=backend.name)
    for kind in ("params", "state"):
        for a, b in zip(getattr(model, kind), getattr(loaded, kind), strict=True):
            assert sorted(a) == sorted(b)
            for name in a:
                np.testing.assert_array_equal(to_numpy(b[name]), to_numpy(a[name]), kind + name)
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(model.predict(x)))
    # and training goes on from there exactly as it would have
    model.fit(x, y, loss=LOSS, epochs=1, batch_size=16, verbose=0)
    loaded.fit(x, y, loss=LOSS, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(_host_state(model), _host_state(loaded), strict=True):
        for name in a:
            np.testing.assert_array_equal(b[name], a[name])


def _train_everywhere(name):
    # BatchNorm after the activation: the Dense bias before it is trained (a
    # bias right before BatchNorm has a zero gradient and moves by noise only)
    x, y = _classification(45)
    layers = [tinynet.Dense(16), tinynet.Tanh(), tinynet.BatchNorm(), tinynet.Dropout(0.3)]
    layers += [tinynet.Dense(3), tinynet.Softmax()]
    model = tinynet.Sequential(layers, input_shape=(5,), dtype="float64", seed=4, backend=name)
    model.fit(x, y, loss=LOSS, epochs=2, batch_size=8, shuffle=True, seed=6, verbose=0)
    return [{k: to_numpy(v) for k, v in d.items()} for d in model.params], _host_state(model)


def test_batchnorm_and_dropout_train_to_the_same_numbers_on_every_backend(backend):
    """Two shuffled float64 epochs (ragged last batch, dropout masks) give the
    NumPy backend's parameters and state within 1e-12."""
    ref_params, ref_state = _train_everywhere("numpy")
    params, state = _train_everywhere(backend.name)
    for kind, got, ref in (("params", params, ref_params), ("state", state, ref_state)):
        for i, (a, b) in enumerate(zip(got, ref, strict=True)):
            assert sorted(a) == sorted(b)
            for name in b:
                np.testing.assert_allclose(
                    a[name], b[name], rtol=1e-12, atol=1e-12, err_msg=f"{kind}[{i}][{name}]"
                )


# ------------------------------------------------------------ data parallelism

PARALLEL_WORKER = """
import json, sys
import numpy as np
import tinynet as tn

x = np.random.default_rng(0).normal(size=(75, 5)) * 2 + 1
y = (x[:, 0] > 1).astype("int64") + (x[:, 2] > 2)


def train(devices, dtype):
    model = tn.Sequential([tn.Dense(16), tn.BatchNorm(), tn.ReLU(), tn.Dense(3), tn.Softmax()],
                          input_shape=(5,), dtype=dtype, seed=3, backend="jax")
    seen = []
    class Record(tn.callbacks.Callback):
        def on_epoch_end(self, model, epoch, logs):
            seen.append(tn.to_numpy(model.state[1]["moving_var"]).tolist())
    model.fit(x, y, loss="sparse_categorical_crossentropy", epochs=2, batch_size=16,
              optimizer=tn.optimizers.SGD(lr=0.1), verbose=0, seed=1, devices=devices,
              callbacks=[Record()])
    host = lambda tree: [{k: tn.to_numpy(v).tolist() for k, v in d.items()} for d in tree]
    return {"params": host(model.params), "state": host(model.state), "seen": seen,
            "predict": tn.to_numpy(model.predict(x)).tolist()}


print(json.dumps({dtype: [train(None, dtype), train(2, dtype)] for dtype in sys.argv[1:]}))
"""


def test_data_parallel_batchnorm_equals_one_device():
    """``fit(devices=2)`` (fake CPU devices, in a subprocess since JAX fixes its
    device count at start) gives one device's state and parameters: the batch
    statistics are reduced over the whole, split batch (75 rows: the ragged
    last batch of 11 does not split and runs replicated).

    The bias of the Dense layer before BatchNorm has a zero gradient (the
    normalisation removes any shift), so it only ever moves by rounding noise;
    SGD keeps that noise tiny, and every array is compared within ``rel``
    times the largest parameter of the model (Adam would scale the noise up
    to its step size, differently on one and two devices)."""
    pytest.importorskip("jax", reason="data parallelism needs jax")
    proc = subprocess.run(
        [sys.executable, "-c", PARALLEL_WORKER, "float32", "float64"],
        env=fake_devices_env(2),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    for dtype, rel in (("float32", 1e-5), ("float64", 1e-12)):
        one, two = runs[dtype]
        assert not np.allclose(one["state"][1]["moving_var"], 1.0)
        scale = max(np.abs(v).max() for p in one["params"] for v in p.values())
        for kind in ("params", "state"):
            for i, (a, b) in enumerate(zip(two[kind], one[kind], strict=True)):
                for name in b:
                    what = f"{dtype} {kind}[{i}][{name}]"
                    np.testing.assert_allclose(
                        a[name], b[name], rtol=rel, atol=rel * scale, err_msg=what
                    )
        assert np.abs(one["params"][0]["b"]).max() < 1e3 * rel  # zero gradient: noise only
        np.testing.assert_allclose(two["seen"], one["seen"], rtol=rel, atol=rel)
        np.testing.assert_allclose(two["predict"], one["predict"], rtol=rel * 10, atol=rel)
