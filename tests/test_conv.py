"""Conv1D and Conv2D on every backend and dtype: forward and every gradient
against PyTorch autograd (``torch.nn.functional.conv1d/conv2d``, NCHW
transposes, float64) and against ``jax.vjp`` of
``jax.lax.conv_general_dilated``; central finite differences; Keras's
numbers for ``"same"`` and ``"causal"`` padding; arguments, shapes, errors,
configs; a small CNN trained to the same parameters on every backend and
round-tripped through a checkpoint.

Keras values: generated once with keras 3.15.1 (KERAS_BACKEND=jax, jax 0.10.2
with x64 enabled, ``keras.config.set_floatx("float64")`` and keras's
``BIT64_TO_BIT32_DTYPE`` emptied, as in tests/keras_reference.py) by::

    for name, cls, kw, shape in CONV_CASES:
        kw = dict(kw); kw.setdefault("padding", "same")
        layer = getattr(keras.layers, cls)(**kw)
        layer.build(shape)
        W = kernel(tuple(layer.kernel.shape))
        b = np.linspace(-0.5, 0.5, kw["filters"])
        layer.set_weights([W, b])
        out[name] = np.asarray(layer(inputs(shape))).tolist()  # float64

with ``inputs`` and ``kernel`` the functions of the same names below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DTYPES, assert_close, assert_fd_close, central_fd, to_numpy, torch_autograd

import tinynet as tn
from tinynet import random as tnrandom

# ------------------------------------------------------------ references


def inputs(shape):
    return np.sin(np.arange(np.prod(shape)) * 0.7 + 0.3).reshape(shape) * 2.0


def kernel(shape):
    return np.cos(np.arange(np.prod(shape)) * 0.37 + 0.1).reshape(shape)


def keras_same(n, k, s, d):
    """Keras's "same" padding of one axis, ``(before, after)``, written here
    from its documentation (independently of tinynet)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _pads(padding, spatial, k, s, d):
    if padding == "valid":
        return [(0, 0)] * len(spatial)
    if padding == "causal":
        return [((k[0] - 1) * d[0], 0)]
    return [keras_same(n, *a) for n, a in zip(spatial, zip(k, s, d))]


