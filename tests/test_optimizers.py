"""Optimizers: several steps against the update equations written out here in
float64 NumPy, against optax on JAX, and the contracts of ``init``/``update``
(pure, dtype-preserving, jit-able, plain-array state, config round trip,
validation)."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from helpers import assert_close, to_numpy

from tinynet import backends, optimizers, schedules
from tinynet.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

SHAPES = [{"W": (3, 4), "b": (4,)}, {}, {"W": (4, 2), "b": (2,)}]
N_STEPS = 6

# ---------------------------------------------------------------- data


def host_params(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s) for k, s in layer.items()} for layer in SHAPES]


def host_grads(n: int = N_STEPS, seed: int = 1, scale: float = 1.0) -> list:
    """``n`` gradient trees with a few exact zeros (one entry always zero, one
    leaf zero at step 1) so the epsilon handling is exercised."""
    rng = np.random.default_rng(seed)
    seq = []
    for k in range(n):
        tree = [
            {key: scale * rng.standard_normal(s) for key, s in layer.items()} for layer in SHAPES
        ]
        tree[0]["W"][0, 0] = 0.0
        if k == 1:
            tree[2]["b"][:] = 0.0
        seq.append(tree)
    return seq


def rounded(tree: list, dtype: str) -> list:
    """The float64 values the backend really sees after casting to ``dtype``."""
    return [{k: v.astype(dtype).astype(np.float64) for k, v in layer.items()} for layer in tree]


def on_backend(backend, tree: list, dtype: str) -> list:
    return [{k: backend.asarray(v, dtype) for k, v in layer.items()} for layer in tree]


def leaves(tree: list) -> list[tuple[int, str]]:
    return [(i, k) for i, layer in enumerate(tree) for k in layer]


def run(opt, backend, dtype: str, params0: list, grads_seq: list):
    params = on_backend(backend, params0, dtype)
    state = opt.init(params)
    for g in grads_seq:
        params, state = opt.update(on_backend(backend, g, dtype), state, params)
    return params, state


def assert_tree_close(actual: list, expected: list, dtype: str, what: str = "", scale: float = 1.0):
    assert len(actual) == len(expected)
    for i, (a_layer, e_layer) in enumerate(zip(actual, expected, strict=True)):
        assert sorted(a_layer) == sorted(e_layer), f"{what}: layer {i} keys differ"
        for k in e_layer:
            assert_close(a_layer[k], e_layer[k], dtype, f"{what} layer {i} {k}", scale)


# ---------------------------------------------------------------- references
# Written from the published equations (Keras 3 forms), float64, one leaf at a
# time, deliberately not sharing code with tinynet.optimizers.


def global_clip(g: list, clipnorm: float | None) -> list:
    if clipnorm is None:
        return g
    norm = math.sqrt(sum(float(np.sum(v * v)) for layer in g for v in layer.values()))
    factor = min(1.0, clipnorm / norm) if norm > 0 else 1.0
    return [{k: v * factor for k, v in layer.items()} for layer in g]


def ref_sgd(
    params, grads_seq, lr=0.01, momentum=0.0, nesterov=False, decay=0.0, clipnorm=None, lr_fn=None
):
    p = copy.deepcopy(params)
    vel = {key: 0.0 for key in leaves(p)}
    for it, g in enumerate(grads_seq):
        g = global_clip(g, clipnorm)
        cur = (lr_fn(it) if lr_fn else lr) * (1.0 / (1.0 + decay * it))
        for i, k in leaves(p):
            if momentum == 0:
                p[i][k] = p[i][k] - cur * g[i][k]
                continue
            vel[i, k] = momentum * vel[i, k] - cur * g[i][k]
            if nesterov:
                p[i][k] = p[i][k] + momentum * vel[i, k] - cur * g[i][k]
            else:
                p[i][k] = p[i][k] + vel[i, k]
    return p


def ref_adagrad(
    params, grads_seq, lr=0.01, epsilon=1e-7, initial_accumulator_value=0.1, clipnorm=None
):
    p = copy.deepcopy(params)
    acc = {key: initial_accumulator_value for key in leaves(p)}
    for g in grads_seq:
        g = global_clip(g, clipnorm)
        for i, k in leaves(p):
            acc[i, k] = acc[i, k] + g[i][k] ** 2
            p[i][k] = p[i][k] - lr * g[i][k] / np.sqrt(acc[i, k] + epsilon)
    return p


def ref_rmsprop(
    params, grads_seq, lr=0.001, rho=0.9, epsilon=1e-7, momentum=0.0, centered=False, clipnorm=None
):
    p = copy.deepcopy(params)
    ms = {key: 0.0 for key in leaves(p)}
    mg = {key: 0.0 for key in leaves(p)}
    mom = {key: 0.0 for key in leaves(p)}
    for g in grads_seq:
        g = global_clip(g, clipnorm)
        for i, k in leaves(p):
            ms[i, k] = rho * ms[i, k] + (1 - rho) * g[i][k] ** 2
            denom = ms[i, k] + epsilon
            if centered:
                mg[i, k] = rho * mg[i, k] + (1 - rho) * g[i][k]
                denom = denom - mg[i, k] ** 2
            increment = lr * g[i][k] / np.sqrt(denom)
            if momentum > 0:
                mom[i, k] = momentum * mom[i, k] + increment
                p[i][k] = p[i][k] - mom[i, k]
            else:
                p[i][k] = p[i][k] - increment
    return p


def ref_adam(
    params,
    grads_seq,
    lr=0.001,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-7,
    amsgrad=False,
    weight_decay=0.0,
    clipnorm=None,
    lr_fn=None,
    return_state=False,
):
    p = copy.deepcopy(params)
    m = {key: 0.0 for key in leaves(p)}
    v = {key: 0.0 for key in leaves(p)}
    v_max = {key: 0.0 for key in leaves(p)}
    for it, g in enumerate(grads_seq):
        g = global_clip(g, clipnorm)
        t = it + 1
        cur = lr_fn(it) if lr_fn else lr
        for i, k in leaves(p):
            p[i][k] = p[i][k] - cur * weight_decay * p[i][k]  # decoupled, before the step
            m[i, k] = beta_1 * m[i, k] + (1 - beta_1) * g[i][k]
            v[i, k] = beta_2 * v[i, k] + (1 - beta_2) * g[i][k] ** 2
            v_max[i, k] = np.maximum(v_max[i, k], v[i, k])
            denom_v = v_max[i, k] if amsgrad else v[i, k]
            # Keras: epsilon added to sqrt of the *uncorrected* second moment
            alpha = cur * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            p[i][k] = p[i][k] - alpha * m[i, k] / (np.sqrt(denom_v) + epsilon)
    if return_state:
        return p, m, v
    return p


def _exp_decay(it):
    return 0.05 * 0.5 ** (it / 2)


def _cosine(it):
    it = min(it, 4)
    return 0.02 * (0.9 * 0.5 * (1 + math.cos(math.pi * it / 4)) + 0.1)


CASES = {
    "sgd": (lambda: SGD(0.1), lambda p, g: ref_sgd(p, g, lr=0.1)),
    "sgd-decay": (lambda: SGD(0.1, decay=0.5), lambda p, g: ref_sgd(p, g, lr=0.1, decay=0.5)),
    "sgd-momentum": (
        lambda: SGD(0.05, momentum=0.9),
        lambda p, g: ref_sgd(p, g, lr=0.05, momentum=0.9),
    ),
    "sgd-nesterov-decay": (
        lambda: SGD(0.05, momentum=0.8, nesterov=True, decay=0.2),
        lambda p, g: ref_sgd(p, g, lr=0.05, momentum=0.8, nesterov=True, decay=0.2),
    ),
    "sgd-clipnorm": (
        lambda: SGD(0.1, clipnorm=0.7),
        lambda p, g: ref_sgd(p, g, lr=0.1, clipnorm=0.7),
    ),
    "sgd-schedule": (
        lambda: SGD(schedules.ExponentialDecay(0.05, 2, 0.5), momentum=0.5),
        lambda p, g: ref_sgd(p, g, momentum=0.5, lr_fn=_exp_decay),
    ),
    "adagrad": (lambda: Adagrad(0.1), lambda p, g: ref_adagrad(p, g, lr=0.1)),
    "adagrad-zero-init": (
        lambda: Adagrad(0.1, epsilon=1e-3, initial_accumulator_value=0.0),
        lambda p, g: ref_adagrad(p, g, lr=0.1, epsilon=1e-3, initial_accumulator_value=0.0),
    ),
    "rmsprop": (lambda: RMSprop(0.01), lambda p, g: ref_rmsprop(p, g, lr=0.01)),
    "rmsprop-centered-momentum": (
        lambda: RMSprop(0.01, rho=0.8, momentum=0.5, centered=True, epsilon=1e-4),
        lambda p, g: ref_rmsprop(p, g, lr=0.01, rho=0.8, momentum=0.5, centered=True, epsilon=1e-4),
    ),
    "adam": (lambda: Adam(0.01), lambda p, g: ref_adam(p, g, lr=0.01)),
    "adam-big-eps": (
        lambda: Adam(0.01, beta_1=0.5, beta_2=0.9, epsilon=0.1),
        lambda p, g: ref_adam(p, g, lr=0.01, beta_1=0.5, beta_2=0.9, epsilon=0.1),
    ),
    "adam-beta1-zero": (
        lambda: Adam(0.01, beta_1=0.0),
        lambda p, g: ref_adam(p, g, lr=0.01, beta_1=0.0),
    ),
    "adam-amsgrad": (
        lambda: Adam(0.01, amsgrad=True, beta_2=0.9),
        lambda p, g: ref_adam(p, g, lr=0.01, amsgrad=True, beta_2=0.9),
    ),
    "adam-clip-schedule": (
        lambda: Adam(schedules.CosineDecay(0.02, 4, alpha=0.1), clipnorm=1.5),
        lambda p, g: ref_adam(p, g, lr_fn=_cosine, clipnorm=1.5),
    ),
    "adamw": (
        lambda: AdamW(0.01, weight_decay=0.1),
        lambda p, g: ref_adam(p, g, lr=0.01, weight_decay=0.1),
    ),
    "adamw-amsgrad-schedule": (
        lambda: AdamW(schedules.ExponentialDecay(0.05, 2, 0.5), weight_decay=0.5, amsgrad=True),
        lambda p, g: ref_adam(p, g, lr_fn=_exp_decay, weight_decay=0.5, amsgrad=True),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_equations(backend, dtype, case):
    make, reference = CASES[case]
    params0 = rounded(host_params(), dtype)
    grads_seq = [rounded(g, dtype) for g in host_grads()]
    got, _ = run(make(), backend, dtype, params0, grads_seq)
    expected = reference(params0, grads_seq)
    assert_tree_close(got, expected, dtype, case)
    # the test can fail: the parameters really moved
    moved = max(
        np.max(np.abs(e[k] - p0[k])) for e, p0 in zip(expected, params0, strict=True) for k in p0
    )
    assert moved > 1e-3


@pytest.mark.parametrize("nesterov", [False, True])
def test_weight_decay_composes_with_any_rule(backend, dtype, nesterov):
    """Keras 3's decoupled decay for every optimizer: each step first
    ``p = p * (1 - lr * wd)``, then the rule (here SGD with momentum)."""
    lr, wd, mu = 0.05, 0.3, 0.8
    params0 = rounded(host_params(), dtype)
    grads_seq = [rounded(g, dtype) for g in host_grads()]
    got, _ = run(
        SGD(lr, momentum=mu, nesterov=nesterov, weight_decay=wd), backend, dtype, params0, grads_seq
    )
    p = copy.deepcopy(params0)
    vel = {key: 0.0 for key in leaves(p)}
    for g in grads_seq:
        for i, k in leaves(p):
            p[i][k] = p[i][k] * (1 - lr * wd)
            vel[i, k] = mu * vel[i, k] - lr * g[i][k]
            p[i][k] = p[i][k] + (mu * vel[i, k] - lr * g[i][k] if nesterov else vel[i, k])
    assert_tree_close(got, p, dtype, "SGD with weight decay")
    without, _ = run(SGD(lr, momentum=mu, nesterov=nesterov), backend, dtype, params0, grads_seq)
    assert max(np.max(np.abs(to_numpy(a[k]) - to_numpy(b[k]))) for a, b in zip(got, without)
               for k in a) > 1e-3  # fmt: skip
    assert SGD(lr, weight_decay=wd).get_config()["weight_decay"] == wd


def test_adam_moments_are_keras_m_and_v(backend, dtype):
    params0 = rounded(host_params(), dtype)
    grads_seq = [rounded(g, dtype) for g in host_grads()]
    _, state = run(Adam(0.01, beta_1=0.8, beta_2=0.95), backend, dtype, params0, grads_seq)
    _, m, v = ref_adam(params0, grads_seq, lr=0.01, beta_1=0.8, beta_2=0.95, return_state=True)
    for i, k in leaves(params0):
        assert_close(state["m"][i][k], m[i, k], dtype, f"m {i} {k}")
        assert_close(state["v"][i][k], v[i, k], dtype, f"v {i} {k}")
    assert int(to_numpy(state["step"])) == N_STEPS


def test_sgd_time_decay_numbers(backend, dtype):
    """lr / (1 + decay * step) with step = 0 at the first update:
    0.5, 0.4, 1/3, 2/7 for lr = 0.5, decay = 0.25."""
    opt = SGD(lr=0.5, decay=0.25)
    params = [{"w": backend.asarray(np.zeros(2), dtype)}]
    grads = [{"w": backend.asarray(np.array([1.0, -2.0]), dtype)}]
    state = opt.init(params)
    total = 0.0
    for lr_k in (0.5, 0.4, 1 / 3, 2 / 7):
        params, state = opt.update(grads, state, params)
        total += lr_k
        assert_close(params[0]["w"], [-total, 2 * total], dtype, f"after lr {lr_k}")


# ---------------------------------------------------------------- clipnorm


def test_clipnorm_is_global_and_exact(backend, dtype):
    params = [
        {"W": backend.asarray(np.zeros((2, 2)), dtype), "b": backend.asarray(np.zeros(2), dtype)}
    ]
    g_host = [{"W": np.array([[3.0, 0.0], [0.0, 0.0]]), "b": np.array([0.0, 4.0])}]  # global norm 5
    grads = on_backend(backend, g_host, dtype)

    opt = SGD(lr=1.0, clipnorm=2.0)
    new, _ = opt.update(grads, opt.init(params), params)
    # global: every leaf scaled by 2/5 (per-leaf clipping would give W=-2, b=-2)
    assert_close(new[0]["W"], [[-1.2, 0.0], [0.0, 0.0]], dtype, "W")
    assert_close(new[0]["b"], [0.0, -1.6], dtype, "b")

    # below the threshold the gradient is used unchanged, bit for bit
    opt = SGD(lr=1.0, clipnorm=5.5)
    new, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_array_equal(to_numpy(new[0]["W"]), -g_host[0]["W"].astype(dtype))
    np.testing.assert_array_equal(to_numpy(new[0]["b"]), -g_host[0]["b"].astype(dtype))

    # all-zero gradients: no 0/0, nothing moves
    zeros = on_backend(backend, [{"W": np.zeros((2, 2)), "b": np.zeros(2)}], dtype)
    new, _ = opt.update(zeros, opt.init(params), params)
    assert np.all(to_numpy(new[0]["W"]) == 0) and np.all(to_numpy(new[0]["b"]) == 0)


# ---------------------------------------------------------------- contracts

ALL_CONFIGS = [
    lambda: SGD(0.1),
    lambda: SGD(0.1, momentum=0.9, nesterov=True, decay=0.1, clipnorm=1.0),
    lambda: SGD(schedules.StepDecay(0.1, 2, 0.5), momentum=0.5),
    lambda: Adagrad(0.1, clipnorm=0.5),
    lambda: RMSprop(0.01, momentum=0.5, centered=True),
    lambda: RMSprop(schedules.ExponentialDecay(0.01, 3, 0.9)),
    lambda: Adam(0.01),
    lambda: Adam(0.01, amsgrad=True, clipnorm=1.0),
    lambda: AdamW(schedules.CosineDecay(0.01, 5, warmup_steps=2), weight_decay=0.1),
]
CONFIG_IDS = [
    "sgd",
    "sgd-nesterov",
    "sgd-stepdecay",
    "adagrad",
    "rmsprop-centered",
    "rmsprop-schedule",
    "adam",
    "adam-amsgrad",
    "adamw-cosine",
]


def _is_array(x) -> bool:
    try:
        backends.backend_of(x)
    except TypeError:
        return False
    return True


def _check_plain(tree, path="state"):
    if isinstance(tree, dict):
        for k, v in tree.items():
            assert isinstance(k, str), f"{path}: key {k!r} is not a string"
            _check_plain(v, f"{path}[{k!r}]")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            _check_plain(v, f"{path}[{i}]")
    else:
        assert _is_array(tree) and not isinstance(tree, np.generic), (
            f"{path} is {type(tree).__name__}, not an array"
        )


@pytest.mark.parametrize("make", ALL_CONFIGS, ids=CONFIG_IDS)
def test_state_is_plain_arrays_and_dtypes_are_kept(backend, dtype, make):
    opt = make()
    params = on_backend(backend, host_params(), dtype)
    # gradients of the other float dtype are cast to the parameter's dtype
    other = "float64" if dtype == "float32" else "float32"
    grads = on_backend(backend, host_grads(1)[0], other)
    state = opt.init(params)
    for _ in range(3):
        _check_plain(state)
        params, state = opt.update(grads, state, params)
    _check_plain(state)
    _check_plain(params, "params")
    xp = backend.xp
    want = backend.dtype(dtype)
    assert state["step"].shape == () and state["step"].dtype == xp.int32
    assert int(to_numpy(state["step"])) == 3
    for i, k in leaves(params):
        assert params[i][k].dtype == want, f"param {i} {k} became {params[i][k].dtype}"
        assert tuple(params[i][k].shape) == SHAPES[i][k]
    for name, slot in state.items():
        if name == "step":
            continue
        assert len(slot) == len(SHAPES)
        for i, k in leaves(params):
            assert slot[i][k].dtype == want and tuple(slot[i][k].shape) == SHAPES[i][k]
        assert [sorted(layer) for layer in slot] == [sorted(layer) for layer in SHAPES]


def test_mixed_dtypes_and_scalar_params(backend):
    """Each parameter keeps its own dtype; 0-d parameters stay 0-d arrays."""
    params = [
        {
            "W": backend.asarray(np.ones((2, 2)), "float32"),
            "b": backend.asarray(np.ones(2), "float64"),
        },
        {"scale": backend.asarray(np.float64(2.0), "float32")},
    ]
    grads = [
        {
            "W": backend.asarray(np.ones((2, 2)), "float32"),
            "b": backend.asarray(np.ones(2), "float64"),
        },
        {"scale": backend.asarray(np.float64(0.5), "float32")},
    ]
    for opt in (Adam(0.1, clipnorm=1.0), SGD(0.1, momentum=0.5, decay=0.1), RMSprop(0.1)):
        state = opt.init(params)
        new, state = opt.update(grads, state, params)
        new, state = opt.update(grads, state, new)
        assert new[0]["W"].dtype == backend.dtype("float32")
        assert new[0]["b"].dtype == backend.dtype("float64")
        assert new[1]["scale"].dtype == backend.dtype("float32")
        assert type(new[1]["scale"]) is type(params[1]["scale"]) and new[1]["scale"].shape == ()
        _check_plain(state)
        _check_plain(new, "params")


@pytest.mark.parametrize("make", ALL_CONFIGS, ids=CONFIG_IDS)
def test_update_is_pure(backend, make):
    opt = make()
    params = on_backend(backend, host_params(), "float64")
    grads = on_backend(backend, host_grads(1)[0], "float64")
    state = opt.init(params)
    params, state = opt.update(grads, state, params)  # non-trivial slots

    def snapshot(tree):
        if isinstance(tree, dict):
            return {k: snapshot(v) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return [snapshot(v) for v in tree]
        return to_numpy(tree).copy()

    before = snapshot((params, state, grads))
    opt.update(grads, state, params)
    after = snapshot((params, state, grads))
    np.testing.assert_equal(after, before)


# ---------------------------------------------------------------- quadratic


QUADRATIC = [
    lambda: SGD(0.1),
    lambda: SGD(0.05, momentum=0.9, nesterov=True),
    lambda: Adagrad(0.5),
    lambda: RMSprop(schedules.ExponentialDecay(0.05, 20, 0.8)),
    lambda: Adam(schedules.CosineDecay(0.1, 300, alpha=0.01)),
    lambda: AdamW(schedules.CosineDecay(0.1, 300, alpha=0.01), weight_decay=1e-4),
]


@pytest.mark.parametrize(
    "make", QUADRATIC, ids=["sgd", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
)
def test_minimises_a_quadratic(backend, dtype, make):
    """f(p) = 0.5 * sum(a * (p - target)**2) with curvatures 0.5..2."""
    opt = make()
    rng = np.random.default_rng(3)
    target_host = [{"W": rng.uniform(-2, 2, (3, 2)), "b": rng.uniform(-2, 2, 2)}]
    curv_host = [{"W": rng.uniform(0.5, 2, (3, 2)), "b": rng.uniform(0.5, 2, 2)}]
    target = on_backend(backend, target_host, dtype)
    curv = on_backend(backend, curv_host, dtype)
    params = on_backend(backend, [{"W": np.zeros((3, 2)), "b": np.zeros(2)}], dtype)
    state = opt.init(params)
    for _ in range(300):
        grads = [{k: curv[0][k] * (params[0][k] - target[0][k]) for k in params[0]}]
        params, state = opt.update(grads, state, params)
    for k in ("W", "b"):
        np.testing.assert_allclose(to_numpy(params[0][k]), target_host[0][k], atol=2e-2, err_msg=k)


# ---------------------------------------------------------------- JAX: jit and optax


@pytest.mark.parametrize(
    "opt, fills",
    [
        (Adam(0.1, amsgrad=True), {"m": 0.0, "v": 0.0, "v_hat": 0.0}),
        (Adagrad(0.1, initial_accumulator_value=0.25), {"accumulator": 0.25}),
        (
            RMSprop(0.1, centered=True, momentum=0.5),
            {"mean_square": 0.0, "mean_grad": 0.0, "momentum": 0.0},
        ),
        (SGD(0.1, momentum=0.9), {"velocity": 0.0}),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, optimizers.Optimizer) else "",
)
def test_init_values_dtypes_and_device(backend, opt, fills):
    """init makes every slot in one go (on JAX one host-to-device transfer):
    each leaf holds the slot's start value, in its parameter's dtype and
    shape, on its parameter's device; under jit the same values."""
    params = [
        {
            "W": backend.asarray(np.ones((3, 2)), "float32"),
            "b": backend.asarray(np.ones(2), "float64"),
        },
        {},
        {"scale": backend.asarray(np.float64(2.0), "float32")},
    ]
    states = [opt.init(params)]
    if backend.name == "jax":
        import jax

        states.append(jax.jit(opt.init)(params))
    for state in states:
        assert sorted(state) == sorted(["step", *fills])
        assert state["step"].dtype == backend.xp.int32 and int(to_numpy(state["step"])) == 0
        for name, fill in fills.items():
            assert [sorted(layer) for layer in state[name]] == [["W", "b"], [], ["scale"]]
            for layer, slots in zip(params, state[name]):
                for k, p in layer.items():
                    got = slots[k]
                    assert got.dtype == p.dtype and tuple(got.shape) == tuple(p.shape), (name, k)
                    assert getattr(got, "device", None) == getattr(p, "device", None)
                    np.testing.assert_array_equal(to_numpy(got), np.full(p.shape, fill))
    empty = opt.init([{}, {}])
    assert int(to_numpy(empty["step"])) == 0
    assert all(empty[name] == [{}, {}] for name in fills)


