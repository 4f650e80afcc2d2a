"""EarlyStopping against Keras's rule (patience >= 1, min_delta > 0,
restore_best_weights), on every backend: with scripted monitored values and
in a real ``fit``."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest

import tinynet as tn

NAN = math.nan


def keras_early_stopping(values, patience, min_delta, mode="min"):
    """Keras 3's ``EarlyStopping.on_epoch_end`` transcribed (baseline=None,
    start_from_epoch=0: tinynet has neither), over a whole run.

    Returns ``(epoch at which it stops or None, epoch whose weights
    restore_best_weights puts back)``."""
    monitor_op = operator.lt if mode == "min" else operator.gt
    min_delta = abs(min_delta) * (-1 if mode == "min" else 1)
    best = math.inf if mode == "min" else -math.inf
    wait, best_weights = 0, None
    for epoch, current in enumerate(values):
        if best_weights is None:  # never set: the current weights are the best
            best_weights = epoch
        wait += 1
        if monitor_op(current - min_delta, best):
            best, best_weights, wait = current, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best_weights
    return None, best_weights


def test_reference_matches_the_keras_docstring_example():
    # keras.callbacks.EarlyStopping(monitor="loss", patience=3) on a loss
    # that never improves after the first epoch: "Only 4 epochs are run."
    stop, best = keras_early_stopping([5.0, 6.0, 7.0, 8.0, 9.0, 10.0], patience=3, min_delta=0)
    assert (stop, best) == (3, 0)


# (values, patience, min_delta, mode, expected stop epoch, expected best epoch),
# the expectations worked out by hand from Keras's rule
CASES = {
    "p1": ([4.0, 3.0, 2.875, 2.5, 2.75], 1, 0.25, "min", 2, 1),
    "p2_reset": ([1.0, 0.75, 0.7, 0.5, 0.45, 0.4, 0.35], 2, 0.125, "min", 5, 3),
    # 0.12 + 0.01 < 0.13 is False in floats (0.12 < 0.13 - 0.01 is True)
    "p3_boundary": ([0.2, 0.13, 0.12, 0.125, 0.115, 0.2, 0.3, 0.4, 0.1], 3, 0.01, "min", 7, 4),
    "p2_max": ([0.5, 0.6, 0.625, 0.7, 0.7, 0.74, 0.76, 0.8], 2, 0.05, "max", 5, 3),
    "p1_nan_first": ([NAN, 2.0, 3.0, 1.5, 1.6], 1, 0.5, "min", 2, 1),
    "p2_all_nan": ([NAN, NAN, NAN, NAN], 2, 0.5, "min", 1, 0),
    "p3_plateau": ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 3, 0.01, "min", 3, 0),
    "p3_no_stop": ([3.0, 2.0, 2.5, 2.25], 3, 0.25, "min", None, 1),
    "p0": ([1.0, 0.5, 0.6, 0.4], 0, 0.05, "min", 2, 1),
    "p1_same_as_p0": ([1.0, 0.5, 0.6, 0.4], 1, 0.05, "min", 2, 1),
}


@pytest.mark.parametrize("case", CASES)
def test_reference_gives_the_hand_worked_outcomes(case):
    values, patience, min_delta, mode, stop, best = CASES[case]
    assert keras_early_stopping(values, patience, min_delta, mode) == (stop, best)


def host_params(model):
    return [{k: np.array(tn.to_numpy(v)) for k, v in p.items()} for p in model.params]


def assert_params_equal(model, expected):
    for got, want in zip(host_params(model), expected):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("restore", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_scripted_values_stop_and_restore_as_keras(backend, case, restore):
    """The callback's hooks called as fit calls them, on a real model whose
    parameters change every epoch, with monitored values from the table."""
    values, patience, min_delta, mode, stop, best = CASES[case]
    monitor = "val_loss" if mode == "min" else "val_accuracy"
    model = tn.Sequential([tn.Dense(3, 4), tn.ReLU(), tn.Dense(4, 2), tn.Softmax()], seed=0)
    callback = tn.EarlyStopping(
        monitor=monitor, patience=patience, min_delta=min_delta, restore_best_weights=restore
    )
    model.stop_training = False
    callback.on_train_begin(model)
    snapshots, stopped = [], None
    for epoch, value in enumerate(values):
        model.params = [{k: v + 1.0 for k, v in p.items()} for p in model.params]
        snapshots.append(host_params(model))
        callback.on_epoch_end(model, epoch, {"loss": 0.5, monitor: value})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end(model, {})
    assert stopped == stop
    assert model.stop_training is (stop is not None)
    if stop is not None:
        assert "early stopping" in model.stop_reason
    assert_params_equal(model, snapshots[best] if restore else snapshots[-1])


class SnapshotParams(tn.callbacks.Callback):
    def __init__(self) -> None:
        self.params: list = []

    def on_epoch_end(self, model, epoch, logs):
        self.params.append(host_params(model))


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_fit_stops_and_restores_as_keras(backend, patience):
    """A real run whose validation loss goes up and down: the epochs run and
    the restored parameters are those of Keras's rule on the logged values."""
    x, y = tn.datasets.spiral(samples_per_class=40, classes=3, noise=0.2, seed=3)
    x_val, y_val = tn.datasets.spiral(samples_per_class=20, classes=3, noise=0.2, seed=4)
    layers = [tn.Dense(2, 16), tn.Tanh(), tn.Dense(16, 3), tn.Softmax()]
    model = tn.Sequential(layers, dtype="float64", seed=0)
    snapshots = SnapshotParams()
    stop = tn.EarlyStopping(patience=patience, min_delta=0.002, restore_best_weights=True)
    history = model.fit(
        x,
        y,
        loss="sparse_categorical_crossentropy",
        optimizer=tn.optimizers.SGD(lr=1.0),
        epochs=25,
        batch_size=16,
        seed=1,
        verbose=0,
        validation_data=(x_val, y_val),
        callbacks=[snapshots, stop],
    )
    val_loss = history.history["val_loss"]
    ref_stop, ref_best = keras_early_stopping(val_loss, patience, 0.002)
    assert ref_stop is not None and ref_stop < 24  # the run really stopped early
    assert ref_stop == len(history.epoch) - 1 == len(snapshots.params) - 1
    assert model.stop_training
    assert_params_equal(model, snapshots.params[ref_best])