@torch_autograd
def torch_conv(x, W, b, strides, padding, dilation, dy):
    """``(y, dx, dW, db)`` by PyTorch autograd in float64, channels-last in and out."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = x.ndim - 2
    to_first = (0, rank + 1, *range(1, rank + 1))
    to_last = (0, *range(2, rank + 2), 1)
    xt = torch.tensor(x.transpose(to_first), requires_grad=True)
    Wt = torch.tensor(W.transpose(*range(rank + 1, rank - 1, -1), *range(rank)), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    pads = _pads(padding, x.shape[1:-1], W.shape[:rank], strides, dilation)
    flat = [p for pair in reversed(pads) for p in pair]  # torch pads the last axis first
    conv = F.conv2d if rank == 2 else F.conv1d
    y = conv(F.pad(xt, flat), Wt, bt, stride=strides, dilation=dilation)
    y.backward(torch.tensor(dy.transpose(to_first)))
    W_back = (*range(2, rank + 2), 1, 0)
    return (
        y.detach().numpy().transpose(to_last),
        xt.grad.numpy().transpose(to_last),
        Wt.grad.numpy().transpose(W_back),
        bt.grad.numpy(),
    )


def jax_conv(x, W, b, strides, padding, dilation, dy):
    """``(y, dx, dW, db)`` by ``jax.vjp`` of ``lax.conv_general_dilated``
    (XLA's "SAME" padding for "same"; explicit padding for "causal")."""
    import jax

    rank = x.ndim - 2
    spatial = "HW" if rank == 2 else "W"
    if padding == "causal":
        pad = [((W.shape[0] - 1) * dilation[0], 0)]
    else:
        pad = padding.upper()

    def f(x, W, b):
        y = jax.lax.conv_general_dilated(
            x, W, strides, pad, rhs_dilation=dilation,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )  # fmt: skip
        return y + b

    y, vjp = jax.vjp(f, x, W, b)
    return (np.asarray(y), *(np.asarray(g) for g in vjp(dy)))


# batch, spatial, channels, filters, kernel, strides, padding, dilation
CASES_2D = {
    "k3-valid": (3, (6, 7), 2, 3, (3, 3), (1, 1), "valid", (1, 1)),
    "k3-same": (1, (5, 5), 1, 1, (3, 3), (1, 1), "same", (1, 1)),
    "k23-s2-valid-odd": (3, (7, 9), 3, 2, (2, 3), (2, 2), "valid", (1, 1)),
    "k32-s2-same": (2, (5, 6), 2, 4, (3, 2), (2, 2), "same", (1, 1)),
    "k3-s21-same": (1, (6, 5), 2, 2, (3, 3), (2, 1), "same", (1, 1)),
    "k3-d2-valid": (2, (7, 8), 2, 3, (3, 3), (1, 1), "valid", (2, 2)),
    "k2-d2-same": (3, (5, 6), 3, 2, (2, 3), (1, 1), "same", (2, 1)),
    "k1-s3-valid": (1, (7, 5), 4, 3, (1, 1), (3, 3), "valid", (1, 1)),
}
CASES_1D = {
    "k3-valid": (3, (9,), 2, 3, (3,), (1,), "valid", (1,)),
    "k4-s2-same": (2, (9,), 3, 2, (4,), (2,), "same", (1,)),
    "k3-d2-causal": (1, (8,), 2, 2, (3,), (1,), "causal", (2,)),
    "k2-s3-valid-odd": (3, (10,), 1, 4, (2,), (3,), "valid", (1,)),
    "k3-d3-same": (2, (7,), 2, 1, (3,), (1,), "same", (3,)),
}
CASES = {f"2d-{k}": v for k, v in CASES_2D.items()} | {f"1d-{k}": v for k, v in CASES_1D.items()}


def _case(name):
    batch, spatial, c, f, k, s, padding, d = CASES[name]
    cls = tn.Conv2D if len(spatial) == 2 else tn.Conv1D
    layer = cls(f, k, strides=s, padding=padding, dilation_rate=d)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    x = rng.normal(size=(batch, *spatial, c))
    W = rng.normal(size=(*k, c, f)) * 0.5
    b = rng.normal(size=f)
    out = layer.output_shape((*spatial, c))
    dy = rng.normal(size=(batch, *out))
    return layer, x, W, b, dy


def _run(layer, backend, dtype, x, W, b, dy, need_dx=True):
    params = {"W": backend.asarray(W, dtype), "b": backend.asarray(b, dtype)}
    y, _, back = layer.forward(params, {}, backend.asarray(x, dtype), backend)
    dx, grads = back(backend.asarray(dy, dtype), need_dx)
    return y, dx, grads


def _rounded(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _check(layer, backend, dtype, x, W, b, dy, reference, what):
    x, W, b, dy = (_rounded(a, dtype) for a in (x, W, b, dy))
    y, dx, grads = _run(layer, backend, dtype, x, W, b, dy)
    y_ref, dx_ref, dW_ref, db_ref = reference(
        x, W, b, layer.strides, layer.padding, layer.dilation_rate, dy
    )
    assert tuple(y.shape) == y_ref.shape and to_numpy(y).dtype == np.dtype(dtype)
    assert set(grads) == {"W", "b"}
    terms = dy.size // dy.shape[-1]  # products summed into each dW entry
    taps = np.prod(W.shape[:-1])  # ... and into each output
    assert_close(y, y_ref, dtype, f"{what} forward", scale=taps)
    assert_close(dx, dx_ref, dtype, f"{what} dx", scale=taps)
    assert_close(grads["W"], dW_ref, dtype, f"{what} dW", scale=terms)
    assert_close(grads["b"], db_ref, dtype, f"{what} db", scale=terms)


# ------------------------------------------------------------ against PyTorch and JAX


@pytest.mark.parametrize("name", list(CASES))
def test_conv_matches_torch_autograd(backend, dtype, name):
    layer, x, W, b, dy = _case(name)
    _check(layer, backend, dtype, x, W, b, dy, torch_conv, f"{name} vs torch")


@pytest.mark.parametrize("name", list(CASES))
def test_conv_matches_jax_vjp_of_lax_conv(backend, jax_backend, name):
    layer, x, W, b, dy = _case(name)
    _check(layer, backend, "float64", x, W, b, dy, jax_conv, f"{name} vs jax.vjp")


def test_the_first_layer_skips_its_input_gradient(backend):
    layer, x, W, b, dy = _case("2d-k32-s2-same")
    _, dx, grads = _run(layer, backend, "float64", x, W, b, dy, need_dx=False)
    _, _, dW_ref, _ = torch_conv(x, W, b, (2, 2), "same", (1, 1), dy)
    assert dx is None
    assert_close(grads["W"], dW_ref, "float64", "dW without dx", scale=10)


@pytest.mark.parametrize("name", ["2d-k32-s2-same", "2d-k2-d2-same", "1d-k3-d2-causal"])
def test_conv_gradients_match_finite_differences(backend, name):
    """Central differences of the library's own forward, float64."""
    layer, x, W, b, dy = _case(name)
    _, dx, grads = _run(layer, backend, "float64", x, W, b, dy)

    def loss(x=x, W=W, b=b):
        y, _, _ = _run(layer, backend, "float64", x, W, b, dy)
        return float(np.sum(to_numpy(y) * dy))

    assert_fd_close(dx, central_fd(lambda v: loss(x=v), x), f"{name} dx")
    assert_fd_close(grads["W"], central_fd(lambda v: loss(W=v), W), f"{name} dW")
    assert_fd_close(grads["b"], central_fd(lambda v: loss(b=v), b), f"{name} db")


def test_use_bias_false_has_no_b(backend):
    layer = tn.Conv2D(2, 3, use_bias=False)
    _, params, _ = layer.init(tnrandom.key(0, backend), (5, 5, 1), backend.dtype("float64"))
    assert set(params) == {"W"}
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 1))
    y, _, back = layer.forward(params, {}, backend.asarray(x, "float64"), backend)
    W = to_numpy(params["W"])
    y_ref, _, dW_ref, _ = torch_conv(
        x, W, np.zeros(2), (1, 1), "valid", (1, 1), np.ones((2, 3, 3, 2))
    )
    assert_close(y, y_ref, "float64", "forward without bias")
    _, grads = back(backend.asarray(np.ones((2, 3, 3, 2)), "float64"))
    assert set(grads) == {"W"}
    assert_close(grads["W"], dW_ref, "float64", "dW without bias", scale=10)


