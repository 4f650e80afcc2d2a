"""Whole models: ``Sequential.loss_and_grads`` of small MLPs on every backend
and dtype against a float64 NumPy forward/backprop written here, against
central finite differences and ``jax.grad`` of the whole model at float64;
the fused Softmax/Sigmoid + cross-entropy head against the unfused path; input
errors; and that ``import tinynet`` loads neither JAX nor CuPy."""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import FD_RTOL, FD_STEP, assert_close, to_numpy

import tinynet
from tinynet import backends, core, losses

EPS = 1e-7
GELU_C = math.sqrt(2.0 / math.pi)

# ------------------------------------------------------------ reference maths
# Activations written once for a module ``m`` (numpy or jax.numpy).


def activation(m, name, x):
    if name == "tanh":
        return m.tanh(x)
    if name == "relu":
        return m.where(x > 0, x, 0.0)
    if name == "leaky0.1":
        return m.where(x > 0, x, 0.1 * x)
    if name == "elu":
        return m.where(x > 0, x, m.exp(m.minimum(x, 0.0)) - 1.0)
    if name == "gelu":
        return 0.5 * x * (1.0 + m.tanh(GELU_C * (x + 0.044715 * x**3)))
    if name == "softplus":
        return m.log(1.0 + m.exp(x))
    if name == "sigmoid":
        return 1.0 / (1.0 + m.exp(-x))
    if name == "softmax":
        e = m.exp(x - m.max(x, axis=-1, keepdims=True))
        return e / m.sum(e, axis=-1, keepdims=True)
    if name == "identity":
        return x
    raise AssertionError(name)


def activation_vjp(name, x, dy):
    """Hand-derived derivatives (NumPy, float64)."""
    if name == "tanh":
        return dy / np.cosh(x) ** 2
    if name == "relu":
        return dy * (x > 0)
    if name == "leaky0.1":
        return dy * np.where(x > 0, 1.0, 0.1)
    if name == "elu":
        return dy * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))
    if name == "gelu":
        u = GELU_C * (x + 0.044715 * x**3)
        return dy * (
            0.5 * (1 + np.tanh(u)) + 0.5 * x / np.cosh(u) ** 2 * GELU_C * (1 + 0.134145 * x**2)
        )
    if name == "softplus":
        return dy / (1.0 + np.exp(-x))
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-x))
        return dy * s * (1.0 - s)
    if name == "softmax":
        s = activation(np, "softmax", x)
        return s * dy - s * np.sum(s * dy, axis=-1, keepdims=True)
    if name == "identity":
        return dy
    raise AssertionError(name)


def loss_formula(m, kind, y, p, lo=EPS, hi=1.0 - EPS):
    """Keras's loss on the model OUTPUT (probabilities: the unfused formula)."""
    n = p.shape[0]
    if kind == "scce":
        y = m.eye(p.shape[-1])[y]
        kind = "cce"
    if kind == "cce":
        q = m.clip(p / m.sum(p, axis=-1, keepdims=True), lo, hi)
        return -m.sum(y * m.log(q)) / n
    if kind == "bce":
        q = m.clip(p, lo, hi)
        return -m.mean(y * m.log(q) + (1.0 - y) * m.log(1.0 - q))
    if kind == "mse":
        return m.mean((p - y) ** 2)
    if kind == "huber":
        e = p - y
        return m.mean(m.where(m.abs(e) <= 1.0, 0.5 * e**2, m.abs(e) - 0.5))
    raise AssertionError(kind)


def loss_grad(kind, y, p):
    """dL/d output, hand-derived; no probability is clipped for these inputs."""
    if kind == "scce":
        y = np.eye(p.shape[-1])[y]
        kind = "cce"
    if kind == "cce":
        s = p.sum(axis=-1, keepdims=True)
        return (y.sum(axis=-1, keepdims=True) / s - y / p) / p.shape[0]
    if kind == "bce":
        return ((1.0 - y) / (1.0 - p) - y / p) / p.size
    if kind == "mse":
        return 2.0 * (p - y) / p.size
    if kind == "huber":
        return np.clip(p - y, -1.0, 1.0) / p.size
    raise AssertionError(kind)