@pytest.fixture
def jax_backend():
    loaded, why = backends.probe("jax")
    if loaded is None:
        pytest.skip(why)
    with backends.use_backend("jax"), loaded.scope():
        yield loaded


@pytest.mark.parametrize("make", ALL_CONFIGS, ids=CONFIG_IDS)
def test_update_inside_jit(jax_backend, dtype, make):
    import jax

    opt = make()
    params0 = host_params()
    grads_seq = host_grads(4)
    eager, _ = run(opt, jax_backend, dtype, params0, grads_seq)

    traces = []

    def step(g, s, p):
        traces.append(1)
        return opt.update(g, s, p)

    jstep = jax.jit(step)
    params = on_backend(jax_backend, params0, dtype)
    state = jax.jit(opt.init)(params)
    for g in grads_seq:
        params, state = jstep(on_backend(jax_backend, g, dtype), state, params)
    assert len(traces) == 1, "the state changed structure, dtype or weak type between steps"
    assert_tree_close(params, eager, dtype, "jit vs eager", scale=4.0)
    assert int(state["step"]) == len(grads_seq)


def _keras_eps(eps: float, b2: float):
    """optax adds eps to sqrt(v_hat); Keras to sqrt(v).  Equal when optax's
    eps at (0-based) count c is eps / sqrt(1 - b2 ** (c + 1))."""
    import jax.numpy as jnp

    return lambda count: eps / jnp.sqrt(1.0 - b2 ** (count + 1))