# ------------------------------------------------------------ Keras's numbers

KERAS_CASES = [  # name, class, kwargs (padding "same" unless given), input shape
    ("conv2d_k32_s2_same", "Conv2D", dict(filters=3, kernel_size=(3, 2), strides=2), (2, 5, 6, 2)),
    ("conv2d_k3_d2_same", "Conv2D", dict(filters=2, kernel_size=3, dilation_rate=2), (1, 6, 5, 2)),
    ("conv2d_k4_s3_same", "Conv2D", dict(filters=2, kernel_size=4, strides=3), (1, 7, 8, 1)),
    ("conv1d_k4_s2_same", "Conv1D", dict(filters=2, kernel_size=4, strides=2), (2, 9, 3)),
    (
        "conv1d_k3_d2_causal",
        "Conv1D",
        dict(filters=2, kernel_size=3, dilation_rate=2, padding="causal"),
        (1, 8, 2),
    ),
]
KERAS_VALUES = {
    "conv2d_k32_s2_same": [
        [
            [
                [-0.8916688679630698, -1.429903384438476, -1.774607185810145],
                [0.729914829674839, 2.379771528010697, 3.707537314043215],
                [-2.426037591315568, -3.0546444143192555, -3.2698194458295693],
            ],
            [
                [1.4685685812665883, 1.7814138458611455, 1.8531531034085311],
                [-3.1223952266269572, -2.4467831780711973, -1.4400105047422769],
                [2.473190155914953, 2.8294137004407434, 2.8026893739915772],
            ],
            [
                [-3.1479310986655733, -2.1193940379631133, -0.8040069367492386],
                [2.4361784256327743, 2.037946567138811, 1.3638882012221432],
                [-3.3851347189755003, -1.7210035313312744, 0.1760574106861001],
            ],
        ],
        [
            [
                [-2.698678544788548, -2.2529189606220124, -1.5022373640559041],
                [1.1070547310966965, 1.2707574392496428, 1.262469089392786],
                [-1.3297271958445944, -0.14175313704180717, 1.0654065438655609],
            ],
            [
                [0.8126480422628897, 1.389502606224288, 1.7782945108846193],
                [-0.8253936900926941, -0.45497702711863824, -0.022981357917790657],
                [-1.1994616336269832, -0.5321235673398926, 0.2072349274821485],
            ],
            [
                [-0.6480872782031865, 0.7355343875924574, 2.01960492457526],
                [-1.3499358350853747, -1.3601433264757639, -1.1862617993484486],
                [1.249744342107811, 1.82758046984123, 2.1580621545491985],
            ],
        ],
    ],
    "conv2d_k3_d2_same": [
        [
            [
                [-2.005389246919636, -0.01732096534299654],
                [2.4629032621936844, 3.8595602767272603],
                [-0.20986132870916968, 0.6407910742821699],
                [-1.8759265974828556, 0.3383500367418047],
                [1.6093316385559753, 3.3094865875050563],
            ],
            [
                [0.5109959926428669, 2.4083861466245264],
                [3.073104082909164, 3.758359496077082],
                [-0.658214989594841, 0.37095148558045454],
                [0.024862959411204533, 2.2694974744914074],
                [2.246561055432704, 3.0442048977413303],
            ],
            [
                [2.263191383025453, 2.713705308938508],
                [4.332453470822444, 2.8900799817904077],
                [1.7677737397151394, 2.7511951418245664],
                [5.763789152878484, 7.888391393679566],
                [0.3804343998768569, 0.8850088805285372],
            ],
            [
                [4.4917997374460565, 3.5115070664749304],
                [1.848602552497968, 1.0968696355555245],
                [1.2098825440480572, 3.0514552833216575],
                [4.099478372886582, 5.489590559150548],
                [-3.9124594604156293, -4.091858747463164],
            ],
            [
                [0.20317791527778706, -0.05298989999326009],
                [-3.0357362402740935, -2.518350495821107],
                [0.06184845532878458, 1.1655772204175063],
                [1.0717721689562754, 0.9929032551826893],
                [-3.357866663128226, -2.6387028080269097],
            ],
            [
                [-1.7400956965673653, -1.8665336038643745],
                [-3.167833588042536, -1.7488941008284526],
                [0.25542691702159015, 1.3678999414909914],
                [-1.3984453890027377, -1.2767850030865906],
                [-4.026271178800171, -2.5505491393340964],
            ],
        ]
    ],
    "conv2d_k4_s3_same": [
        [
            [
                [0.8950931704673493, 2.303585481246464],
                [-3.354505547232307, -1.7459788076891343],
                [0.28823285256702447, 0.4889569336766036],
            ],
            [
                [-1.4917161731715658, -0.7876359205333385],
                [2.5272926655874435, 2.485971670564017],
                [-1.648389047682034, 0.15027583843301018],
            ],
            [
                [-0.8534772791215925, 1.0160859248835536],
                [-1.2200516812966589, -0.7937994797948404],
                [1.0717348429699418, 1.5808316719944553],
            ],
        ]
    ],
    "conv1d_k4_s2_same": [
        [
            [-7.585164253459656, -4.307159159132982],
            [8.978957391640437, 11.221806407850526],
            [0.4113337878294161, -3.128384176130485],
            [-10.87253989431399, -6.664097195191864],
            [4.427277184842779, 5.924771242397698],
        ],
        [
            [-7.841950279855064, -4.687396481222923],
            [8.645327956253544, 11.113978691153862],
            [0.9844022114591069, -2.606398168162871],
            [-11.10081645103332, -7.068088056484285],
            [4.165408493907057, 5.761794931967469],
        ],
    ],
    "conv1d_k3_d2_causal": [
        [
            [-2.4202268788041805, -0.9353363081016206],
            [-3.5452705447316872, -2.0987402994871767],
            [-0.7665821798651857, -0.6810888926000067],
            [1.90781428679916, 1.3366711194108183],
            [2.2964696856588613, 3.0865661479878215],
            [0.3361562437166452, 2.406680297706477],
            [-3.012231510133428, -1.4384201427371184],
            [-2.1901498678793176, -2.0656157645090882],
        ]
    ],
}


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_same_and_causal_padding_match_keras(backend, dtype, case):
    name, cls, kwargs, shape = case
    kwargs = {"padding": "same", **kwargs}
    layer = getattr(tn, cls)(**kwargs)
    out, params, _ = layer.init(tnrandom.key(0, backend), shape[1:], backend.dtype(dtype))
    W, b = kernel(tuple(params["W"].shape)), np.linspace(-0.5, 0.5, kwargs["filters"])
    y, _, _ = layer.forward(
        {"W": backend.asarray(W, dtype), "b": backend.asarray(b, dtype)},
        {}, backend.asarray(inputs(shape), dtype), backend,
    )  # fmt: skip
    expected = np.asarray(KERAS_VALUES[name])
    assert tuple(y.shape) == expected.shape and tuple(y.shape[1:]) == out
    assert_close(y, expected, dtype, f"{name} vs Keras", scale=30)


