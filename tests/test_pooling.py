"""Pooling layers on every backend and dtype: forward and input gradient
against PyTorch autograd (``max_pool1d/2d``, ``avg_pool1d/2d``, NCHW
transposes, float64), against ``jax.vjp`` of ``jax.lax.reduce_window``, a
NumPy loop over the windows written here, central finite differences, and
Keras's numbers for ``padding="same"``; the tie rule of max pooling (the
first maximum in row-major window order gets the gradient, as in PyTorch
and XLA); global pooling; arguments, shapes and errors.

Keras values: generated once with keras 3.15.1 (KERAS_BACKEND=jax, jax 0.10.2
with x64 enabled, ``keras.config.set_floatx("float64")`` and keras's
``BIT64_TO_BIT32_DTYPE`` emptied, as in tests/keras_reference.py) by::

    for name, cls, kw, shape in KERAS_CASES:
        layer = getattr(keras.layers, cls)(padding="same", **kw)
        out[name] = np.asarray(layer(inputs(shape))).tolist()  # float64

with ``inputs`` the function of that name below.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from helpers import assert_close, assert_fd_close, central_fd, to_numpy, torch_autograd

import tinynet as tn


def inputs(shape):
    return np.sin(np.arange(np.prod(shape)) * 0.7 + 0.3).reshape(shape) * 2.0


def keras_same(n, k, s):
    """Keras's "same" padding of one axis, ``(before, after)``."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def loop_pool(x, kind, pool, strides, padding):
    """Pooling by an explicit loop over output positions (float64 NumPy):
    max ignores the padding, avg divides by the real elements of a window.
    Returns ``y`` and the input gradient of ``sum(y * dy)`` as a function of ``dy``."""
    spatial = x.shape[1:-1]
    if padding == "same":
        pads = [keras_same(n, k, s) for n, k, s in zip(spatial, pool, strides)]
        out = [-(-n // s) for n, s in zip(spatial, strides)]
    else:
        pads = [(0, 0)] * len(spatial)
        out = [(n - k) // s + 1 for n, k, s in zip(spatial, pool, strides)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    where = {}  # output position -> list of input positions it reads
    for o in itertools.product(*map(range, out)):
        cells = []
        for w in itertools.product(*map(range, pool)):
            i = tuple(oi * s + wi - p[0] for oi, s, wi, p in zip(o, strides, w, pads))
            if all(0 <= ii < n for ii, n in zip(i, spatial)):
                cells.append(i)  # row-major window order
        where[o] = cells
        values = np.stack([x[(slice(None), *i, slice(None))] for i in cells])  # (cells, N, C)
        y[(slice(None), *o, slice(None))] = values.max(0) if kind == "max" else values.mean(0)

    def vjp(dy):
        dx = np.zeros_like(x)
        for o, cells in where.items():
            g = dy[(slice(None), *o, slice(None))]
            if kind == "avg":
                for i in cells:
                    dx[(slice(None), *i, slice(None))] += g / len(cells)
                continue
            values = np.stack([x[(slice(None), *i, slice(None))] for i in cells])
            first = values.argmax(0)  # NumPy's argmax: the first maximum
            for j, i in enumerate(cells):
                dx[(slice(None), *i, slice(None))] += g * (first == j)
        return dx

    return y, vjp


@torch_autograd
def torch_pool(x, kind, pool, strides, padding, dy):
    """``(y, dx)`` by PyTorch autograd in float64 (max with "same": the input
    padded with -inf first; torch has no asymmetric padding)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = x.ndim - 2
    to_first, to_last = (0, rank + 1, *range(1, rank + 1)), (0, *range(2, rank + 2), 1)
    xt = torch.tensor(x.transpose(to_first), requires_grad=True)
    h = xt
    if padding == "same":
        pads = [keras_same(n, k, s) for n, k, s in zip(x.shape[1:-1], pool, strides)]
        h = F.pad(h, [p for pair in reversed(pads) for p in pair], value=-float("inf"))
    fn = {("max", 2): F.max_pool2d, ("avg", 2): F.avg_pool2d,
          ("max", 1): F.max_pool1d, ("avg", 1): F.avg_pool1d}[kind, rank]  # fmt: skip
    y = fn(h, pool, strides)
    y.backward(torch.tensor(dy.transpose(to_first)))
    return y.detach().numpy().transpose(to_last), xt.grad.numpy().transpose(to_last)


def jax_pool(x, kind, pool, strides, padding, dy):
    """``(y, dx)`` by ``jax.vjp`` of ``lax.reduce_window`` (average: window
    sums over window sums of ones, as Keras's JAX backend computes it)."""
    import jax
    import jax.numpy as jnp

    dims, steps, pad = (1, *pool, 1), (1, *strides, 1), padding.upper()

    def f(x):
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, steps, pad)
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, steps, pad)
        count = jax.lax.reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, dims, steps, pad)
        return total / count

    y, vjp = jax.vjp(f, jnp.asarray(x))
    return np.asarray(y), np.asarray(vjp(jnp.asarray(dy))[0])


# kind, batch, spatial, channels, pool, strides, padding
CASES = {
    "max-2x2-even": ("max", 3, (6, 8), 2, (2, 2), (2, 2), "valid"),
    "max-2x2-odd": ("max", 1, (7, 5), 3, (2, 2), (2, 2), "valid"),
    "max-3x3-s2-overlap": ("max", 2, (7, 7), 1, (3, 3), (2, 2), "valid"),
    "max-3x2-s21": ("max", 3, (7, 5), 2, (3, 2), (2, 1), "valid"),
    "max-2x2-same-odd": ("max", 2, (5, 7), 2, (2, 2), (2, 2), "same"),
    "max-3x3-s2-same": ("max", 1, (6, 5), 2, (3, 3), (2, 2), "same"),
    "avg-2x2-even": ("avg", 3, (6, 8), 2, (2, 2), (2, 2), "valid"),
    "avg-2x3-odd": ("avg", 1, (7, 8), 3, (2, 3), (2, 3), "valid"),
    "avg-3x3-s2-overlap": ("avg", 2, (7, 7), 1, (3, 3), (2, 2), "valid"),
    "avg-2x2-same-odd": ("avg", 2, (5, 7), 2, (2, 2), (2, 2), "same"),
    "avg-3x2-s1-same": ("avg", 1, (4, 5), 2, (3, 2), (1, 1), "same"),
    "max1d-2": ("max", 3, (9,), 2, (2,), (2,), "valid"),
    "max1d-3-s1-same": ("max", 2, (6,), 3, (3,), (1,), "same"),
    "avg1d-3-s2": ("avg", 1, (8,), 2, (3,), (2,), "valid"),
    "avg1d-4-s3-same": ("avg", 3, (7,), 1, (4,), (3,), "same"),
}
LAYERS = {("max", 2): tn.MaxPool2D, ("avg", 2): tn.AvgPool2D,
          ("max", 1): tn.MaxPool1D, ("avg", 1): tn.AvgPool1D}  # fmt: skip


def _case(name):
    kind, batch, spatial, c, pool, strides, padding = CASES[name]
    layer = LAYERS[kind, len(spatial)](pool, strides, padding)
    rng = np.random.default_rng(sum(map(ord, name)))
    x = rng.normal(size=(batch, *spatial, c))  # no ties: distinct continuous values
    dy = rng.normal(size=(batch, *layer.output_shape((*spatial, c))))
    return layer, x, dy


def _run(layer, backend, dtype, x, dy):
    y, _, back = layer.forward({}, {}, backend.asarray(x, dtype), backend)
    dx, grads = back(backend.asarray(dy, dtype))
    assert grads == {}
    return y, dx


def _rounded(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


# torch has no average over the real elements of asymmetric padding: the
# loop reference and Keras's numbers check those cases
TORCH_CASES = [n for n in CASES if not (CASES[n][0] == "avg" and CASES[n][-1] == "same")]


@pytest.mark.parametrize("name", TORCH_CASES)
def test_pooling_matches_torch_autograd(backend, dtype, name):
    layer, x, dy = _case(name)
    x, dy = _rounded(x, dtype), _rounded(dy, dtype)
    kind = CASES[name][0]
    y_ref, dx_ref = torch_pool(x, kind, layer.pool_size, layer.strides, layer.padding, dy)
    y, dx = _run(layer, backend, dtype, x, dy)
    assert tuple(y.shape) == y_ref.shape and to_numpy(y).dtype == np.dtype(dtype)
    scale = float(np.prod(layer.pool_size))
    assert_close(y, y_ref, dtype, f"{name} forward vs torch", scale=scale)
    assert_close(dx, dx_ref, dtype, f"{name} dx vs torch", scale=scale)


@pytest.mark.parametrize("name", list(CASES))
def test_pooling_matches_the_loop_reference(backend, dtype, name):
    layer, x, dy = _case(name)
    x, dy = _rounded(x, dtype), _rounded(dy, dtype)
    y_ref, vjp = loop_pool(x, CASES[name][0], layer.pool_size, layer.strides, layer.padding)
    y, dx = _run(layer, backend, dtype, x, dy)
    scale = float(np.prod(layer.pool_size))
    assert_close(y, y_ref, dtype, f"{name} forward vs loop", scale=scale)
    assert_close(dx, vjp(dy), dtype, f"{name} dx vs loop", scale=scale)


@pytest.mark.parametrize("name", [n for n in CASES if len(CASES[n][2]) == 2])
def test_pooling_matches_jax_vjp_of_reduce_window(backend, jax_backend, name):
    layer, x, dy = _case(name)
    kind = CASES[name][0]
    y_ref, dx_ref = jax_pool(x, kind, layer.pool_size, layer.strides, layer.padding, dy)
    y, dx = _run(layer, backend, "float64", x, dy)
    assert_close(y, y_ref, "float64", f"{name} forward vs lax.reduce_window")
    assert_close(dx, dx_ref, "float64", f"{name} dx vs jax.vjp")


@pytest.mark.parametrize("name", ["max-3x3-s2-same", "avg-2x2-same-odd", "avg1d-4-s3-same"])
def test_pooling_gradient_matches_finite_differences(backend, name):
    layer, x, dy = _case(name)
    _, dx = _run(layer, backend, "float64", x, dy)

    def loss(v):
        y, _, _ = layer.forward({}, {}, backend.asarray(v, "float64"), backend)
        return float(np.sum(to_numpy(y) * dy))

    assert_fd_close(dx, central_fd(loss, x), name)


# ------------------------------------------------------------ ties


def test_max_pool_gives_a_tied_window_s_gradient_to_its_first_maximum(backend, dtype):
    x = np.array(
        [[1.0, 3.0, 5.0, 5.0, 0.0],
         [3.0, 2.0, 5.0, 5.0, 0.0],
         [7.0, 7.0, 4.0, 9.0, 0.0],
         [7.0, 7.0, 9.0, 4.0, 0.0]]
    )[None, :, :, None]  # fmt: skip
    dy = np.array([[10.0, 20.0], [30.0, 40.0]])[None, :, :, None]
    y, dx = _run(tn.MaxPool2D(2), backend, dtype, x, dy)
    assert to_numpy(y)[0, :, :, 0].tolist() == [[3.0, 5.0], [7.0, 9.0]]
    expected = np.array(
        [[0.0, 10.0, 20.0, 0.0, 0.0],
         [0.0, 0.0, 0.0, 0.0, 0.0],
         [30.0, 0.0, 0.0, 40.0, 0.0],
         [0.0, 0.0, 0.0, 0.0, 0.0]]
    )  # fmt: skip
    np.testing.assert_array_equal(to_numpy(dx)[0, :, :, 0], expected)
    _, dx_torch = torch_pool(x, "max", (2, 2), (2, 2), "valid", dy)
    np.testing.assert_array_equal(dx_torch[0, :, :, 0], expected)


def test_max_pool_ties_in_overlapping_windows_match_torch(backend):
    """Many ties (small integers), windows overlapping, strides 1 and 2."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(2, 7, 6, 3)).astype(np.float64)
    settings = [
        ((3, 3), (2, 2), "valid"),
        ((2, 3), (1, 1), "valid"),
        ((3, 2), (2, 2), "same"),
        ((2, 2), (2, 2), "valid"),
    ]
    for pool, strides, padding in settings:
        layer = tn.MaxPool2D(pool, strides, padding)
        dy = rng.normal(size=(2, *layer.output_shape((7, 6, 3))))
        y, dx = _run(layer, backend, "float64", x, dy)
        y_ref, dx_ref = torch_pool(x, "max", pool, strides, padding, dy)
        what = f"{pool} {strides} {padding}"
        np.testing.assert_array_equal(to_numpy(y), y_ref, err_msg=what)
        np.testing.assert_allclose(to_numpy(dx), dx_ref, rtol=1e-15, atol=0, err_msg=what)
        np.testing.assert_allclose(
            to_numpy(dx), loop_pool(x, "max", pool, strides, padding)[1](dy), rtol=1e-15
        )


def test_max_pool_1d_ties(backend):
    x = np.array([2.0, 2.0, 1.0, 4.0, 4.0, 4.0])[None, :, None]
    _, dx = _run(tn.MaxPool1D(3, 1), backend, "float64", x, np.ones((1, 4, 1)))
    assert to_numpy(dx)[0, :, 0].tolist() == [1.0, 0.0, 0.0, 3.0, 0.0, 0.0]


# ------------------------------------------------------------ Keras's numbers

KERAS_CASES = [  # name, class, kwargs (padding "same"), input shape
    ("max2d_3s2_same", "MaxPooling2D", {"pool_size": 3, "strides": 2}, (2, 5, 6, 2)),
    ("avg2d_3s2_same", "AveragePooling2D", {"pool_size": 3, "strides": 2}, (2, 5, 6, 2)),
    ("avg2d_2s1_same", "AveragePooling2D", {"pool_size": 2, "strides": 1}, (1, 3, 4, 1)),
    ("max2d_2x3s_same", "MaxPooling2D", {"pool_size": (2, 3), "strides": (1, 2)}, (1, 4, 5, 2)),
    ("avg1d_3s2_same", "AveragePooling1D", {"pool_size": 3, "strides": 2}, (2, 7, 2)),
    ("max1d_2s1_same", "MaxPooling1D", {"pool_size": 2, "strides": 1}, (1, 5, 3)),
]
KERAS_VALUES = {
    "max2d_3s2_same": [
        [
            [
                [1.9833296209049371, 1.682941969615793],
                [1.9735439285492267, 1.7183236297129916],
                [1.9735439285492267, 1.9787164932467638],
            ],
            [
                [1.9615264954903058, 1.9678133892372334],
                [1.9735439285492267, 1.9678133892372334],
                [1.9735439285492267, 1.9546850247845202],
            ],
            [
                [1.9615264954903058, 1.7517621596217787],
                [1.9472909113899595, 1.7832197460828814],
                [1.9472909113899595, 1.9546850247845202],
            ],
        ],
        [
            [
                [1.9308532742594873, 1.9393462458238415],
                [1.7981944802891578, 1.9393462458238415],
                [1.8266146630243236, 1.921814397891245],
            ],
            [
                [1.9308532742594873, 1.902109306508758],
                [1.9122321722556215, 1.902109306508758],
                [1.9122321722556215, 1.921814397891245],
            ],
            [
                [1.89144866266047, 1.902109306508758],
                [1.8529692569303866, 1.902109306508758],
                [1.8772284594683228, 1.8802532547651145],
            ],
        ],
    ],
    "avg2d_3s2_same": [
        [
            [
                [0.1637373620159906, -0.13643793747787783],
                [-0.2903439637793882, -0.01085027012423693],
                [0.7356475519294391, 0.6565403839729647],
            ],
            [
                [0.0039340412217881105, -0.003943624862825734],
                [-0.007322010746651804, 0.00010167412033580526],
                [0.01941299274527475, 0.016891083208505776],
            ],
            [
                [0.13606827767649798, -0.16409805288200247],
                [-0.26765225231955214, 0.018598657334533288],
                [0.7437789157215262, 0.630696256654657],
            ],
        ],
        [
            [
                [0.306784221566561, 0.4359831326962793],
                [-0.18436288358442843, -0.396922739705361],
                [-0.42781896037408007, 0.06958824200549535],
            ],
            [
                [0.008317752777210202, 0.011465497258215303],
                [-0.0051832733806596275, -0.010568248724723962],
                [-0.010671761090343845, 0.002482729591331519],
            ],
            [
                [0.32709556046632415, 0.4377801417844598],
                [-0.21064431231978875, -0.4084629669307809],
                [-0.3854552225745444, 0.11961575748255127],
            ],
        ],
    ],
    "avg2d_2s1_same": [
        [
            [
                [0.283356981479904],
                [0.12187389332627468],
                [-0.09692839119081531],
                [-0.2079914751690023],
            ],
            [
                [-0.3163062649131435],
                [-0.21370501223293675],
                [-0.010594953066652035],
                [0.10590359090322832],
            ],
            [
                [-0.06233530131685899],
                [1.1619779841419422],
                [1.8397948672519462],
                [1.9787164932467638],
            ],
        ]
    ],
    "max2d_2x3s_same": [
        [
            [
                [1.9833296209049371, 1.9787164932467638],
                [1.9833296209049371, 1.3509263611023026],
                [0.6549488782753861, 1.7183236297129916],
            ],
            [
                [1.9735439285492267, 1.9787164932467638],
                [1.3259384601643667, 0.6866298576397908],
                [1.7352882012833346, 1.9678133892372334],
            ],
            [
                [1.9735439285492267, 1.3005756803142337],
                [0.7181167080443366, 1.7517621596217787],
                [1.9615264954903058, 1.9678133892372334],
            ],
            [
                [1.2748451923004778, -0.017702618580807752],
                [0.7181167080443366, 1.7517621596217787],
                [1.9615264954903058, 1.7517621596217787],
            ],
        ]
    ],
    "avg1d_3s2_same": [
        [
            [1.2871850171138082, 1.5169341653590478],
            [0.03714357014710834, -0.5465662440744807],
            [-0.33398010791117955, 0.2782966362777374],
            [1.5134058507107477, 1.0141336720767398],
        ],
        [
            [-1.5005228235813106, -1.3391655123033201],
            [0.29252948581591853, 0.767480248517856],
            [0.007113428652605261, -0.5700140144509412],
            [-1.3265456235512554, -0.523887250665686],
        ],
    ],
    "max1d_2s1_same": [
        [
            [1.3509263611023026, 1.682941969615793, 1.9833296209049371],
            [1.3509263611023026, 0.08316132486658187, -0.7477533296604737],
            [0.6230827270267557, 1.7008732412571288, 1.9787164932467638],
            [1.3259384601643667, 1.7008732412571288, 1.9787164932467638],
            [1.3259384601643667, 0.04955085090671553, -1.2501412977857642],
        ]
    ],
}


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_same_padding_matches_keras(backend, dtype, case):
    name, cls, kwargs, shape = case
    layer = getattr(tn, cls)(padding="same", **kwargs)  # Keras's names are aliases
    y, _, _ = layer.forward({}, {}, backend.asarray(inputs(shape), dtype), backend)
    expected = np.asarray(KERAS_VALUES[name])
    assert tuple(y.shape) == expected.shape and tuple(y.shape[1:]) == layer.output_shape(shape[1:])
    assert_close(y, expected, dtype, f"{name} vs Keras", scale=4)


# ------------------------------------------------------------ global pooling


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("rank", [1, 2])
def test_global_pooling(backend, dtype, rank, keepdims):
    rng = np.random.default_rng(rank)
    spatial = (5, 3)[:rank] if rank == 2 else (7,)
    x = _rounded(rng.normal(size=(3, *spatial, 4)), dtype)
    axes = tuple(range(1, rank + 1))
    kept = (3, *(1,) * rank, 4)
    for kind in ("avg", "max"):
        name = f"Global{kind.capitalize()}Pool{rank}D"
        layer = getattr(tn, name)(keepdims=keepdims)
        assert layer.output_shape((*spatial, 4)) == ((1,) * rank if keepdims else ()) + (4,)
        dy = _rounded(rng.normal(size=(3, *layer.output_shape((*spatial, 4)))), dtype)
        y, dx = _run(layer, backend, dtype, x, dy)
        ref = (
            x.mean(axis=axes, keepdims=keepdims)
            if kind == "avg"
            else x.max(axis=axes, keepdims=keepdims)
        )
        assert_close(y, ref, dtype, f"{name} forward", scale=4)
        # the same as pooling with one window over everything (torch's first-maximum rule)
        _, dx_ref = torch_pool(x, kind, spatial, spatial, "valid", np.reshape(dy, kept))
        assert_close(dx, dx_ref, dtype, f"{name} dx", scale=4)
        assert layer.get_config() == (
            {"type": name, "keepdims": True} if keepdims else {"type": name}
        )


def test_global_max_pool_ties_go_to_the_first_maximum_in_row_major_order(backend):
    x = np.array([[1.0, 5.0], [5.0, 2.0]])[None, :, :, None]
    _, dx = _run(tn.GlobalMaxPool2D(), backend, "float64", x, np.array([[3.0]]))
    assert to_numpy(dx)[0, :, :, 0].tolist() == [[0.0, 3.0], [0.0, 0.0]]


# ------------------------------------------------------------ shapes, arguments, errors


def test_output_shapes_defaults_and_aliases():
    assert tn.MaxPool2D().output_shape((26, 26, 32)) == (13, 13, 32)
    assert tn.MaxPool2D(2).output_shape((11, 11, 64)) == (5, 5, 64)
    assert tn.MaxPool2D(2, padding="same").output_shape((11, 11, 64)) == (6, 6, 64)
    assert tn.AvgPool2D((3, 2), strides=1).output_shape((5, 5, 1)) == (3, 4, 1)
    assert tn.AvgPool1D(4, 3, "same").output_shape((7, 2)) == (3, 2)
    assert tn.MaxPool1D().strides == (2,) and tn.MaxPool2D(3).strides == (3, 3)
    assert tn.MaxPooling2D is tn.MaxPool2D and tn.AveragePooling1D is tn.AvgPool1D
    assert tn.GlobalAveragePooling2D is tn.GlobalAvgPool2D
    assert tn.GlobalMaxPooling1D is tn.GlobalMaxPool1D


def test_config_round_trip():
    for layer in (tn.MaxPool2D((2, 3), strides=1, padding="same"), tn.AvgPool1D(3),
                  tn.GlobalMaxPool2D(keepdims=True), tn.GlobalAvgPool1D()):  # fmt: skip
        config = json.loads(json.dumps(layer.get_config()))
        rebuilt = tn.layers.from_config(config)
        assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()
    assert tn.MaxPool2D((2, 3), strides=1).get_config() == {
        "type": "MaxPool2D", "pool_size": [2, 3], "strides": [1, 1], "padding": "valid"
    }  # fmt: skip


BAD_ARGUMENTS = [
    (lambda: tn.MaxPool2D(0), r"^MaxPool2D: pool_size must be a positive integer or a tuple of 2"),
    (lambda: tn.AvgPool2D(2, strides=(1,)), r"^AvgPool2D: strides must be .* strides=\(1,\)$"),
    (
        lambda: tn.MaxPool1D(2, padding="full"),
        r"^MaxPool1D: padding must be one of 'valid', 'same', received padding='full'$",
    ),
    (lambda: tn.GlobalMaxPool2D(keepdims=1), r"^GlobalMaxPool2D: keepdims must be True or False"),
]


@pytest.mark.parametrize("make, message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shape_errors(backend):
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 0 \(MaxPool2D\) has a pool_size \(3, 3\) larger than its "
        r"input \(2, 5\); use a smaller pool_size or padding='same'$",
    ):
        tn.Sequential([tn.MaxPool2D(3)], input_shape=(2, 5, 1))
    tn.Sequential([tn.MaxPool2D(3, padding="same")], input_shape=(2, 5, 1))  # same: fine
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 1 \(AvgPool1D\) expects inputs \(batch, steps, channels\), "
        r"received shape \(None, 4, 4, 2\)$",
    ):
        tn.Sequential([tn.ReLU(), tn.AvgPool1D()], input_shape=(4, 4, 2))
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 0 \(GlobalAvgPool2D\) expects inputs \(batch, height, width, "
        r"channels\), received shape \(None, 4, 4\); add a channels axis",
    ):
        tn.Sequential([tn.GlobalAvgPool2D()], input_shape=(4, 4))
    with pytest.raises(
        ValueError,
        match=r"^MaxPool2D expects inputs \(batch, height, width, channels\), received shape "
        r"\(4, 4, 1\)$",
    ):
        tn.MaxPool2D().forward({}, {}, backend.asarray(np.zeros((4, 4, 1)), "float32"), backend)