# ------------------------------------------------------------ the models

X = np.array(
    [
        [0.5, -1.2, 0.3, 0.8],
        [-0.7, 0.4, 1.1, -0.2],
        [1.3, 0.6, -0.9, 0.1],
        [-0.3, -0.8, 0.2, 1.4],
        [0.9, 1.0, -0.4, -1.1],
    ]
)

# name -> (layer specs, loss kind, tinynet loss, targets);
# a spec is ("dense", in, out) or an activation name (or "dropout": identity at eval)
MODELS = {
    "tanh_relu_softmax_scce": (
        [("dense", 4, 8), "tanh", ("dense", 8, 6), "relu", ("dense", 6, 3), "softmax"],
        "scce",
        losses.SparseCategoricalCrossentropy,
        np.array([0, 2, 1, 2, 0]),
    ),
    "tanh_relu_softmax_cce_soft": (
        [("dense", 4, 8), "tanh", ("dense", 8, 6), "relu", ("dense", 6, 3), "softmax"],
        "cce",
        losses.CategoricalCrossentropy,
        np.array([[1, 0, 0], [0.2, 0.3, 0.5], [0, 1, 0], [0.1, 0.1, 0.8], [0.6, 0.4, 0]]),
    ),
    "elu_softplus_sigmoid_bce": (
        [("dense", 4, 8), "elu", ("dense", 8, 6), "softplus", ("dense", 6, 3), "sigmoid"],
        "bce",
        losses.BinaryCrossentropy,
        np.array([[1, 0, 1], [0, 0, 0.5], [1, 1, 0], [0.3, 0.8, 1], [0, 1, 0]], dtype=np.float64),
    ),
    "leaky_gelu_dropout_mse": (
        [("dense", 4, 8), "leaky0.1", ("dense", 8, 6), "gelu", "dropout", ("dense", 6, 3)],
        "mse",
        losses.MeanSquaredError,
        np.array(
            [
                [0.5, -1.0, 0.2],
                [1.2, 0.3, -0.8],
                [-0.4, 0.9, 1.6],
                [0.0, -0.6, 0.3],
                [2.0, 1.1, -0.2],
            ]
        ),
    ),
    "tanh_sigmoid_huber": (
        [("dense", 4, 8), "tanh", ("dense", 8, 6), "sigmoid", ("dense", 6, 3), "sigmoid"],
        "huber",
        lambda: losses.Huber(1.0),
        np.array(
            [[1.5, 0.0, 0.2], [-0.8, 0.5, 0.9], [0.1, 2.2, 0.4], [0.6, 0.6, -1.3], [0.3, 0.7, 0.2]]
        ),
    ),
}
NAMES = list(MODELS)

_LAYER = {
    "tanh": tinynet.Tanh,
    "relu": tinynet.ReLU,
    "leaky0.1": lambda: tinynet.LeakyReLU(0.1),
    "elu": tinynet.ELU,
    "gelu": tinynet.GELU,
    "softplus": tinynet.Softplus,
    "sigmoid": tinynet.Sigmoid,
    "softmax": tinynet.Softmax,
    "identity": tinynet.Identity,
    "dropout": lambda: tinynet.Dropout(0.3),
}


def reference_params(name):
    """Fixed float64 parameters (not tinynet's initialisers)."""
    rng = np.random.default_rng(sum(map(ord, name)))
    params = []
    for spec in MODELS[name][0]:
        if isinstance(spec, tuple):
            _, n_in, n_out = spec
            params.append(
                {"W": rng.normal(0.0, 0.8, (n_in, n_out)), "b": rng.normal(0.0, 0.3, (n_out,))}
            )
        else:
            params.append({})
    return params


_BUILT: dict = {}