# ------------------------------------------------------------ shapes, arguments, errors


def test_output_shapes_follow_keras():
    assert tn.Conv2D(32, 3).output_shape((28, 28, 1)) == (26, 26, 32)
    assert tn.Conv2D(8, 3, padding="same").output_shape((28, 28, 1)) == (28, 28, 8)
    assert tn.Conv2D(8, 3, strides=2, padding="same").output_shape((7, 8, 2)) == (4, 4, 8)
    assert tn.Conv2D(4, (2, 3), strides=(2, 1)).output_shape((7, 9, 3)) == (3, 7, 4)
    assert tn.Conv2D(4, 3, dilation_rate=2).output_shape((7, 8, 2)) == (3, 4, 4)
    assert tn.Conv1D(5, 4, strides=3).output_shape((10, 2)) == (3, 5)
    assert tn.Conv1D(5, 3, padding="causal", dilation_rate=2).output_shape((8, 2)) == (8, 5)


def test_int_and_tuple_arguments_and_config_round_trip():
    layer = tn.Conv2D(4, (2, 3), strides=(2, 1), padding="SAME", use_bias=False,
                      kernel_initializer="he_normal")  # fmt: skip
    assert layer.kernel_size == (2, 3) and layer.strides == (2, 1) and layer.padding == "same"
    config = layer.get_config()
    rebuilt = tn.layers.from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is tn.Conv2D and rebuilt.get_config() == config
    assert config == {
        "type": "Conv2D", "filters": 4, "kernel_size": [2, 3], "strides": [2, 1],
        "padding": "same", "dilation_rate": [1, 1], "use_bias": False,
        "kernel_initializer": "he_normal",
    }  # fmt: skip
    one = tn.Conv1D(3, 5, padding="causal", dilation_rate=2)
    assert tn.layers.from_config(one.get_config()).get_config() == one.get_config()
    assert tn.Conv2D(3, 3).kernel_size == (3, 3) and tn.Conv1D(3, [4]).kernel_size == (4,)


