"""Embedding on every backend and dtype: the lookup against NumPy indexing,
the table's gradient against a float64 loop (repeated indices add up),
PyTorch autograd (``torch.nn.functional.embedding``), ``jax.vjp`` of
``jnp.take`` and central finite differences; Keras's initialiser; integer
model inputs through ``fit``/``evaluate``/``predict``; and a clear error for
every index outside ``[0, input_dim)``, host-side and in the forward."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_fd_close, central_fd, to_numpy

import tinynet
from tinynet import random as tnrandom

INPUT_DIM, OUTPUT_DIM = 7, 3
# index arrays of the shapes an Embedding meets: (batch,), (batch, T), (batch, T, U);
# each repeats indices and uses the first and the last row
INDICES = {
    "batch": np.array([3, 0, 6, 3, 3]),
    "sequences": np.array([[1, 6, 1], [0, 0, 2], [5, 1, 6], [3, 3, 3]]),
    "grid": np.array([[[2, 4], [4, 0]], [[6, 6], [1, 4]]]),
}
TABLE = np.random.default_rng(0).normal(size=(INPUT_DIM, OUTPUT_DIM))


def _dy(shape, seed=1):
    return np.random.default_rng(seed).normal(size=(*shape, OUTPUT_DIM))


def _forward(backend, dtype, idx, index_dtype="int32", table=TABLE):
    layer = tinynet.Embedding(INPUT_DIM, OUTPUT_DIM)
    x = backend.asarray(idx, index_dtype)
    return layer.forward({"W": backend.asarray(table, dtype)}, {}, x, backend, True)


def _dw_reference(idx, dy):
    """Every dy row added into the row it was looked up from, one at a time."""
    dw = np.zeros((INPUT_DIM, OUTPUT_DIM))
    for pos in np.ndindex(idx.shape):
        dw[idx[pos]] += dy[pos]
    return dw


# ------------------------------------------------------------ forward / backward


@pytest.mark.parametrize("index_dtype", ["int32", "int64", "uint8"])
@pytest.mark.parametrize("kind", INDICES)
def test_forward_is_the_table_lookup(backend, dtype, kind, index_dtype):
    idx = INDICES[kind]
    y, state, _ = _forward(backend, dtype, idx, index_dtype)
    assert state == {} and tuple(y.shape) == (*idx.shape, OUTPUT_DIM)
    assert to_numpy(y).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(to_numpy(y), TABLE.astype(dtype)[idx])  # a gather is exact


@pytest.mark.parametrize("kind", INDICES)
def test_table_gradient_adds_repeated_rows(backend, dtype, kind):
    idx = INDICES[kind]
    dy = _dy(idx.shape)
    _, _, back = _forward(backend, dtype, idx)
    dx, grads = back(backend.asarray(dy, dtype))
    assert dx is None  # integer input: no gradient
    assert sorted(grads) == ["W"] and to_numpy(grads["W"]).dtype == np.dtype(dtype)
    expected = _dw_reference(idx, dy.astype(dtype).astype(np.float64))
    assert_close(grads["W"], expected, dtype, "dW", scale=4)
    unused = sorted(set(range(INPUT_DIM)) - set(idx.ravel().tolist()))
    assert not np.any(to_numpy(grads["W"])[unused])
    none, again = back(backend.asarray(dy, dtype), need_dx=False)
    assert none is None
    np.testing.assert_array_equal(to_numpy(again["W"]), to_numpy(grads["W"]))


def test_every_row_looked_up_from_one_index_sums(backend):
    idx = np.full((4, 5), 2)
    dy = _dy(idx.shape)
    _, _, back = _forward(backend, "float64", idx)
    dw = to_numpy(back(backend.asarray(dy, "float64"))[1]["W"])
    assert_close(dw[2], dy.reshape(-1, OUTPUT_DIM).sum(axis=0), "float64", "row 2")
    np.testing.assert_array_equal(np.delete(dw, 2, axis=0), 0.0)


@pytest.mark.parametrize("kind", INDICES)
def test_matches_torch_autograd(backend, dtype, kind):
    torch = pytest.importorskip("torch", reason="PyTorch is the autograd oracle here")
    idx = INDICES[kind]
    dy = _dy(idx.shape).astype(dtype).astype(np.float64)
    table = torch.tensor(TABLE.astype(dtype).astype(np.float64), requires_grad=True)
    with torch.enable_grad():  # the torch backend's fixture runs in its no_grad scope
        y_ref = torch.nn.functional.embedding(torch.tensor(idx), table)
        (y_ref * torch.tensor(dy)).sum().backward()
    y, _, back = _forward(backend, dtype, idx, "int64")
    _, grads = back(backend.asarray(dy, dtype))
    assert_close(y, y_ref.detach().numpy(), dtype, "forward vs torch")
    assert_close(grads["W"], table.grad.numpy(), dtype, "dW vs torch", scale=4)


@pytest.mark.parametrize("kind", INDICES)
def test_matches_jax_vjp_of_take(jax_backend, kind):
    import jax
    import jax.numpy as jnp

    idx = INDICES[kind]
    dy = _dy(idx.shape)
    table = jnp.asarray(TABLE, dtype=jnp.float64)
    y_ref, vjp = jax.vjp(lambda w: jnp.take(w, jnp.asarray(idx), axis=0), table)
    (dw_ref,) = vjp(jnp.asarray(dy, dtype=jnp.float64))
    y, _, back = _forward(jax_backend, "float64", idx)
    _, grads = back(jnp.asarray(dy, dtype=jnp.float64))
    assert_close(y, np.asarray(y_ref), "float64", "forward vs jnp.take")
    assert_close(grads["W"], np.asarray(dw_ref), "float64", "dW vs jax.vjp")


def test_table_gradient_matches_finite_differences_float64(backend):
    idx = INDICES["sequences"]
    dy = _dy(idx.shape)

    def value(table):
        y, _, _ = _forward(backend, "float64", idx, table=table)
        return float(np.sum(to_numpy(y) * dy))

    _, _, back = _forward(backend, "float64", idx)
    dw = back(backend.asarray(dy, "float64"))[1]["W"]
    assert_fd_close(dw, central_fd(value, TABLE), "dW")


def test_compiled_forward_and_backward_equal_eager(backend):
    idx = INDICES["grid"]
    dy = backend.asarray(_dy(idx.shape), "float64")
    layer = tinynet.Embedding(INPUT_DIM, OUTPUT_DIM)
    params = {"W": backend.asarray(TABLE, "float64")}

    def run(params, x, dy):
        y, _, back = layer.forward(params, {}, x, backend, True)
        return y, back(dy)[1]["W"]

    x = backend.asarray(idx, "int32")
    eager, compiled = run(params, x, dy), backend.jit(run)(params, x, dy)
    for a, b in zip(eager, compiled, strict=True):
        assert_close(b, to_numpy(a), "float64", "compiled")


# ------------------------------------------------------------ init and config


def test_init_is_keras_uniform_and_the_same_on_every_backend(backend, dtype):
    layer = tinynet.Embedding(50, 40)
    out, params, state = layer.init(tnrandom.key(5, backend), (3, 2), backend.dtype(dtype))
    assert out == (3, 2, 40) and state == {} and sorted(params) == ["W"]
    w = to_numpy(params["W"])
    assert w.shape == (50, 40) and w.dtype == np.dtype(dtype)
    assert w.min() >= -0.05 and w.max() < 0.05  # RandomUniform(-0.05, 0.05)
    assert w.min() < -0.049 and w.max() > 0.049 and abs(w.mean()) < 0.005
    numpy_w = layer.init(tnrandom.key(5, "numpy"), (3, 2), np.dtype(dtype))[1]["W"]
    view = np.uint32 if dtype == "float32" else np.uint64
    np.testing.assert_array_equal(w.view(view), numpy_w.view(view))


def test_config_round_trip_and_shapes():
    layer = tinynet.Embedding(100, 8, init="glorot_uniform")
    again = tinynet.layers.from_config(layer.get_config())
    expected = {"type": "Embedding", "input_dim": 100, "output_dim": 8, "init": "glorot_uniform"}
    assert again.get_config() == layer.get_config() == expected
    assert tinynet.Embedding(10, 4).get_config()["init"] == "uniform"  # Keras's default
    model = tinynet.Sequential([tinynet.Embedding(10, 4), tinynet.Dense(2)], input_shape=(6,))
    assert model.shapes == [(6, 4), (6, 2)] and model.num_params == 10 * 4 + 4 * 2 + 2


# ------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_dim": 0, "output_dim": 3}, "Embedding: input_dim must be a positive integer "
         r"below 2\*\*31, received input_dim=0"),
        ({"input_dim": -5, "output_dim": 3}, "received input_dim=-5"),
        ({"input_dim": 2.5, "output_dim": 3}, "received input_dim=2.5"),
        ({"input_dim": True, "output_dim": 3}, "received input_dim=True"),
        ({"input_dim": 2**31, "output_dim": 3}, "received input_dim=2147483648"),
        ({"input_dim": 10, "output_dim": 0}, "Embedding: output_dim must be a positive integer, "
         "received output_dim=0"),
        ({"input_dim": 10, "output_dim": "4"}, "received output_dim='4'"),
        ({"input_dim": 10, "output_dim": 4, "init": "nope"}, "unknown initializer 'nope'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tinynet.Embedding(**kwargs)


@pytest.mark.parametrize(
    "bad, value, position",
    [((1, 2), 7, r"\(1, 2\)"), ((0, 0), -1, r"\(0, 0\)"), ((3, 1), 1000, r"\(3, 1\)")],
)
def test_forward_refuses_an_out_of_range_index(backend, bad, value, position):
    idx = INDICES["sequences"].copy()
    idx[bad] = value
    with pytest.raises(
        ValueError,
        match=rf"Embedding: index {value} at position {position} is out of range for "
        r"input_dim=7 \(valid indices are 0\.\.6\); 1 bad index",
    ):
        _forward(backend, "float32", idx, "int64")


def test_forward_checks_narrow_integer_types_without_wrapping(backend):
    """int8 indices against input_dim=1000: no Python int beyond int8 is used
    (JAX would wrap 1000 into int8, array-api-strict would refuse it)."""
    layer = tinynet.Embedding(1000, 2)
    params = {"W": backend.asarray(np.zeros((1000, 2)), "float32")}
    x = backend.asarray(np.array([[127, 0]]), "int8")
    y, _, _ = layer.forward(params, {}, x, backend, True)
    assert tuple(y.shape) == (1, 2, 2)
    with pytest.raises(ValueError, match=r"index -3 at position \(0, 1\)"):
        layer.forward(params, {}, backend.asarray(np.array([[5, -3]]), "int8"), backend, True)


def test_forward_refuses_float_input(backend):
    """An Embedding after another layer would get floats: say where it belongs."""
    match = "Embedding: expects integer indices, received an input of dtype .*float32.*first layer"
    with pytest.raises(ValueError, match=match):
        _forward(backend, "float32", INDICES["batch"], "float32")


def _embedding_model(backend_name, dtype="float64", seed=0):
    layers = [tinynet.Embedding(INPUT_DIM, 4), tinynet.LayerNorm(), tinynet.Dense(1)]
    return tinynet.Sequential(
        layers, input_shape=(3,), dtype=dtype, seed=seed, backend=backend_name
    )


def _regression(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, INPUT_DIM, size=(n, 3))
    return x, np.sin(x[..., None] * 0.9) + 0.1 * rng.normal(size=(n, 3, 1))


@pytest.mark.parametrize("where", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("on_backend", [False, True], ids=["host", "device"])
def test_out_of_range_data_is_refused_before_any_step(backend, where, on_backend):
    model = _embedding_model(backend.name)
    x, y = _regression()
    x[4, 2] = INPUT_DIM
    before = to_numpy(model.params[0]["W"]).copy()
    data = backend.asarray(x, "int64") if on_backend else x
    call = {
        "fit": lambda: model.fit(data, y, loss="mse", epochs=1, batch_size=4, verbose=0),
        "evaluate": lambda: model.evaluate(data, y, loss="mse"),
        "predict": lambda: model.predict(data),
    }[where]
    with pytest.raises(
        ValueError,
        match=rf"{where}: layer 0 \(Embedding\): index 7 at position \(4, 2\) is out of range "
        r"for input_dim=7 \(valid indices are 0\.\.6\)",
    ):
        call()
    np.testing.assert_array_equal(to_numpy(model.params[0]["W"]), before)
    assert model.step == 0


def test_whole_float_indices_are_accepted_others_refused(backend):
    model = _embedding_model(backend.name)
    x, _ = _regression()
    expected = to_numpy(model.predict(x))
    np.testing.assert_array_equal(to_numpy(model.predict(x.astype("float32"))), expected)
    np.testing.assert_array_equal(to_numpy(model.predict(backend.asarray(x, "float64"))), expected)
    bad = x.astype("float64")
    bad[2, 1] = 2.5
    with pytest.raises(
        ValueError,
        match=r"predict: layer 0 \(Embedding\): expects integer "
        r"indices, but input value 2.5 at position \(2, 1\) is not a whole number",
    ):
        model.predict(bad)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"input value nan at position \(2, 1\)"):
        model.predict(bad)
    with pytest.raises(TypeError, match=r"expects integer indices, received dtype bool"):
        model.predict(x > 3)
    with pytest.raises(TypeError, match=r"expects integer indices, received dtype <U"):
        model.predict(x.astype(str))


# ------------------------------------------------------------ inside models


def test_model_with_an_embedding_trains_and_round_trips(backend, tmp_path):
    model = _embedding_model(backend.name, "float32")
    x, y = _regression(40)
    before = to_numpy(model.params[0]["W"]).copy()
    history = model.fit(x, y, loss="mse", epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = to_numpy(model.params[0]["W"])
    assert not np.array_equal(after, before)
    out = model.predict(x)
    assert tuple(out.shape) == (40, 3, 1) and to_numpy(out).dtype == np.float32
    model.save(tmp_path / "emb.tnet")
    loaded = tinynet.load(tmp_path / "emb.tnet", backend=backend.name)
    np.testing.assert_array_equal(to_numpy(loaded.params[0]["W"]), after)
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(out))


def _train(name):
    x, y = _regression(30, seed=3)
    model = _embedding_model(name, "float64", seed=2)
    model.fit(x, y, loss="mse", epochs=2, batch_size=8, seed=1, verbose=0)
    return [{k: to_numpy(v) for k, v in p.items()} for p in model.params]


def test_embedding_model_trains_to_the_same_numbers_on_every_backend(backend):
    """The scatter-add override (NumPy, JAX) and the portable one-hot product
    (strict) give the same training run in float64."""
    ref, got = _train("numpy"), _train(backend.name)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        for name in b:
            np.testing.assert_allclose(
                a[name], b[name], rtol=1e-12, atol=1e-12, err_msg=f"params[{i}][{name}]"
            )


def test_nan_guard_report_walks_past_the_integer_input(backend):
    """An update that overflows the parameters (loss and gradients finite)
    makes the NaN guard re-run the step down to layer 0, whose input has no
    gradient: the report names the update."""
    x, y = _regression(16)
    model = tinynet.Sequential(
        [tinynet.Embedding(INPUT_DIM, 4), tinynet.Dense(1)], input_shape=(3,), backend=backend.name
    )
    optimizer = tinynet.optimizers.SGD(lr=1e38)
    model.fit(x, y * 100, loss="mse", optimizer=optimizer, batch_size=8, verbose=0, nan_guard=True)
    assert model.stop_reason.startswith("non-finite parameters after the update at epoch 1, step 1")
    assert "the optimizer update (every forward value and gradient was finite)" in model.stop_reason