def build(name, backend, dtype, unfused=False):
    """The model ``name`` on ``backend`` with the reference parameters.

    Built once per (model, backend, dtype) and reused: a model's JAX
    initialisation compiles a program, which would dominate the test time.
    ``unfused`` appends an ``Identity`` after the head, which defeats fusion.
    """
    key = (name, backend.name, dtype, unfused)
    model = _BUILT.get(key)
    if model is None:
        specs = MODELS[name][0] + (["identity"] if unfused else [])
        layers = [tinynet.Dense(s[1], s[2]) if isinstance(s, tuple) else _LAYER[s]() for s in specs]
        model = tinynet.Sequential(layers, dtype=dtype, seed=0, backend="numpy")
        model.to_backend(backend.name)
        _BUILT[key] = model
    for i, p in enumerate(reference_params(name)):
        for k, v in p.items():
            model.params[i][k] = backend.asarray(v, dtype)
    assert backends.backend_of(model.params[0]["W"]) is backend
    return model


def logits_loss(kind, y, z):
    """(loss, dL/dz) from the logits ``z``: the exact fused cross-entropy."""
    if kind == "bce":
        return np.mean(np.logaddexp(0.0, z) - z * y), (0.5 * (1 + np.tanh(0.5 * z)) - y) / z.size
    t = np.eye(z.shape[-1])[y] if kind == "scce" else y
    log_q = z - np.max(z, axis=-1, keepdims=True)
    log_q = log_q - np.log(np.sum(np.exp(log_q), axis=-1, keepdims=True))
    n = z.shape[0]
    return -np.sum(t * log_q) / n, (np.exp(log_q) * t.sum(axis=-1, keepdims=True) - t) / n


def reference(name, params, x, y, from_logits=False):
    """(loss, grads, output) of the whole model: float64 NumPy forward + backprop.

    By default the loss is Keras's formula on the model output (unfused);
    ``from_logits`` stops before the last activation and takes the exact
    cross-entropy of the logits instead.
    """
    specs, kind = MODELS[name][0], MODELS[name][1]
    run = len(specs) - 1 if from_logits else len(specs)
    h, saved = x, []
    for spec, p in zip(specs[:run], params[:run], strict=True):
        saved.append(h)
        if isinstance(spec, tuple):
            h = h @ p["W"] + p["b"]
        elif spec != "dropout":
            if spec in ("relu", "leaky0.1", "elu"):
                assert np.min(np.abs(h)) > 1e-3, "pre-activation too close to the kink"
            h = activation(np, spec, h)
    if from_logits:
        value, d = logits_loss(kind, y, h)
    else:
        value, d = loss_formula(np, kind, y, h), loss_grad(kind, y, h)
    grads = [{} for _ in specs]
    for i in range(run - 1, -1, -1):
        spec, inp = specs[i], saved[i]
        if isinstance(spec, tuple):
            grads[i] = {"W": inp.T @ d, "b": d.sum(axis=0)}
            d = d @ params[i]["W"].T
        elif spec != "dropout":
            d = activation_vjp(spec, inp, d)
    return value, grads, h