def test_parameters_have_the_keras_layout_and_glorot_scale():
    model = tn.Sequential([tn.Conv2D(6, (3, 2))], input_shape=(9, 9, 4), dtype="float64")
    W, b = to_numpy(model.params[0]["W"]), to_numpy(model.params[0]["b"])
    assert W.shape == (3, 2, 4, 6) and b.shape == (6,) and not b.any()
    limit = np.sqrt(6.0 / (3 * 2 * 4 + 3 * 2 * 6))  # fans count the receptive field
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.8 * limit


BAD_ARGUMENTS = [
    (lambda: tn.Conv2D(0, 3), r"^Conv2D: filters must be a positive integer, received filters=0$"),
    (
        lambda: tn.Conv2D(2, (3, 0)),
        r"^Conv2D: kernel_size must be a positive integer or a tuple of 2 positive integers, "
        r"received kernel_size=\(3, 0\)$",
    ),
    (lambda: tn.Conv2D(2, (3, 3, 3)), r"kernel_size must be .* received kernel_size=\(3, 3, 3\)"),
    (lambda: tn.Conv1D(2, 3, strides=1.5), r"^Conv1D: strides must be a positive integer, rec"),
    (
        lambda: tn.Conv2D(2, 3, padding="causal"),
        r"^Conv2D: padding must be one of 'valid', 'same', received padding='causal'$",
    ),
    (
        lambda: tn.Conv2D(2, 3, strides=2, dilation_rate=2),
        r"^Conv2D: strides > 1 cannot be combined with dilation_rate > 1 \(as in Keras\)",
    ),
    (lambda: tn.Conv2D(2, 3, use_bias=1), r"^Conv2D: use_bias must be True or False"),
    (lambda: tn.Conv2D(2, 3, kernel_initializer="nope"), r"nope"),
]


