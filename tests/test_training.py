"""fit / evaluate / predict, callbacks and the compiled step on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import tinynet as tn

SCCE = "sparse_categorical_crossentropy"


def spiral_model(dtype="float32", seed=0, hidden=16, dropout=0.0):
    layers = [tn.Dense(2, hidden), tn.ReLU()]
    if dropout:
        layers.append(tn.Dropout(dropout))
    layers += [tn.Dense(hidden, 3), tn.Softmax()]
    return tn.Sequential(layers, dtype=dtype, seed=seed)


@pytest.fixture(scope="module")
def spiral():
    return tn.datasets.spiral(samples_per_class=50, classes=3, noise=0.1, seed=1)


def test_fit_learns_and_history_is_keras_like(backend, spiral):
    x, y = spiral
    model = spiral_model(hidden=32)
    history = model.fit(
        x,
        y,
        loss=SCCE,
        optimizer=tn.optimizers.Adam(lr=0.05),
        epochs=40,
        batch_size=32,
        validation_split=0.2,
        verbose=0,
    )
    h = history.history
    assert sorted(h) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 40 for v in h.values())
    assert h["loss"][-1] < 0.6 * h["loss"][0]
    assert h["accuracy"][-1] > 0.7
    assert model.epoch == 40 and model.step == 40 * 4  # 120 train samples, batch 32
    result = model.evaluate(x, y, loss=SCCE)
    assert result["accuracy"] > 0.6
    assert to_numpy(model.params[0]["W"]).dtype == np.float32


def test_fit_epoch_loss_equals_mean_of_step_losses(backend, spiral):
    """The on-device loss sums give exactly the mean of per-step losses."""
    x, y = spiral
    model = spiral_model("float64")
    ref = spiral_model("float64")
    opt = tn.optimizers.SGD(lr=0.1)
    hist = model.fit(
        x, y, loss=SCCE, optimizer=opt, epochs=1, batch_size=64, shuffle=False, verbose=0
    )
    # reference: the same steps by hand with loss_and_grads and the update equations
    losses, sizes = [], []
    for a in range(0, len(x), 64):
        value, grads = ref.loss_and_grads(x[a : a + 64], y[a : a + 64], SCCE)
        losses.append(float(to_numpy(value)))
        sizes.append(len(x[a : a + 64]))
        ref.params = [
            {k: v - 0.1 * grads[i][k] for k, v in p.items()} for i, p in enumerate(ref.params)
        ]
    assert hist.history["loss"][0] == pytest.approx(np.dot(losses, sizes) / len(x), rel=1e-12)
    for p, q in zip(model.params, ref.params):
        for k in p:
            assert_close(p[k], to_numpy(q[k]), "float64")


def test_numpy_and_compiled_paths_agree(backend, spiral):
    """Every backend trains to the same float64 parameters as NumPy (shuffled, ragged batch)."""
    x, y = spiral
    runs = {}
    for name in ("numpy", backend.name):
        with tn.use_backend(name):
            model = spiral_model("float64", dropout=0.2)
            model.fit(x, y, loss=SCCE, optimizer="adam", epochs=2, batch_size=64, verbose=0)
            runs[name] = [{k: to_numpy(v) for k, v in p.items()} for p in model.params]
    for p, q in zip(runs["numpy"], runs[backend.name]):
        for k in p:
            assert_close(q[k], p[k], "float64")


def test_epoch_order_made_on_the_host_equals_a_compiled_one():
    """An epoch's row order and step key (fit makes them with NumPy on the
    host) are the same bits made by JAX in a compiled call."""
    pytest.importorskip("jax")
    from tinynet import random as tnrandom
    from tinynet.fit_loop import epoch_setup

    jax_backend = tn.get_backend("jax")
    for n in (17, 5000):
        host = epoch_setup(tnrandom.key(7, "numpy"), 3, n, True, True)
        compiled = jax_backend.jit(lambda k, e, n=n: epoch_setup(k, e, n, True, True))
        device = compiled(tnrandom.key(7, jax_backend), 3)
        for a, b in zip(host, device, strict=True):
            np.testing.assert_array_equal(np.asarray(a), to_numpy(b))
        assert sorted(np.asarray(host[0]).tolist()) == list(range(n))


def test_compiled_blocks_take_the_same_batches_as_the_eager_loop(spiral):
    """On JAX a block of steps takes each batch inside one compiled loop (a
    dynamic slice of the data, or of the epoch's order and a gather): the
    same batches, so the same numbers as NumPy's Python loop, shuffled or not,
    in one block per epoch or in blocks of 2 steps."""
    pytest.importorskip("jax")
    x, y = spiral

    def train(backend, shuffle, spe):
        with tn.use_backend(backend):
            model = spiral_model("float64", dropout=0.2)
            hist = model.fit(
                x, y, loss=SCCE, optimizer="adam", epochs=2, batch_size=64, shuffle=shuffle,
                verbose=0, steps_per_execution=spe,
            )  # fmt: skip
            params = [to_numpy(v) for p in model.params for _, v in sorted(p.items())]
            return hist.history["loss"], params

    for shuffle in (True, False):
        eager = train("numpy", shuffle, "auto")
        for spe in ("auto", 2):
            compiled = train("jax", shuffle, spe)
            assert_close(np.array(compiled[0]), eager[0], "float64")
            for a, b in zip(compiled[1], eager[1], strict=True):
                assert_close(a, b, "float64")


def test_jax_compiles_once_per_batch_shape(spiral):
    pytest.importorskip("jax")
    x, y = spiral  # 150 samples, batch 64: two full batches and a ragged one of 22
    with tn.use_backend("jax"):
        model = spiral_model()
        model.fit(x, y, loss=SCCE, optimizer="adam", epochs=2, batch_size=64, verbose=0)

        ops = model.backend

        def compiled():
            return sum(
                ops._blocks[step][guard].compiled._cache_size()
                for cache in model._compiled.values()
                if isinstance(cache, dict)
                for step, guard in cache.values()
            )

        after_first = compiled()
        # full batches (one loop) and the ragged batch; the epoch's order is
        # made on the host
        assert after_first == 2
        model.fit(x, y, loss=SCCE, epochs=3, batch_size=64, verbose=0)
        model.fit(
            x, y, loss=tn.losses.SparseCategoricalCrossentropy(), epochs=1, batch_size=64, verbose=0
        )
        assert compiled() == after_first
        # batch 4 with a progress bar: 37 full batches in calls of 3 steps
        # (a bar read after each) and a last call of 1, then a ragged batch of
        # 2: the trip count is an argument, so two new programs, not one per count
        model.fit(x, y, loss=SCCE, epochs=2, batch_size=4, verbose=1)
        assert compiled() == after_first + 2


def test_steps_per_execution_is_the_same_maths(backend, spiral):
    x, y = spiral
    results = []
    for k in (1, 3, "auto"):
        model = spiral_model("float64")
        hist = model.fit(
            x,
            y,
            loss=SCCE,
            optimizer="sgd",
            epochs=2,
            batch_size=16,
            verbose=0,
            steps_per_execution=k,
        )
        results.append((hist.history["loss"], [to_numpy(p["W"]) for p in model.params if p]))
    for other in results[1:]:
        assert other[0] == pytest.approx(results[0][0], rel=1e-12)
        for a, b in zip(results[0][1], other[1]):
            assert_close(b, a, "float64")


def test_predict_batches_match_whole(backend, spiral):
    x, _ = spiral
    model = spiral_model()
    whole = to_numpy(model.predict(x))
    batched = to_numpy(model.predict(x, batch_size=7))
    np.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-7)
    assert whole.shape == (150, 3)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-5)


def test_early_stopping_restores_best(backend, spiral):
    x, y = spiral
    model = spiral_model()
    stop = tn.EarlyStopping(monitor="loss", patience=0, restore_best_weights=True, min_delta=10.0)
    hist = model.fit(
        x, y, loss=SCCE, optimizer="adam", epochs=10, batch_size=32, verbose=0, callbacks=[stop]
    )
    # min_delta=10 means no epoch after the first counts as an improvement
    assert len(hist.epoch) == 2
    assert "early stopping" in hist.stopped_early
    first = spiral_model()
    first.fit(x, y, loss=SCCE, optimizer="adam", epochs=1, batch_size=32, verbose=0)
    for p, q in zip(model.params, first.params):
        for k in p:
            np.testing.assert_array_equal(to_numpy(p[k]), to_numpy(q[k]))


def test_model_checkpoint_best_only(backend, spiral, tmp_path):
    x, y = spiral
    model = spiral_model()
    ckpt = tn.ModelCheckpoint(
        str(tmp_path / "best.safetensors"), monitor="val_loss", save_best_only=True
    )
    hist = model.fit(
        x,
        y,
        loss=SCCE,
        optimizer=tn.optimizers.Adam(lr=0.05),
        epochs=5,
        batch_size=32,
        validation_split=0.2,
        verbose=0,
        callbacks=[ckpt],
    )
    val = hist.history["val_loss"]
    improvements = sum(1 for i, v in enumerate(val) if v < min(val[:i], default=np.inf))
    assert len(ckpt.saved) == improvements
    best = tn.load(ckpt.saved[-1])
    assert best.epoch == int(np.argmin(val)) + 1


def test_terminate_on_nan_reports_and_keeps_params(backend):
    x = np.array([[1.0, 2.0], [3.0, -1.0]] * 8, dtype=np.float32)
    y = np.array([[1.0], [0.0]] * 8, dtype=np.float32)
    model = tn.Sequential([tn.Dense(2, 4), tn.Tanh(), tn.Dense(4, 1)], seed=3)
    # an absurd learning rate overflows float32 within a few steps
    hist = model.fit(
        x,
        y,
        loss="mse",
        optimizer=tn.optimizers.SGD(lr=1e30),
        epochs=3,
        batch_size=4,
        verbose=0,
        callbacks=[tn.TerminateOnNaN()],
    )
    assert "non-finite loss at epoch 1, step" in hist.stopped_early
    for p in model.params:
        for v in p.values():
            assert np.isfinite(to_numpy(v)).all()


def test_fit_rejects_bad_arguments(spiral):
    x, y = spiral
    model = spiral_model()
    with pytest.raises(ValueError, match="pass loss"):
        model.fit(x, y, epochs=1)
    with pytest.raises(
        ValueError, match="batch_size must be an integer >= 1, received batch_size=0"
    ):
        model.fit(x, y, loss=SCCE, batch_size=0)
    with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
        model.fit(x, y, loss=SCCE, epochs=-1)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, loss=SCCE, validation_split=1.5)


NAN_STOP_MODELS = {
    "dense": ((4,), lambda: [tn.Dense(8), tn.ReLU(), tn.Dense(3), tn.Softmax()]),
    # on the JAX CPU backend a convolution's block is a Python loop over a
    # one-step program, not one compiled loop: the same rule must hold
    "conv": ((6, 6, 1), lambda: [tn.Conv2D(4, 3), tn.ReLU(), tn.MaxPool2D(2), tn.Flatten(),
                                 tn.Dense(3), tn.Softmax()]),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(NAN_STOP_MODELS))
def test_history_after_a_nan_stop_is_the_same_on_every_backend(kind):
    """TerminateOnNaN's rule, on every backend: the step that went
    non-finite is not taken, and the stopped epoch's logs average the steps
    that were kept (here the epoch's first), NaN-free."""
    shape, layers = NAN_STOP_MODELS[kind]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, *shape)), rng.integers(0, 3, 64)
    results = {}
    for name in ("numpy", "jax", "strict", "torch"):
        if tn.backends.probe(name)[0] is None:
            continue
        model = tn.Sequential(layers(), input_shape=shape, dtype="float64", seed=0, backend=name)
        hist = model.fit(
            x, y, loss=SCCE, optimizer=tn.optimizers.SGD(1e300), epochs=3, batch_size=16,
            shuffle=False, verbose=0, callbacks=[tn.TerminateOnNaN()], steps_per_execution=4,
        )  # fmt: skip
        W = to_numpy(model.params[0]["W"])
        results[name] = (hist.history, model.step, model.stop_reason, W)
    numpy_history, steps, reason, numpy_W = results["numpy"]
    assert steps == 1 and "epoch 1, step 2 " in reason, reason
    assert all(math.isfinite(v) for v in numpy_history["loss"]), numpy_history
    assert np.all(np.isfinite(numpy_W))
    for name, (history, other_steps, other_reason, W) in results.items():
        assert other_steps == steps and other_reason.split(" (")[0] == reason.split(" (")[0], name
        np.testing.assert_allclose(history["loss"], numpy_history["loss"], rtol=1e-12)
        assert history["accuracy"] == numpy_history["accuracy"], name
        np.testing.assert_allclose(W, numpy_W, rtol=1e-12, atol=1e-15, err_msg=name)
