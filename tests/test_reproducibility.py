"""Reproducibility across backends and runs: the same seed gives the same
initial parameters, batch order and Dropout masks (bit for bit) on every
backend, and the same training trajectory (to rounding) -- the checks of the
reproducibility issue.  Detailed RNG tests live in test_random.py.

What ``fit(seed=s)`` draws (documented in tinynet.training):

* epoch ``e``'s key: ``epoch_key = fold_in(key(s), e)``;
* the row order: ``permutation(fold_in(epoch_key, 0x5EED), n)``;
* step ``t``'s key: ``fold_in(fold_in(epoch_key, 0xD0), t)`` and layer ``i``'s
  Dropout mask ``bernoulli(fold_in(step_key, i), 1 - rate, shape)``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import pytest

import tinynet as tn
from tinynet import backends, core, datasets
from tinynet import random as tnrandom
from tinynet.tree import tree_leaves

BACKENDS = ("numpy", "jax", "strict", "torch")
EAGER = ("numpy", "strict", "torch")  # no jit: fit's real masks can be recorded
LOSS = "sparse_categorical_crossentropy"
SEED = 7  # fit seed (order and masks)
INIT_SEED = 5  # model seed (initial parameters)
EPOCHS = 2
BATCH = 16
N = 60  # 3 classes x 20: steps of 16, 16, 16 and a ragged 12
DROPOUT = {2: 0.3, 5: 0.2}  # layer index -> rate, as in _layers()
WIDTH = 16


def _load(name: str) -> backends.Backend:
    backend, why = backends.probe(name)
    if backend is None:
        pytest.skip(why)
    return backend


def _host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else backends.backend_of(a).to_numpy(a)


def _bits(a) -> np.ndarray:
    """The raw bits of an array, so that equality means bit-identical (also -0.0, NaN)."""
    a = np.ascontiguousarray(_host(a))
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def _assert_bit_identical(a, b, what: str = "") -> None:
    a, b = _bits(a), _bits(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    np.testing.assert_array_equal(a, b, err_msg=what)


def _assert_rel(actual, expected, rtol: float, what: str = "") -> None:
    """Equal within ``rtol`` relative to the array's largest magnitude."""
    actual = np.asarray(_host(actual), dtype=np.float64)
    expected = np.asarray(_host(expected), dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def _params(model) -> dict[str, np.ndarray]:
    # copies: on NumPy, fit updates the parameter arrays in place
    return {path: np.array(_host(leaf)) for path, leaf in tree_leaves(model.params)}


@functools.lru_cache(maxsize=1)
def _data() -> tuple[np.ndarray, np.ndarray]:
    return datasets.spiral(samples_per_class=N // 3, classes=3, noise=0.2, seed=0)


class RecordingDropout(tn.Dropout):
    """Dropout that records the mask of every eager training forward.

    The mask is read back from Dropout's own forward on a tensor of ones
    (``keep * scale`` where kept, 0 where dropped), so what is recorded is
    exactly the ``keep`` the real forward uses with the same key and shape.
    """

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.masks: list[np.ndarray] = []

    def forward(self, params, state, x, ops, training=False, key=None):
        if training and key is not None and not ops.is_traced(x):
            probe, _, _ = super().forward(params, state, ops.xp.ones_like(x), ops, training, key)
            self.masks.append(_host(probe) != 0)
        return super().forward(params, state, x, ops, training, key)


def _layers(dropout: type = tn.Dropout) -> list:
    return [
        tn.Dense(2, WIDTH, init="he_uniform"),
        tn.ReLU(),
        dropout(DROPOUT[2]),
        tn.Dense(WIDTH, WIDTH),
        tn.Tanh(),
        dropout(DROPOUT[5]),
        tn.Dense(WIDTH, 3),
        tn.Softmax(),
    ]


def _model(backend: str, dtype: str, dropout: type = tn.Dropout) -> tn.Sequential:
    return tn.Sequential(_layers(dropout), dtype=dtype, seed=INIT_SEED, backend=backend)


def _fit(model: tn.Sequential, epochs: int = EPOCHS, seed: int = SEED):
    x, y = _data()
    return model.fit(
        x,
        y,
        loss=LOSS,
        optimizer=tn.optimizers.Adam(lr=0.01),
        epochs=epochs,
        batch_size=BATCH,
        seed=seed,
        verbose=0,
    )


class Run(NamedTuple):
    initial: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    history: dict[str, list[float]]
    opt_state: dict[str, np.ndarray]
    steps: int


def _run(backend: str, dtype: str) -> Run:
    """The standard run: 2 epochs with Dropout and shuffling, Adam, seed SEED."""
    model = _model(backend, dtype)
    initial = _params(model)
    history = _fit(model)
    state = {path: _host(leaf) for path, leaf in tree_leaves(model.opt_state)}
    return Run(initial, _params(model), dict(history.history), state, model.step)


_trained = functools.lru_cache(maxsize=None)(_run)  # shared by the tests below


def _step_sizes() -> list[int]:
    return [min(BATCH, N - a) for a in range(0, N, BATCH)]


def _expected_masks(backend: backends.Backend) -> dict[int, list]:
    """Every Dropout mask of the standard run, from the documented keys."""
    run_key = tnrandom.key(SEED, backend)
    masks: dict[int, list] = {i: [] for i in DROPOUT}
    for epoch in range(EPOCHS):
        epoch_key = tnrandom.fold_in(run_key, epoch)
        for step, size in enumerate(_step_sizes()):
            step_key = tnrandom.fold_in(tnrandom.fold_in(epoch_key, 0xD0), step)
            for i, rate in DROPOUT.items():
                masks[i].append(
                    tnrandom.bernoulli(tnrandom.fold_in(step_key, i), 1.0 - rate, (size, WIDTH))
                )
    return masks


# ---------------------------------------------------------------- raw bits


@pytest.mark.parametrize("name", BACKENDS)
def test_raw_bits_equal_jax_random(name):
    jax = pytest.importorskip("jax")
    backend = _load(name)
    from jax.extend.random import threefry_2x32

    with jax.enable_x64(True):  # 64-bit seeds for jax.random.PRNGKey
        _raw_bits_equal_jax_random(jax, backend, threefry_2x32)


def _raw_bits_equal_jax_random(jax, backend, threefry_2x32):
    jr = jax.random
    count = np.arange(10, dtype=np.uint32) * np.uint32(0x9E3779B9)
    for seed in (0, SEED, 2**32 + 5):
        k = tnrandom.key(seed, backend)
        jk = jr.PRNGKey(seed)
        _assert_bit_identical(k, np.asarray(jk))
        _assert_bit_identical(
            tnrandom.threefry_2x32(k, backend.asarray(count, "uint32")),
            np.asarray(threefry_2x32(jk, jax.numpy.asarray(count))),
        )
        _assert_bit_identical(tnrandom.split(k, 3), np.asarray(jr.split(jk, 3)))
        _assert_bit_identical(
            tnrandom.bits(tnrandom.fold_in(k, 3), (4, 5)),
            np.asarray(jr.bits(jr.fold_in(jk, 3), (4, 5), "uint32")),
        )
        # the key chain fit uses for epoch 1, step 2, layer 5
        ours = tnrandom.fold_in(
            tnrandom.fold_in(tnrandom.fold_in(tnrandom.fold_in(k, 1), 0xD0), 2), 5
        )
        theirs = jr.fold_in(jr.fold_in(jr.fold_in(jr.fold_in(jk, 1), 0xD0), 2), 5)
        _assert_bit_identical(ours, np.asarray(theirs))
        _assert_bit_identical(
            tnrandom.uniform(ours, (33,)), np.asarray(jr.uniform(theirs, (33,), "float32"))
        )


# ---------------------------------------------------------------- initial parameters


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_init_bit_identical_across_backends(dtype):
    reference = _params(_model("numpy", dtype))
    assert any(np.any(v != 0) for v in reference.values())
    for name in BACKENDS[1:]:
        if backends.probe(name)[0] is None:
            continue
        got = _params(_model(name, dtype))
        assert got.keys() == reference.keys()
        for path in reference:
            _assert_bit_identical(got[path], reference[path], f"{name} {dtype} {path}")
    # the default initializer (glorot_uniform) too, not only he_uniform
    plain = tn.Sequential([tn.Dense(3, 4)], dtype=dtype, seed=1, backend="numpy")
    for name in BACKENDS[1:]:
        if backends.probe(name)[0] is not None:
            other = tn.Sequential([tn.Dense(3, 4)], dtype=dtype, seed=1, backend=name)
            _assert_bit_identical(other.params[0]["W"], plain.params[0]["W"], name)


# ---------------------------------------------------------------- batch order and masks


def test_batch_order_identical_across_backends():
    orders = {}
    for name in BACKENDS:
        backend = backends.probe(name)[0]
        if backend is None:
            continue
        run_key = tnrandom.key(SEED, backend)
        orders[name] = [
            _host(tnrandom.permutation(tnrandom.fold_in(tnrandom.fold_in(run_key, e), 0x5EED), N))
            for e in range(3)
        ]
    for e, order in enumerate(orders["numpy"]):
        assert order.dtype == np.int64 and sorted(order) == list(range(N))
        for name in orders:
            _assert_bit_identical(orders[name][e], order, f"{name} epoch {e}")
    assert not np.array_equal(orders["numpy"][0], orders["numpy"][1])  # reshuffled per epoch


def test_dropout_masks_identical_across_backends():
    reference = _expected_masks(_load("numpy"))
    for i, rate in DROPOUT.items():
        masks = [_host(m) for m in reference[i]]
        assert len(masks) == EPOCHS * len(_step_sizes())
        assert [m.shape[0] for m in masks] == _step_sizes() * EPOCHS
        assert all(m.dtype == np.bool_ for m in masks)
        kept = np.mean(np.concatenate(masks))
        assert abs(kept - (1 - rate)) < 0.08  # plausibly Bernoulli(1 - rate)
        assert len({m.tobytes() for m in masks}) == len(masks)  # a new mask every step
    for name in BACKENDS[1:]:
        backend = backends.probe(name)[0]
        if backend is None:
            continue
        got = _expected_masks(backend)
        for i in DROPOUT:
            for t, (a, b) in enumerate(zip(got[i], reference[i], strict=True)):
                _assert_bit_identical(a, b, f"{name}: layer {i}, step {t}")


@pytest.mark.parametrize("name", EAGER)
def test_fit_draws_exactly_the_documented_masks(name):
    """fit's real masks (recorded eagerly) are the documented ones, bit for bit."""
    _load(name)
    model = _model(name, "float64", RecordingDropout)
    _fit(model)
    expected = _expected_masks(backends.load("numpy"))
    for i in DROPOUT:
        recorded = model.layers[i].masks
        assert len(recorded) == EPOCHS * len(_step_sizes()), i
        for t, (got, want) in enumerate(zip(recorded, expected[i], strict=True)):
            _assert_bit_identical(got, want, f"{name}: layer {i}, step {t}")


@pytest.mark.parametrize("name", EAGER)
def test_fit_follows_the_documented_recipe(name):
    """A hand-written loop with the documented order and keys gives fit's
    parameters bit for bit: fit draws nothing else."""
    backend = _load(name)
    model = _model(name, "float64")
    manual = _model(name, "float64")
    _fit(model)
    x, y = _data()
    xb, yb = backend.asarray(x, "float64"), backend.asarray(y)
    optimizer = tn.optimizers.Adam(lr=0.01)
    step = core.make_fit_step(manual.layers, tn.losses.get(LOSS), optimizer, backend)
    params, state = manual.params, optimizer.init(manual.params)
    zero = backend.xp.zeros((), dtype=backend.dtype("float64"))
    run_key = tnrandom.key(SEED, backend)
    for epoch in range(EPOCHS):
        epoch_key = tnrandom.fold_in(run_key, epoch)
        order = tnrandom.permutation(tnrandom.fold_in(epoch_key, 0x5EED), N)
        xs = backend.xp.take(xb, order, axis=0)
        ys = backend.xp.take(yb, order, axis=0)
        for t, a in enumerate(range(0, N, BATCH)):
            key = tnrandom.fold_in(tnrandom.fold_in(epoch_key, 0xD0), t)
            b = min(a + BATCH, N)
            params, _, state, _ = step(
                params, manual.state, state, (zero, zero), xs[a:b, ...], ys[a:b, ...], key
            )
    got = _params(model)
    for path, leaf in tree_leaves(params):
        _assert_bit_identical(got[path], leaf, path)


# ---------------------------------------------------------------- trajectories


@pytest.mark.parametrize("name", BACKENDS[1:])
def test_fit_float64_same_across_backends(name):
    _load(name)
    init_ref, final_ref, history_ref = _trained("numpy", "float64")[:3]
    initial, final, history = _trained(name, "float64")[:3]
    for path in init_ref:
        _assert_bit_identical(initial[path], init_ref[path], f"initial {path}")
    for path in final_ref:
        # a single flipped mask bit of one step moves these by ~0.1 relative
        _assert_rel(final[path], final_ref[path], 1e-12, f"final {path}")
    assert history.keys() == history_ref.keys()
    for k in history_ref:
        np.testing.assert_allclose(history[k], history_ref[k], rtol=1e-12, err_msg=k)
    assert not np.array_equal(final_ref["0.W"], init_ref["0.W"])  # it did train


@pytest.mark.parametrize("name", BACKENDS[1:])
def test_fit_float32_same_across_backends(name):
    _load(name)
    init_ref, final_ref, history_ref = _trained("numpy", "float32")[:3]
    initial, final, history = _trained(name, "float32")[:3]
    for path in init_ref:
        _assert_bit_identical(initial[path], init_ref[path], f"initial {path}")
    for path in final_ref:
        assert final[path].dtype == np.float32
        _assert_rel(final[path], final_ref[path], 1e-4, f"final {path}")
    for k in history_ref:
        np.testing.assert_allclose(history[k], history_ref[k], rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", BACKENDS)
def test_same_seed_twice_is_bit_identical(name):
    _load(name)
    first, second = _trained(name, "float32"), _run(name, "float32")
    assert first.steps == second.steps == EPOCHS * len(_step_sizes())
    assert second.history == first.history  # the logged floats, exactly
    for path in first.final:
        _assert_bit_identical(second.final[path], first.final[path], path)
    assert second.opt_state.keys() == first.opt_state.keys()
    for path in first.opt_state:
        _assert_bit_identical(
            second.opt_state[path], first.opt_state[path], f"optimizer state {path}"
        )


def test_other_seed_gives_other_run():
    a, b = _model("numpy", "float32"), _model("numpy", "float32")
    _fit(a, seed=SEED)
    _fit(b, seed=SEED + 1)
    assert not np.array_equal(_host(a.params[0]["W"]), _host(b.params[0]["W"]))


@pytest.mark.parametrize("name", ("numpy", "jax", "torch"))
def test_resumed_fit_sees_the_same_order_and_masks(name):
    """fit(1 epoch) twice == fit(2 epochs): epoch counting continues."""
    _load(name)
    whole = _trained(name, "float32")
    parts = _model(name, "float32")
    _fit(parts, epochs=1)
    x, y = _data()
    parts.fit(x, y, loss=LOSS, epochs=1, batch_size=BATCH, seed=SEED, verbose=0)  # same Adam
    assert parts.epoch == EPOCHS == 2 and parts.step == whole.steps
    for path, leaf in whole.final.items():
        _assert_bit_identical(_params(parts)[path], leaf, path)