def _optax_cases():
    import optax

    inject = optax.inject_hyperparams
    return {
        "sgd": (SGD(0.1), optax.sgd(0.1)),
        "sgd-momentum": (SGD(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
        "sgd-nesterov": (
            SGD(0.05, momentum=0.8, nesterov=True),
            optax.sgd(0.05, momentum=0.8, nesterov=True),
        ),
        "sgd-decay": (SGD(0.1, decay=0.5), optax.sgd(lambda c: 0.1 / (1.0 + 0.5 * c))),
        # optax evaluates this schedule in float32: 0.125 * 0.5**k is exact there
        "sgd-exponential": (
            SGD(schedules.ExponentialDecay(0.125, 2, 0.5, staircase=True)),
            optax.sgd(optax.exponential_decay(0.125, 2, 0.5, staircase=True)),
        ),
        "sgd-clipnorm": (
            SGD(0.1, clipnorm=0.7),
            optax.chain(optax.clip_by_global_norm(0.7), optax.sgd(0.1)),
        ),
        "adagrad": (Adagrad(0.1), optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7)),
        "rmsprop": (RMSprop(0.01, epsilon=1e-7), optax.rmsprop(0.01, decay=0.9, eps=1e-7)),
        "rmsprop-centered-momentum": (
            RMSprop(0.01, rho=0.8, momentum=0.5, centered=True, epsilon=1e-4),
            optax.rmsprop(0.01, decay=0.8, eps=1e-4, centered=True, momentum=0.5),
        ),
        "adam": (
            Adam(0.01, epsilon=1e-7),
            inject(optax.adam)(learning_rate=0.01, b1=0.9, b2=0.999, eps=_keras_eps(1e-7, 0.999)),
        ),
        "adam-big-eps": (
            Adam(0.01, beta_1=0.5, beta_2=0.9, epsilon=0.1),
            inject(optax.adam)(learning_rate=0.01, b1=0.5, b2=0.9, eps=_keras_eps(0.1, 0.9)),
        ),
        "adam-cosine-clip": (
            Adam(schedules.CosineDecay(0.02, 4, alpha=0.1), clipnorm=1.5),
            optax.chain(
                optax.clip_by_global_norm(1.5),
                inject(optax.adam)(
                    learning_rate=optax.cosine_decay_schedule(0.02, 4, alpha=0.1),
                    eps=_keras_eps(1e-7, 0.999),
                ),
            ),
        ),
        "adamw": (
            AdamW(0.01, weight_decay=0.1, epsilon=1e-3),
            inject(optax.adamw)(learning_rate=0.01, weight_decay=0.1, eps=_keras_eps(1e-3, 0.999)),
        ),
    }


OPTAX_IDS = [
    "sgd",
    "sgd-momentum",
    "sgd-nesterov",
    "sgd-decay",
    "sgd-exponential",
    "sgd-clipnorm",
    "adagrad",
    "rmsprop",
    "rmsprop-centered-momentum",
    "adam",
    "adam-big-eps",
    "adam-cosine-clip",
    "adamw",
]


@pytest.mark.parametrize("case", OPTAX_IDS)
def test_matches_optax(jax_backend, dtype, case):
    optax = pytest.importorskip("optax")
    ours, tx = _optax_cases()[case]
    params0 = host_params()
    grads_seq = host_grads()
    got, _ = run(ours, jax_backend, dtype, params0, grads_seq)

    params = on_backend(jax_backend, params0, dtype)
    state = tx.init(params)
    for g in grads_seq:
        g = on_backend(jax_backend, g, dtype)
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    expected = [{k: to_numpy(v).astype(np.float64) for k, v in layer.items()} for layer in params]
    # optax rounds in a different order; float32 results may differ by a few ulps
    assert_tree_close(got, expected, dtype, f"optax {case}", scale=2.0)
    moved = max(
        np.max(np.abs(e[k] - p0[k])) for e, p0 in zip(expected, params0, strict=True) for k in p0
    )
    assert moved > 1e-3


def test_adam_epsilon_placement_differs_from_plain_optax(jax_backend):
    """Guards the reference: with a large epsilon Keras' and optax's default
    placements really give different answers, so the tests above can fail."""
    optax = pytest.importorskip("optax")
    params0, grads_seq = host_params(), host_grads(3)
    got, _ = run(Adam(0.01, epsilon=0.1), jax_backend, "float64", params0, grads_seq)
    tx = optax.adam(0.01, eps=0.1)
    params = on_backend(jax_backend, params0, "float64")
    state = tx.init(params)
    for g in grads_seq:
        updates, state = tx.update(on_backend(jax_backend, g, "float64"), state, params)
        params = optax.apply_updates(params, updates)
    diff = np.max(np.abs(to_numpy(got[0]["W"]) - to_numpy(params[0]["W"])))
    assert diff > 1e-4


# ---------------------------------------------------------------- config and get


ROUND_TRIP = [
    SGD(0.2, momentum=0.5, nesterov=True, decay=0.01, clipnorm=3.0),
    Adagrad(0.3, epsilon=1e-6, initial_accumulator_value=0.0),
    RMSprop(0.002, rho=0.8, epsilon=1e-6, momentum=0.1, centered=True),
    Adam(0.004, beta_1=0.8, beta_2=0.99, epsilon=1e-6, amsgrad=True),
    AdamW(schedules.CosineDecay(0.01, 100, alpha=0.1, warmup_steps=10), weight_decay=0.01),
    Adam(schedules.ExponentialDecay(0.01, 10, 0.9, staircase=True), clipnorm=1.0),
    SGD(schedules.StepDecay(0.1, 5, 0.5)),
]


@pytest.mark.parametrize("opt", ROUND_TRIP, ids=lambda o: type(o).__name__)
def test_config_round_trip(backend, opt):
    config = opt.get_config()
    assert config["class_name"] == type(opt).__name__
    restored = optimizers.get(json.loads(json.dumps(config)))
    assert type(restored) is type(opt)
    assert restored.get_config() == config
    params0, grads_seq = host_params(), host_grads(3)
    a, _ = run(opt, backend, "float64", params0, grads_seq)
    b, _ = run(restored, backend, "float64", params0, grads_seq)
    for i, k in leaves(params0):
        np.testing.assert_array_equal(to_numpy(a[i][k]), to_numpy(b[i][k]))


def test_get_by_name_and_instance():
    for name, cls in [
        ("sgd", SGD),
        ("adam", Adam),
        ("adamw", AdamW),
        ("rmsprop", RMSprop),
        ("adagrad", Adagrad),
        ("Adam", Adam),
        ("SGD", SGD),
    ]:
        opt = optimizers.get(name)
        assert type(opt) is cls
    assert optimizers.get("sgd").lr == 0.01 and optimizers.get("adam").lr == 0.001
    assert optimizers.get("adamw").weight_decay == 0.004
    opt = Adam(0.1)
    assert optimizers.get(opt) is opt
    assert optimizers.get({"class_name": "adam", "lr": 0.1, "beta_1": 0.8}).beta_1 == 0.8
    with pytest.raises(ValueError, match="valid names are: adagrad, adam, adamw, rmsprop, sgd"):
        optimizers.get("adamax")
    with pytest.raises(ValueError, match="class_name"):
        optimizers.get({"lr": 0.1})
    with pytest.raises(ValueError, match="unknown config key"):
        optimizers.get({"class_name": "sgd", "beta_1": 0.9})
    with pytest.raises(TypeError):
        optimizers.get(3)


def test_learning_rate_alias_and_immutability():
    assert Adam(learning_rate=0.1).lr == 0.1
    assert (
        SGD(learning_rate=schedules.StepDecay(0.1, 2)).get_config()["lr"]["class_name"]
        == "StepDecay"
    )
    with pytest.raises(ValueError, match="lr= or as learning_rate="):
        SGD(0.2, learning_rate=0.1)
    opt = SGD(0.1)
    with pytest.raises(AttributeError, match="fixed at construction"):
        opt.lr = 0.5
    with pytest.raises(TypeError, match="cannot be serialised"):
        SGD(lambda step: 0.1).get_config()


def test_plain_callable_learning_rate(backend):
    opt = SGD(lambda step: 0.5)
    params = [{"w": backend.asarray(np.ones(2), "float32")}]
    new, _ = opt.update([{"w": backend.asarray(np.ones(2), "float32")}], opt.init(params), params)
    assert_close(new[0]["w"], [0.5, 0.5], "float32")
    assert new[0]["w"].dtype == backend.dtype("float32")


INVALID = [
    (lambda: SGD(momentum=1.5), "SGD", "momentum", 1.5, "in [0, 1)"),
    (lambda: SGD(momentum=-0.1), "SGD", "momentum", -0.1, "in [0, 1)"),
    (lambda: SGD(lr=0), "SGD", "lr", 0, "a positive number or a schedule"),
    (lambda: SGD(lr=-0.1), "SGD", "lr", -0.1, "a positive number or a schedule"),
    (lambda: SGD(lr=float("nan")), "SGD", "lr", float("nan"), "a positive number or a schedule"),
    (lambda: SGD(lr="0.1"), "SGD", "lr", "0.1", "a positive number or a schedule"),
    (lambda: SGD(decay=-1.0), "SGD", "decay", -1.0, "a non-negative number"),
    (lambda: SGD(nesterov="yes"), "SGD", "nesterov", "yes", "True or False"),
    (lambda: SGD(clipnorm=0.0), "SGD", "clipnorm", 0.0, "None or a positive number"),
    (lambda: Adagrad(epsilon=0.0), "Adagrad", "epsilon", 0.0, "a positive number"),
    (
        lambda: Adagrad(initial_accumulator_value=-0.1),
        "Adagrad",
        "initial_accumulator_value",
        -0.1,
        "a non-negative number",
    ),
    (lambda: RMSprop(rho=1.0), "RMSprop", "rho", 1.0, "in [0, 1)"),
    (lambda: RMSprop(momentum=2), "RMSprop", "momentum", 2, "in [0, 1)"),
    (lambda: RMSprop(centered=1), "RMSprop", "centered", 1, "True or False"),
    (lambda: Adam(beta_1=1.0), "Adam", "beta_1", 1.0, "in [0, 1)"),
    (lambda: Adam(beta_2=-0.5), "Adam", "beta_2", -0.5, "in [0, 1)"),
    (lambda: Adam(epsilon=-1e-7), "Adam", "epsilon", -1e-7, "a positive number"),
    (lambda: Adam(amsgrad=None), "Adam", "amsgrad", None, "True or False"),
    (lambda: AdamW(weight_decay=-0.01), "AdamW", "weight_decay", -0.01, "a non-negative number"),
    (lambda: AdamW(lr=True), "AdamW", "lr", True, "a positive number or a schedule"),
    (lambda: AdamW(beta_1=float("inf")), "AdamW", "beta_1", float("inf"), "in [0, 1)"),
]


@pytest.mark.parametrize(
    "make, owner, name, value, requirement",
    INVALID,
    ids=[f"{o}-{n}-{v!r}" for _, o, n, v, _ in INVALID],
)
def test_invalid_hyperparameters(make, owner, name, value, requirement):
    message = f"{owner}: {name} must be {requirement}, received {name}={value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_brief_error_message():
    with pytest.raises(ValueError) as err:
        SGD(momentum=1.5)
    assert str(err.value) == "SGD: momentum must be in [0, 1), received momentum=1.5"


def test_mismatched_trees_raise(backend):
    opt = Adam()
    params = on_backend(backend, host_params(), "float32")
    state = opt.init(params)
    with pytest.raises(ValueError, match="same structure"):
        opt.update(params[:2], state, params)


# ---------------------------------------------------------------- purity


def test_update_leaves_its_inputs_untouched_on_numpy():
    """The update is pure on every backend (no in-place path): params,
    state and grads are unchanged after it, also inside ``ops.jit``."""
    bk = backends.load("numpy")
    for opt in (Adam(0.01), SGD(0.1, momentum=0.9), AdamW(0.01)):
        params = on_backend(bk, host_params(), "float32")
        grads = on_backend(bk, host_grads(1)[0], "float32")
        state = opt.init(params)
        before = copy.deepcopy((params, state, grads))
        new_params, _ = opt.update(grads, state, params)
        bk.jit(opt.update, donate_argnums=(2,))(grads, state, params)
        np.testing.assert_equal((params, state, grads), before)
        assert all(new_params[i][k] is not p for i, layer in enumerate(params)
                   for k, p in layer.items())  # fmt: skip