@pytest.mark.parametrize("make, message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shape_errors_name_the_layer_and_the_fix(backend):
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 0 \(Conv2D\) expects inputs \(batch, height, width, "
        r"channels\), received shape \(None, 28, 28\); add a channels axis, e\.g\. reshape the "
        r"data to \(n, 28, 28, 1\)$",
    ):
        tn.Sequential([tn.Conv2D(4, 3)], input_shape=(28, 28))
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 2 \(Conv2D\) has a kernel \(5, 5\) larger than its input "
        r"\(3, 3\); use a smaller kernel_size",
    ):
        tn.Sequential([tn.Conv2D(2, 3), tn.ReLU(), tn.Conv2D(2, 5)], input_shape=(5, 5, 1))
    with pytest.raises(ValueError, match=r"kernel \(3,\) \(dilated by \(3,\): \(7,\)\)"):
        tn.Sequential([tn.Conv1D(2, 3, dilation_rate=3)], input_shape=(6, 1))
    with pytest.raises(
        ValueError,
        match=r"^Sequential: layer 0 \(Conv1D\) expects inputs \(batch, steps, channels\)",
    ):
        tn.Sequential([tn.Conv1D(2, 3)], input_shape=(6, 6, 1))
    layer = tn.Conv2D(2, 3)
    _, params, _ = layer.init(tnrandom.key(0, backend), (5, 5, 1), backend.dtype("float32"))
    with pytest.raises(
        ValueError,
        match=r"^Conv2D expects inputs \(batch, height, width, channels\), received shape "
        r"\(5, 5, 1\)$",
    ):
        layer.forward(params, {}, backend.asarray(np.zeros((5, 5, 1)), "float32"), backend)
    with pytest.raises(
        ValueError,
        match=r"^Conv2D expects inputs with 1 channels \(its kernel's\), received shape "
        r"\(2, 5, 5, 3\)$",
    ):
        layer.forward(params, {}, backend.asarray(np.zeros((2, 5, 5, 3)), "float32"), backend)