def _rounded(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _targets(name, dtype):
    y = MODELS[name][3]
    return y if y.dtype.kind == "i" else _rounded(y, dtype)


def assert_grads_close(grads, expected, dtype, what, scale=1.0):
    assert len(grads) == len(expected)
    for i, (g, e) in enumerate(zip(grads, expected, strict=True)):
        assert set(g) == set(e), f"{what}: layer {i} has grads {set(g)}, expected {set(e)}"
        for k in e:
            assert to_numpy(g[k]).dtype == np.dtype(dtype)
            assert_close(g[k], e[k], dtype, f"{what}: layer {i} {k}", scale=scale)


def _loss(name):
    return MODELS[name][2]()


# ------------------------------------------------------------ loss_and_grads


@pytest.mark.parametrize("name", NAMES)
def test_reference_backprop_matches_reference_fd(name):
    """The NumPy backprop used as the reference is right (checked once)."""
    params = reference_params(name)
    y = MODELS[name][3]
    _, grads, _ = reference(name, params, X, y)
    for i, p in enumerate(params):
        for k, v in p.items():

            def f(a, i=i, k=k):
                trial = [dict(q) for q in params]
                trial[i][k] = a
                return reference(name, trial, X, y)[0]

            numeric = _fd(f, v)
            rel = np.max(np.abs(grads[i][k] - numeric)) / np.max(np.abs(numeric))
            assert rel < FD_RTOL, (name, i, k, rel)


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_grads_match_reference(backend, dtype, name):
    model = build(name, backend, dtype)
    params64 = [{k: _rounded(v, dtype) for k, v in p.items()} for p in reference_params(name)]
    y = _targets(name, dtype)
    value_ref, grads_ref, out_ref = reference(name, params64, _rounded(X, dtype), y)
    value, grads = model.loss_and_grads(X, MODELS[name][3], _loss(name))
    assert to_numpy(value).dtype == np.dtype(dtype)
    assert_close(value, value_ref, dtype, f"{name} loss")
    assert_grads_close(grads, grads_ref, dtype, name)
    out = model.predict(X)
    assert backends.backend_of(out) is backend
    assert_close(out, out_ref, dtype, f"{name} predict")


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_grads_equal_across_backends(backend, dtype, name):
    other_name = "strict" if backend.name == "numpy" else "numpy"
    other, why = backends.probe(other_name)
    if other is None:
        pytest.skip(why)
    value, grads = build(name, backend, dtype).loss_and_grads(X, MODELS[name][3], _loss(name))
    value_o, grads_o = build(name, other, dtype).loss_and_grads(X, MODELS[name][3], _loss(name))
    assert_close(value, float(to_numpy(value_o)), dtype, f"{name} loss vs {other_name}")
    assert_grads_close(
        grads, [{k: to_numpy(v) for k, v in g.items()} for g in grads_o], dtype, name
    )


def _fd(f, a, h=FD_STEP):
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        ap, am = a.copy(), a.copy()
        ap[idx] += h
        am[idx] -= h
        grad[idx] = (f(ap) - f(am)) / (2 * h)
    return grad


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_grads_match_fd_float64(backend, name):
    """Every parameter's gradient against central differences of the model's own loss."""
    model = build(name, backend, "float64")
    loss, y = _loss(name), MODELS[name][3]
    _, grads = model.loss_and_grads(X, y, loss)
    for i, p in enumerate(reference_params(name)):
        for k, v in p.items():

            def f(a, i=i, k=k, v=v):
                model.params[i][k] = backend.asarray(a, "float64")
                try:
                    return float(to_numpy(model.loss_and_grads(X, y, loss)[0]))
                finally:
                    model.params[i][k] = backend.asarray(v, "float64")

            numeric = _fd(f, v)
            rel = np.max(np.abs(to_numpy(grads[i][k]) - numeric)) / np.max(np.abs(numeric))
            assert rel < FD_RTOL, f"{name}: layer {i} {k}: relative error {rel:.3e}"


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_grads_match_jax_grad(jax_backend, name):
    import jax
    import jax.numpy as jnp

    specs, kind = MODELS[name][0], MODELS[name][1]
    y = jnp.asarray(MODELS[name][3])

    def model_loss(params, x):
        h = x
        for spec, p in zip(specs, params, strict=True):
            if isinstance(spec, tuple):
                h = jnp.matmul(h, p["W"]) + p["b"]
            elif spec != "dropout":
                h = activation(jnp, spec, h)
        return loss_formula(jnp, kind, y, h)

    params = [
        {k: jnp.asarray(v, dtype=jnp.float64) for k, v in p.items()} for p in reference_params(name)
    ]
    value_ref, grads_ref = jax.jit(jax.value_and_grad(model_loss))(
        params, jnp.asarray(X, dtype=jnp.float64)
    )
    value, grads = build(name, jax_backend, "float64").loss_and_grads(
        X, MODELS[name][3], _loss(name)
    )
    assert_close(value, float(value_ref), "float64", f"{name} loss vs jax")
    assert_grads_close(
        grads, [{k: np.asarray(v) for k, v in g.items()} for g in grads_ref], "float64", name
    )


def test_loss_and_grads_cache_does_not_grow_for_equal_losses():
    """Losses compare by config (``Loss.__eq__``) so that compiled functions are
    reused; ``loss_and_grads`` must not add an entry per call."""
    model = build("leaky_gelu_dropout_mse", backends.load("numpy"), "float64")
    y = MODELS["leaky_gelu_dropout_mse"][3]
    model.loss_and_grads(X, y, "mean_squared_error")
    size = len(model._compiled)
    for loss in ("mean_squared_error", "mse", losses.MeanSquaredError(), losses.MeanSquaredError()):
        model.loss_and_grads(X, y, loss)
    assert len(model._compiled) == size


# ------------------------------------------------------------ fused vs unfused heads

FUSED = [n for n in NAMES if MODELS[n][0][-1] in ("softmax", "sigmoid") and MODELS[n][1] != "huber"]


@pytest.mark.parametrize("name", FUSED)
def test_head_is_fused(name):
    layers = build(name, backends.load("numpy"), "float64").layers
    assert type(layers[-1]) in (tinynet.Softmax, tinynet.Sigmoid)
    assert core.fused_head(layers, _loss(name)) is not None
    assert core.fused_head(layers + [tinynet.Identity()], _loss(name)) is None


@pytest.mark.parametrize("name", FUSED)
def test_fused_head_equals_unfused_identity_trick(backend, dtype, name):
    """``[..., Softmax]`` (fused: loss from logits) vs ``[..., Softmax, Identity]``
    (unfused: the clipped loss on the probabilities, then Softmax's backward)."""
    fused = build(name, backend, dtype)
    unfused = build(name, backend, dtype, unfused=True)
    v1, g1 = fused.loss_and_grads(X, MODELS[name][3], _loss(name))
    v2, g2 = unfused.loss_and_grads(X, MODELS[name][3], _loss(name))
    assert_close(v1, float(to_numpy(v2)), dtype, f"{name} loss fused vs unfused")
    assert_grads_close(g1, [{k: to_numpy(v) for k, v in g.items()} for g in g2[:-1]], dtype, name)


@pytest.mark.parametrize("name", FUSED)
def test_fused_head_equals_layer_by_layer_backward(backend, dtype, name):
    """The model's fused gradient vs running each layer's forward, the loss on
    the probabilities (``value_and_grad``, from_logits=False) and each layer's
    backward by hand."""
    model = build(name, backend, dtype)
    loss, xp = _loss(name), backend.xp
    x = backend.asarray(X, dtype)
    y = MODELS[name][3]
    y = backend.asarray(y, "int64") if y.dtype.kind == "i" else backend.asarray(y, dtype)
    h, backs = x, []
    for layer, p in zip(model.layers, model.params, strict=True):
        h, _, back = layer.forward(p, {}, h, backend, False, None)
        backs.append(back)
    value, d = loss.value_and_grad(xp, y, h)
    grads = [None] * len(backs)
    for i in range(len(backs) - 1, -1, -1):
        d, grads[i] = backs[i](d)
    v_fused, g_fused = model.loss_and_grads(X, MODELS[name][3], loss)
    assert_close(v_fused, float(to_numpy(value)), dtype, f"{name} loss")
    assert_grads_close(
        g_fused, [{k: to_numpy(v) for k, v in g.items()} for g in grads], dtype, name
    )


@pytest.mark.parametrize("name", FUSED)
def test_fused_head_is_exact_where_the_clipped_formula_saturates(backend, dtype, name):
    """Last layer scaled so some probabilities are below 1e-7: the fused loss is
    the exact cross-entropy of the logits (documented), the unfused one clips."""
    params = reference_params(name)
    params[-2] = {k: -8.0 * v for k, v in params[-2].items()}  # confidently wrong
    params64 = [{k: _rounded(v, dtype) for k, v in p.items()} for p in params]
    y = _targets(name, dtype)
    x64 = _rounded(X, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):  # dL/dp of saturated outputs
        _, _, probs = reference(name, params64, x64, y)
    assert np.min(np.minimum(probs, 1.0 - probs)) < 1e-9, "the test needs saturated outputs"
    value_ref, grads_ref, _ = reference(name, params64, x64, y, from_logits=True)
    model, unfused = build(name, backend, dtype), build(name, backend, dtype, unfused=True)
    for m in (model, unfused):
        m.params[-2 if m is model else -3] = {
            k: backend.asarray(v, dtype) for k, v in params[-2].items()
        }
    value, grads = model.loss_and_grads(X, MODELS[name][3], _loss(name))
    assert_close(value, value_ref, dtype, f"{name} exact loss")
    assert_grads_close(grads, grads_ref, dtype, name)
    clipped, _ = unfused.loss_and_grads(X, MODELS[name][3], _loss(name))
    lo, hi = float(np.asarray(EPS, dtype)), float(np.asarray(1.0 - EPS, dtype))
    expected = loss_formula(np, MODELS[name][1], y, probs, lo, hi)
    assert_close(clipped, expected, dtype, "clipped loss")
    assert abs(float(to_numpy(clipped)) - value_ref) > 1e-3 * value_ref


# ------------------------------------------------------------ input errors


def _foreign_backend(backend):
    """A backend other than ``backend`` whose arrays are not host NumPy data."""
    for name in ("strict", "jax", "cupy", "torch"):
        if name != backend.name:
            other, _ = backends.probe(name)
            if other is not None:
                return other
    pytest.skip("needs a second non-NumPy backend")


def test_model_input_from_another_backend_names_both(backend):
    other = _foreign_backend(backend)
    model = build("tanh_relu_softmax_scce", backend, "float32")
    x_other = other.asarray(X, "float32")
    for call in (
        lambda: model.predict(x_other),
        lambda: model.loss_and_grads(
            x_other, np.array([0, 1, 2, 0, 1]), "sparse_categorical_crossentropy"
        ),
    ):
        with pytest.raises(TypeError) as info:
            call()
        assert other.name in str(info.value) and backend.name in str(info.value), str(info.value)
    y_other = other.asarray(np.array([0, 1, 2, 0, 1]), "int64")
    with pytest.raises(TypeError) as info:
        model.loss_and_grads(X, y_other, "sparse_categorical_crossentropy")
    assert other.name in str(info.value) and backend.name in str(info.value), str(info.value)


def test_model_shape_errors_name_both_shapes(backend):
    model = build("tanh_relu_softmax_cce_soft", backend, "float32")
    loss = losses.CategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"expects 4 input features.*\(5, 3\)"):
        model.loss_and_grads(X[:, :3], MODELS["tanh_relu_softmax_cce_soft"][3], loss)
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(n, 3\)"):
        model.loss_and_grads(X, np.ones((5, 2)), loss)
    with pytest.raises(ValueError, match=r"x has 5 samples but y has 4"):
        model.loss_and_grads(X, np.ones((4, 3)), loss)
    with pytest.raises(ValueError, match=r"layer 2 \(Dense\) expects 7 input features.*produces 8"):
        tinynet.Sequential([tinynet.Dense(4, 8), tinynet.ReLU(), tinynet.Dense(7, 3)])


# ------------------------------------------------------------ lazy imports


def test_import_tinynet_loads_neither_jax_nor_cupy():
    code = (
        "import sys, numpy, tinynet\n"
        "m = tinynet.Sequential([tinynet.Dense(2, 3), tinynet.ReLU()])\n"
        "m.predict(numpy.ones((1, 2)))\n"
        "roots = {k.split('.')[0] for k in sys.modules}\n"
        "print(sorted(roots & {'jax', 'jaxlib', 'cupy', 'cupyx'}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    root = pathlib.Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