def test_reference_cnn_builds_and_summarises():
    model = tn.Sequential(
        [tn.Conv2D(32, 3), tn.ReLU(), tn.MaxPool2D(2), tn.Conv2D(64, 3), tn.ReLU(),
         tn.MaxPool2D(2), tn.Flatten(), tn.Dense(128), tn.ReLU(), tn.Dense(10), tn.Softmax()],
        input_shape=(28, 28, 1),
    )  # fmt: skip
    assert model.shapes[:7] == [(26, 26, 32), (26, 26, 32), (13, 13, 32), (11, 11, 64),
                                (11, 11, 64), (5, 5, 64), (1600,)]  # fmt: skip
    lines = model.summary().splitlines()
    assert "input shape (None, 28, 28, 1)" in lines[0]

    def row(*parts):
        return any(
            all(p in line for p in parts[:-1]) and line.endswith(parts[-1]) for line in lines
        )

    assert row("Conv2D(32, (3, 3))", "(None, 26, 26, 32)", " 320")
    assert row("Conv2D(64, (3, 3))", "(None, 11, 11, 64)", " 18,496")
    assert row("MaxPool2D((2, 2))", "(None, 5, 5, 64)", " 0")
    assert row("Flatten()", "(None, 1600)", " 0")
    assert lines[-1] == "total parameters: 225,034"  # 320 + 18,496 + 204,928 + 1,290


# ------------------------------------------------------------ end to end


def _tiny_cnn(backend_name):
    return tn.Sequential(
        [tn.Conv2D(4, 3, padding="same"), tn.ReLU(), tn.MaxPool2D(2),
         tn.Conv2D(5, (2, 3)), tn.Tanh(), tn.AvgPool2D((1, 2)), tn.Flatten(), tn.Dense(3),
         tn.Softmax()],
        input_shape=(8, 8, 1), dtype="float64", seed=3, backend=backend_name,
    )  # fmt: skip


def _fit(backend_name):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8, 8, 1)), rng.integers(0, 3, 40)
    model = _tiny_cnn(backend_name)
    model.fit(x, y, epochs=2, batch_size=8, optimizer=tn.optimizers.Adam(lr=0.01),
              loss="sparse_categorical_crossentropy", verbose=0, seed=1)  # fmt: skip
    return model, x


@pytest.mark.slow
def test_a_tiny_cnn_trains_to_the_same_parameters_on_every_backend(backend):
    reference, _ = _fit("numpy")
    model, _ = _fit(backend.name)
    for i, (got, want) in enumerate(zip(model.params, reference.params)):
        for name in want:
            np.testing.assert_allclose(
                to_numpy(got[name]), to_numpy(want[name]), rtol=1e-12, atol=1e-12,
                err_msg=f"layer {i} {name} on {backend.name}",
            )  # fmt: skip
    assert not np.allclose(
        to_numpy(reference.params[0]["W"]), to_numpy(_tiny_cnn("numpy").params[0]["W"])
    )


def test_a_cnn_checkpoint_round_trip_reproduces_predictions(backend, tmp_path):
    model, x = _fit(backend.name)
    model.save(tmp_path / "cnn.safetensors")
    loaded = tn.load(tmp_path / "cnn.safetensors", backend=backend.name)
    configs = [layer.get_config() for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == configs
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(model.predict(x)))


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_a_cnn_learns_a_pattern(dtype_name):
    """Sanity: bright top-left corner vs bright bottom-right, learned in a few epochs."""
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.1, size=(64, 6, 6, 1))
    y = rng.integers(0, 2, 64)
    x[y == 0, :2, :2, 0] += 1.0
    x[y == 1, 4:, 4:, 0] += 1.0
    model = tn.Sequential(
        [tn.Conv2D(3, 2, padding="same"), tn.ReLU(), tn.MaxPool2D(3), tn.Flatten(),
         tn.Dense(2), tn.Softmax()],
        input_shape=(6, 6, 1), dtype=dtype_name,
    )  # fmt: skip
    model.fit(x, y, epochs=30, batch_size=16, optimizer=tn.optimizers.Adam(lr=0.05),
              loss="sparse_categorical_crossentropy", verbose=0)  # fmt: skip
    logs = model.evaluate(x, y, loss="sparse_categorical_crossentropy")
    assert logs["accuracy"] == 1.0
