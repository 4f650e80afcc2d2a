"""Bad input gets one clear error, of the same type on every backend, before
any device work (issue 6, "Hardening"); non-finite numbers in training are
caught by the NaN guard, which keeps the parameters from before the bad step.

``CASES`` is the catalogue: ``(description, call, exception type, message
regex)``.  ``call(model, arr)`` gets a fresh 3-feature, 3-class model on the
backend under test and ``arr``, which turns host data into the arrays the
case feeds in: NumPy arrays for the ``[host]`` rows, arrays of the backend
for the ``[device]`` rows.  Each row runs on every backend and checks that

* the exception type and the message (what is wrong, where, what was
  expected) are as listed,
* nothing about the model changed (parameters, optimizer, counters) and no
  step was built or run (the model's compile cache is still empty).

Damaged, foreign and hostile checkpoint files (truncation, byte flips, a
crafted pickle payload whose side effect must not happen, a newer format
version, interrupted atomic saves) are covered in ``tests/test_checkpoint.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import to_numpy

import tinynet as tn
from tinynet import losses
from tinynet.tree import tree_leaves

SP = "sparse_categorical_crossentropy"
CCE = "categorical_crossentropy"

X = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
Y = np.array([0, 1, 2, 0, 1, 2])
P = np.full((6, 3), 1 / 3, dtype="float32")  # predicted probabilities for loss calls


def classifier(backend_name: str, dtype: str = "float32", seed: int = 0) -> tn.Sequential:
    """3 features -> 3 classes; built on NumPy and moved (no init compile on JAX)."""
    layers = [tn.Dense(3, 4), tn.ReLU(), tn.Dense(4, 3), tn.Softmax()]
    return tn.Sequential(layers, dtype=dtype, seed=seed, backend="numpy").to_backend(backend_name)


def _with(a: np.ndarray, index: tuple, value) -> np.ndarray:
    """A copy of ``a`` with one value replaced."""
    out = a.copy()
    out[index] = value
    return out


def labels(*values) -> np.ndarray:
    return np.array(values)


ONE_HOT = np.eye(3, dtype="float32")[Y]
X64 = X.astype("float64")


def fit(m, x, y, **kwargs):
    kwargs.setdefault("loss", SP)
    return m.fit(x, y, verbose=0, **kwargs)


# ``both`` gives a [host] and a [device] row; on NumPy the two are the same
# call, so the [device] row is skipped there.
def both(description, call, exc, regex, marks=(), device_marks=()):
    return [
        pytest.param(
            f"{description} [host]",
            call,
            exc,
            regex,
            False,
            id=f"{description} [host]",
            marks=marks,
        ),
        pytest.param(
            f"{description} [device]",
            call,
            exc,
            regex,
            True,
            id=f"{description} [device]",
            marks=marks or device_marks,
        ),
    ]


def host(description, call, exc, regex, marks=()):
    return [pytest.param(description, call, exc, regex, False, id=description, marks=marks)]


def device(description, call, exc, regex, marks=()):
    """A call that needs arrays of the backend (e.g. a loss called directly)."""
    return [pytest.param(description, call, exc, regex, None, id=description, marks=marks)]


CASES = [
    # ---- class labels: ValueError naming the value, its position and the class count
    *both(
        "fit: label >= number of classes",
        lambda m, a: fit(m, a(X), a(labels(0, 1, 3, 0, 1, 2))),
        ValueError,
        r"^fit: label 3 at position 2 is out of range for 3 classes \(valid labels "
        r"are 0\.\.2\)",
    ),
    *both(
        "fit: negative label",
        lambda m, a: fit(m, a(X), a(labels(0, 1, 2, 0, -1, 2))),
        ValueError,
        r"^fit: label -1 at position 4 is out of range for 3 classes",
    ),
    *both(
        "fit: non-integer label",
        lambda m, a: fit(m, a(X), a(labels(0, 1, 1.5, 0, 1, 2))),
        ValueError,
        r"^fit: .*label 1\.5 at position 2 .*3 classes",
    ),
    *both(
        "fit: NaN label",
        lambda m, a: fit(m, a(X), a(labels(0, 1, np.nan, 0, 1, 2))),
        ValueError,
        r"^fit: .*label nan at position 2 .*3 classes",
    ),
    *both(
        "fit: labels of shape (n, 1)",
        lambda m, a: fit(m, a(X), a(Y.reshape(-1, 1))),
        ValueError,
        r"^fit: integer labels must have shape \(n,\), received shape \(6, 1\) "
        r"for 3 classes; flatten",
    ),
    *both(
        "fit: one-hot rows with the sparse loss",
        lambda m, a: fit(m, a(X), a(ONE_HOT)),
        ValueError,
        r"^fit: .*shape \(n,\), received shape \(6, 3\) for 3 classes.*one-hot",
    ),
    *host(
        "fit: string labels [host]",
        lambda m, a: fit(m, X, np.array(list("abcabc"))),
        ValueError,
        r"^fit: labels must be integers in 0\.\.2 for 3 classes, received dtype str",
    ),
    *both(
        "evaluate: label >= number of classes",
        lambda m, a: m.evaluate(a(X), a(labels(0, 1, 2, 5, 1, 2)), loss=SP),
        ValueError,
        r"^evaluate: label 5 at position 3 is out of range for 3 classes",
    ),
    *both(
        "fit: bad label in validation_data",
        lambda m, a: fit(m, a(X), a(Y), validation_data=(a(X), a(labels(0, 1, 2, 0, 1, 7)))),
        ValueError,
        r"^fit\(validation_data\): label 7 at position 5 .*3 classes",
    ),
    *device(
        "loss(y_true, y_pred): label >= number of classes",
        lambda m, a: losses.SparseCategoricalCrossentropy()(a(labels(0, 1, 3, 0, 1, 2)), a(P)),
        ValueError,
        r"^SparseCategoricalCrossentropy: label 3 at position 2 .*3 classes",
    ),
    *device(
        "loss.grad: negative label",
        lambda m, a: losses.SparseCategoricalCrossentropy().grad(
            a(labels(0, -2, 1, 0, 1, 2)), a(P)
        ),
        ValueError,
        r"^SparseCategoricalCrossentropy: label -2 at position 1 .*3 classes",
    ),
    *device(
        "loss(from_logits=True): non-integer label",
        lambda m, a: losses.SparseCategoricalCrossentropy(from_logits=True)(
            a(labels(0, 1, 2, 0.25, 1, 2)), a(P)
        ),
        ValueError,
        r"^SparseCategoricalCrossentropy: .*label 0\.25 at position 3 .*"
        r"3 classes",
    ),
    *device(
        "loss: whole-number labels of a float dtype",
        lambda m, a: losses.SparseCategoricalCrossentropy()(a(Y.astype("float32")), a(P)),
        ValueError,
        r"^SparseCategoricalCrossentropy: labels must be integers in 0\.\.2 for 3 "
        r"classes, received dtype float32",
    ),
    *device(
        "loss: labels of shape (n, 1)",
        lambda m, a: losses.SparseCategoricalCrossentropy()(a(Y.reshape(-1, 1)), a(P)),
        ValueError,
        r"shape \(n,\), received shape \(6, 1\) for 3 classes",
    ),
    *device(
        "one_hot: label >= num_classes",
        lambda m, a: tn.one_hot(a(labels(0, 4, 1)), 4),
        ValueError,
        r"^one_hot: label 4 at position 1 is out of range for 4 classes",
    ),
    *device(
        "one_hot: negative label",
        lambda m, a: tn.one_hot(a(labels(0, 1, -1)), 4),
        ValueError,
        r"^one_hot: label -1 at position 2 is out of range for 4 classes",
    ),
    *device(
        "one_hot: non-integer label",
        lambda m, a: tn.one_hot(a(labels(0.0, 2.5)), 4),
        ValueError,
        r"^one_hot: .*label 2\.5 at position 1 .*4 classes",
    ),
    *device(
        "one_hot: labels of shape (n, 2)",
        lambda m, a: tn.one_hot(a(np.zeros((3, 2), "int64")), 4),
        ValueError,
        r"^one_hot: .*received shape \(3, 2\) for 4 classes",
    ),
    *device(
        "one_hot: num_classes=0",
        lambda m, a: tn.one_hot(a(labels(0, 1)), 0),
        ValueError,
        r"^one_hot: num_classes must be a positive integer, received 0",
    ),
    # ---- shapes: ValueError naming the layer and both shapes
    *both(
        "fit: 2 features into a 3-feature model",
        lambda m, a: fit(m, a(X[:, :2]), a(Y)),
        ValueError,
        r"^fit: layer 0 \(Dense\) expects 3 input features, i\.e\. input of shape "
        r"\(n, 3\), received input of shape \(6, 2\)",
    ),
    *both(
        "evaluate: 4 features into a 3-feature model",
        lambda m, a: m.evaluate(a(np.ones((6, 4), "float32")), a(Y), loss=SP),
        ValueError,
        r"^evaluate: layer 0 \(Dense\) expects 3 .*\(n, 3\).*\(6, 4\)",
    ),
    *both(
        "predict: 2 features into a 3-feature model",
        lambda m, a: m.predict(a(X[:, :2])),
        ValueError,
        r"^predict: layer 0 \(Dense\) expects 3 .*\(n, 3\).*\(6, 2\)",
    ),
    *both(
        "fit: a single sample of rank 1",
        lambda m, a: fit(m, a(X[0]), a(Y[:1])),
        ValueError,
        r"^fit: input must have shape \(n, 3\), received shape \(3,\)",
    ),
    *both(
        "predict: images of rank 3",
        lambda m, a: m.predict(a(X.reshape(6, 3, 1))),
        ValueError,
        r"^predict: input must have shape \(n, 3\), received shape \(6, 3, 1\); "
        r"flatten",
    ),
    *host(
        "Sequential: layer sizes that do not chain",
        lambda m, a: tn.Sequential([tn.Dense(3, 4), tn.ReLU(), tn.Dense(5, 2)]),
        ValueError,
        r"layer 2 \(Dense\) expects 5 input features but the layer before it "
        r"produces 4",
    ),
    *host(
        "Sequential: first layer not Dense",
        lambda m, a: tn.Sequential([tn.ReLU(), tn.Dense(3, 2)]),
        ValueError,
        r"^Sequential: pass input_shape=\.\.\., the shape of one sample, e\.g\. "
        r"input_shape=\(784,\) \(layer 0, ReLU, does not state it\)$",
    ),
    *both(
        "fit: one-hot targets narrower than the output",
        lambda m, a: fit(m, a(X), a(np.eye(2, dtype="float32")[Y % 2]), loss=CCE),
        ValueError,
        r"^fit: targets of shape \(6, 2\) do not match the model output \(n, 3\)",
    ),
    *both(
        "fit: integer labels with a one-hot loss",
        lambda m, a: fit(m, a(X), a(Y), loss=CCE),
        ValueError,
        r"^fit: .*\(6,\).*CategoricalCrossentropy",
    ),
    *device(
        "loss: y_true and y_pred of different shapes",
        lambda m, a: losses.CategoricalCrossentropy()(a(np.eye(2, dtype="float32")[Y % 2]), a(P)),
        ValueError,
        r"y_true has shape \(6, 2\) but y_pred has shape \(6, 3\)",
    ),
    # ---- sizes and counts
    *both(
        "fit: empty dataset",
        lambda m, a: fit(m, a(X[:0]), a(Y[:0])),
        ValueError,
        r"^fit: the dataset is empty \(0 samples\)",
    ),
    *both(
        "evaluate: empty dataset",
        lambda m, a: m.evaluate(a(X[:0]), a(Y[:0]), loss=SP),
        ValueError,
        r"^evaluate: the dataset is empty",
    ),
    *both(
        "fit: empty validation_data",
        lambda m, a: fit(m, a(X), a(Y), validation_data=(a(X[:0]), a(Y[:0]))),
        ValueError,
        r"^fit\(validation_data\): the dataset is empty",
    ),
    *both(
        "Sequential.loss_and_grads: empty batch",
        lambda m, a: m.loss_and_grads(a(X[:0]), a(Y[:0]), SP),
        ValueError,
        r"^Sequential\.loss_and_grads: .*empty",
    ),
    *device(
        "loss: empty batch",
        lambda m, a: losses.SparseCategoricalCrossentropy()(a(Y[:0]), a(P[:0])),
        ValueError,
        r"^SparseCategoricalCrossentropy: y_pred of shape \(0, 3\) is an empty "
        r"batch",
    ),
    *device(
        "loss.grad: empty batch (MSE)",
        lambda m, a: losses.MeanSquaredError().grad(a(P[:0]), a(P[:0])),
        ValueError,
        r"^MeanSquaredError: .*empty batch",
    ),
    *host(
        "fit: batch_size=0",
        lambda m, a: fit(m, X, Y, batch_size=0),
        ValueError,
        r"^batch_size must be an integer >= 1, received batch_size=0",
    ),
    *host(
        "fit: batch_size=-4", lambda m, a: fit(m, X, Y, batch_size=-4), ValueError, r"batch_size=-4"
    ),
    *host(
        "fit: batch_size=2.5",
        lambda m, a: fit(m, X, Y, batch_size=2.5),
        ValueError,
        r"batch_size must be an integer >= 1, received batch_size=2\.5",
    ),
    *host(
        "fit: batch_size=True",
        lambda m, a: fit(m, X, Y, batch_size=True),
        ValueError,
        r"batch_size must be an integer >= 1, received batch_size=True",
    ),
    *host(
        "evaluate: batch_size=0",
        lambda m, a: m.evaluate(X, Y, loss=SP, batch_size=0),
        ValueError,
        r"batch_size must be an integer >= 1, received batch_size=0",
    ),
    *host(
        "predict: batch_size=-1",
        lambda m, a: m.predict(X, batch_size=-1),
        ValueError,
        r"batch_size must be an integer >= 1, received batch_size=-1",
    ),
    *host(
        "fit: epochs=-1",
        lambda m, a: fit(m, X, Y, epochs=-1),
        ValueError,
        r"^epochs must be an integer >= 0, received epochs=-1",
    ),
    *host(
        "fit: epochs=1.0",
        lambda m, a: fit(m, X, Y, epochs=1.0),
        ValueError,
        r"^epochs must be an integer >= 0, received epochs=1\.0",
    ),
    *host(
        "fit: steps_per_execution=0",
        lambda m, a: fit(m, X, Y, steps_per_execution=0),
        ValueError,
        r"^steps_per_execution must be an integer >= 1 or 'auto', received steps_per_execution=0",
    ),
    *host(
        "fit: validation_split=1.0",
        lambda m, a: fit(m, X, Y, validation_split=1.0),
        ValueError,
        r"^validation_split must be in \[0, 1\), received 1\.0",
    ),
    *host(
        "fit: validation_split leaving no validation sample",
        lambda m, a: fit(m, X, Y, validation_split=0.1),
        ValueError,
        r"^fit: validation_split=0\.1 of 6 samples leaves an empty",
    ),
    *host("fit: no loss", lambda m, a: m.fit(X, Y, verbose=0), ValueError, r"^fit: pass loss="),
    *both(
        "fit: x and y of different lengths",
        lambda m, a: fit(m, a(X), a(Y[:5])),
        ValueError,
        r"^fit: x has 6 samples but y has 5 samples",
    ),
    *both(
        "evaluate: x and y of different lengths",
        lambda m, a: m.evaluate(a(X[:4]), a(Y), loss=SP),
        ValueError,
        r"^evaluate: x has 4 samples but y has 6 samples",
    ),
    *device(
        "loss: 5 labels for 6 predictions",
        lambda m, a: losses.SparseCategoricalCrossentropy()(a(Y[:5]), a(P)),
        ValueError,
        r"^SparseCategoricalCrossentropy: 5 labels for 6 predictions",
    ),
    # ---- non-numeric data and dtypes: TypeError naming the dtype
    *host(
        "fit: object array x",
        lambda m, a: fit(m, X.astype(object), Y),
        TypeError,
        r"^fit: input must be a numeric array, received dtype object",
    ),
    *host(
        "fit: string array x",
        lambda m, a: fit(m, X.astype(str), Y),
        TypeError,
        r"^fit: input must be a numeric array, received dtype <U",
    ),
    *both(
        "fit: complex x",
        lambda m, a: fit(m, a(X.astype("complex64")), a(Y)),
        TypeError,
        r"^fit: input must be a (real )?numeric array, received dtype complex64",
    ),
    *host(
        "fit: x=None",
        lambda m, a: fit(m, None, Y),
        TypeError,
        r"^fit: input must be a NumPy array or an array of the \w+ backend.*"
        r"received NoneType",
    ),
    *host(
        "fit: object targets for a one-hot loss",
        lambda m, a: fit(m, X, ONE_HOT.astype(object), loss=CCE),
        TypeError,
        r"^fit: targets must be numeric, received dtype object",
    ),
    *device(
        "loss: integer y_pred",
        lambda m, a: losses.CategoricalCrossentropy()(a(ONE_HOT), a(ONE_HOT.astype("int32"))),
        TypeError,
        r"^CategoricalCrossentropy: y_pred must be float32 or float64, received "
        r"dtype int32",
    ),
    *host(
        "loss: string y_true",
        lambda m, a: losses.MeanSquaredError()(np.full((6, 3), "a"), P),
        TypeError,
        r"^MeanSquaredError: y_true must be numeric, received dtype str",
    ),
    # ---- NaN / Inf in the data: ValueError naming the value and its position
    *both(
        "fit: NaN in x",
        lambda m, a: fit(m, a(_with(X, (2, 1), np.nan)), a(Y)),
        ValueError,
        r"^fit: input value nan at position \(2, 1\) is not finite",
    ),
    *both(
        "fit: -Inf in x",
        lambda m, a: fit(m, a(_with(X, (5, 0), -np.inf)), a(Y)),
        ValueError,
        r"^fit: input value -inf at position \(5, 0\) is not finite",
    ),
    *both(
        "evaluate: Inf in x",
        lambda m, a: m.evaluate(a(_with(X, (0, 2), np.inf)), a(Y), loss=SP),
        ValueError,
        r"^evaluate: input value inf at position \(0, 2\)",
    ),
    *both(
        "predict: NaN in x",
        lambda m, a: m.predict(a(_with(X, (3, 0), np.nan))),
        ValueError,
        r"^predict: input value nan at position \(3, 0\)",
    ),
    *both(
        "fit: NaN in validation x",
        lambda m, a: fit(m, a(X), a(Y), validation_data=(a(_with(X, (1, 1), np.nan)), a(Y))),
        ValueError,
        r"^fit\(validation_data\): input value nan at position \(1, 1\)",
    ),
    *both(
        "fit: float64 x overflowing a float32 model",
        lambda m, a: fit(m, a(_with(X64, (4, 0), 1e300)), a(Y)),
        ValueError,
        r"^fit: input value 1e\+300 at position \(4, 0\) does not fit in float32",
    ),
    *both(
        "fit: NaN in one-hot targets",
        lambda m, a: fit(m, a(X), a(_with(ONE_HOT, (1, 2), np.nan)), loss=CCE),
        ValueError,
        r"^fit: .*targets.*(NaN|nan)",
    ),
    *both(
        "fit: float64 targets overflowing a float32 model",
        lambda m, a: fit(m, a(X), a(_with(ONE_HOT.astype("float64"), (0, 0), 1e300)), loss="mse"),
        ValueError,
        r"^fit: .*targets.*1e\+300.*(float32|finite)",
    ),
]


def _state(model) -> dict:
    """Everything a failed call must leave alone, as host bytes."""
    out = {
        "epoch": model.epoch,
        "step": model.step,
        "fit_seed": model.fit_seed,
        "optimizer": model.optimizer,
        "history": model.history,
        "stop_reason": model.stop_reason,
        "backend": model.backend.name,
    }
    for name, leaf in tree_leaves({"params": model.params, "opt": model.opt_state}):
        arr = to_numpy(leaf)
        out[name] = (arr.dtype.name, arr.shape, arr.tobytes())
    return out


@pytest.mark.parametrize("description, call, exc, regex, on_device", CASES)
def test_catalogue(backend, description, call, exc, regex, on_device):
    """``on_device``: False host data, True backend arrays, None a call that
    takes backend arrays anyway (a loss or one_hot called directly)."""
    if on_device and backend.name == "numpy":
        pytest.skip("on NumPy the [device] row is the [host] row")
    model = classifier(backend.name)
    before = _state(model)
    arr = backend.asarray if on_device in (True, None) else (lambda a: a)
    with pytest.raises(Exception) as info:
        call(model, arr)
    # the exact type, not a subclass that happens to match (same on every backend)
    assert info.type is exc, f"{description}: {info.type.__name__}: {info.value}"
    message = str(info.value)
    assert re.search(regex, message), f"{description}: message {message!r} !~ {regex!r}"
    assert _state(model) == before, f"{description}: the failed call changed the model"
    assert model._compiled == {}, f"{description}: a step was built before the error"


def test_catalogue_has_one_row_per_description():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- trained models


def test_failed_fit_keeps_a_trained_model_and_its_optimizer_state():
    """A refused fit on a trained model changes nothing, not even when it
    passes a new optimizer (which would reset the state)."""
    model = classifier("numpy")
    model.fit(X, Y, loss=SP, optimizer=tn.optimizers.Adam(0.01), epochs=1, batch_size=4, verbose=0)
    before, optimizer, history = _state(model), model.optimizer, model.history
    with pytest.raises(ValueError, match="label 9 at position 0"):
        model.fit(X, labels(9, 1, 2, 0, 1, 2), loss=SP, optimizer="sgd", verbose=0)
    assert model.optimizer is optimizer and model.history is history
    assert _state(model) == before


def test_failed_fit_keeps_the_fit_seed():
    model = classifier("numpy")
    with pytest.raises(ValueError, match="label 3"):
        model.fit(X, labels(0, 1, 3, 0, 1, 2), loss=SP, seed=9, verbose=0)
    assert model.fit_seed == 0


# ---------------------------------------------------------------- dtypes


X_INT = np.random.default_rng(1).integers(-3, 4, size=(8, 3))
Y_INT = np.arange(8) % 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_casts_input_to_the_model_dtype_and_keeps_parameter_dtypes(backend, dtype):
    """Integer, bool, float16 and float32/float64 inputs are cast to the model
    dtype (documented in as_model_input): training on any of them gives the
    same parameters as training on ``x.astype(dtype)``, and a step never
    changes a parameter's dtype."""
    model = classifier(backend.name, dtype)
    initial = [{k: to_numpy(v).copy() for k, v in p.items()} for p in model.params]
    optimizer = tn.optimizers.SGD(0.1, momentum=0.9)

    def train(x):
        # copies: fit owns the arrays it is given (NumPy updates them in place)
        model.params = [{k: backend.asarray(v.copy()) for k, v in p.items()} for p in initial]
        model.opt_state, model.epoch, model.step = None, 0, 0
        model.fit(
            x, Y_INT, loss=SP, optimizer=optimizer, epochs=1, batch_size=4, shuffle=False, verbose=0
        )
        for name, leaf in tree_leaves({"params": model.params, "opt": model.opt_state}):
            got = to_numpy(leaf).dtype
            if name.startswith("params") or got.kind == "f":
                assert got == np.dtype(dtype), f"{name} became {got} (x of dtype {x.dtype})"
        assert to_numpy(model.predict(x)).dtype == np.dtype(dtype)
        return [to_numpy(leaf).tobytes() for _, leaf in tree_leaves(model.params)]

    expected = train(X_INT.astype(dtype))
    inputs = [
        X_INT,
        X_INT.astype("int32"),
        X_INT.astype("float16"),
        X_INT.astype("float32"),
        X_INT.astype("float64"),
        backend.asarray(X_INT.astype("int32")),
        backend.asarray(X_INT.astype("float64")),
    ]
    for x in inputs:
        assert train(x) == expected, f"x of dtype {x.dtype} was not cast to {dtype}"
    assert expected != [to_numpy(v).tobytes() for p in initial for _, v in sorted(p.items())]
    # bool inputs are numbers too (0/1)
    train(X_INT > 0)


# ---------------------------------------------------------------- the NaN guard


def _blow_up_data(bad_step: int, batch_size: int, dtype: str = "float32"):
    """10 samples; the row that starts batch ``bad_step`` (1-based) overflows
    the first layer when its weights are all ones."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3)).astype(dtype)
    x[(bad_step - 1) * batch_size] = np.finfo(dtype).max / 2  # finite, but 3 * W * x is not
    return x, rng.integers(0, 3, 10)


def _guarded_model(backend, dtype="float32"):
    model = classifier(backend.name, dtype)
    model.params[0]["W"] = backend.asarray(np.ones((3, 4), dtype))
    return model


def _values(model) -> list:
    return [
        (name, to_numpy(leaf).tobytes())
        for name, leaf in tree_leaves({"params": model.params, "opt": model.opt_state})
    ]


@pytest.mark.parametrize("guard", ["nan_guard", "TerminateOnNaN"])
def test_nan_guard_names_first_bad_layer_and_keeps_params_from_before(backend, guard):
    if guard == "TerminateOnNaN" and backend.name == "jax":
        pytest.skip("the same flag as nan_guard=True; one compile less on JAX")
    k, bs = 3, 2
    x, y = _blow_up_data(k, bs)
    kwargs = {"nan_guard": True} if guard == "nan_guard" else {"callbacks": [tn.TerminateOnNaN()]}
    model = _guarded_model(backend)
    history = model.fit(
        x,
        y,
        loss=SP,
        optimizer=tn.optimizers.SGD(0.1, momentum=0.9),
        epochs=2,
        batch_size=bs,
        shuffle=False,
        verbose=0,
        steps_per_execution=4,
        **kwargs,
    )
    report = history.stopped_early
    assert report is not None and report == model.stop_reason
    assert f"epoch 1, step {k} " in report, report
    assert "forward output of layer 0 (Dense)" in report, report
    assert model.step == k - 1
    # exactly the parameters and optimizer state of a clean run of k - 1 steps
    reference = _guarded_model(backend)
    reference.fit(
        x[: (k - 1) * bs],
        y[: (k - 1) * bs],
        loss=SP,
        optimizer=tn.optimizers.SGD(0.1, momentum=0.9),
        epochs=1,
        batch_size=bs,
        shuffle=False,
        verbose=0,
        steps_per_execution=4,
        **kwargs,
    )
    assert reference.stop_reason is None and reference.step == k - 1
    assert _values(model) == _values(reference)


def test_without_the_guard_the_same_data_does_blow_up():
    """The scenario above is real: unguarded, step 3 makes the parameters NaN."""
    x, y = _blow_up_data(3, 2)
    model = _guarded_model(tn.get_backend("numpy"))
    with np.errstate(all="ignore"):
        history = model.fit(
            x,
            y,
            loss=SP,
            optimizer=tn.optimizers.SGD(0.1, momentum=0.9),
            epochs=1,
            batch_size=2,
            shuffle=False,
            verbose=0,
        )
    assert history.stopped_early is None
    assert not all(np.isfinite(to_numpy(leaf)).all() for _, leaf in tree_leaves(model.params))


def test_nan_guard_catches_a_gradient_overflow_with_a_finite_loss(backend):
    """Forward and loss stay finite (W * x ~ 1), but dL/dW = x * dL/dy overflows."""

    def model_and_data():
        model = tn.Sequential([tn.Dense(3, 1)], backend="numpy").to_backend(backend.name)
        model.params[0]["W"] = backend.asarray(np.full((3, 1), 1e-31, "float32"))
        x, y = np.ones((8, 3), "float32"), np.zeros(8, "float32")
        x[2], y[2] = 1e31, 3e8  # batch 2 (of size 2)
        return model, x, y

    model, x, y = model_and_data()
    history = model.fit(
        x, y, loss="mse", optimizer="sgd", batch_size=2, shuffle=False, verbose=0, nan_guard=True
    )
    assert all(np.isfinite(to_numpy(leaf)).all() for _, leaf in tree_leaves(model.params))
    report = history.stopped_early or ""
    assert "epoch 1, step 2 " in report and "gradient of W in layer 0 (Dense)" in report, report
    reference, x, y = model_and_data()
    reference.fit(x[:2], y[:2], loss="mse", optimizer="sgd", batch_size=2, verbose=0)
    assert _values(model) == _values(reference)


def test_nan_guard_names_an_overflowing_regularization_penalty():
    """Forward, loss and backprop are finite; the L2 penalty (3e38 * sum W**2) is not."""
    layers = [tn.Dense(3, 4, weight_l2=3e38), tn.ReLU(), tn.Dense(4, 3), tn.Softmax()]
    model = tn.Sequential(layers, backend="numpy")
    params = lambda: [(n, to_numpy(v).tobytes()) for n, v in tree_leaves(model.params)]  # noqa: E731
    initial = params()
    history = model.fit(X, Y, loss=SP, optimizer="sgd", batch_size=2, verbose=0, nan_guard=True)
    assert "epoch 1, step 1 (the regularization penalty of layer 0 (Dense))" in (
        history.stopped_early or ""
    ), history.stopped_early
    assert model.step == 0 and params() == initial


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_finite_finds_every_non_finite_value_of_a_data_matrix(dtype):
    """``check_finite`` proves a host data matrix finite by one BLAS sum
    (``a @ ones``); wherever a NaN/Inf sits it must be found and named, and
    finite values whose sums overflow must pass."""
    from tinynet.validation import check_finite

    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 37)).astype(dtype)
    check_finite(a, "fit")
    for value in (np.nan, np.inf, -np.inf):
        for _ in range(40):
            pos = (int(rng.integers(300)), int(rng.integers(37)))
            b = a.copy()
            b[pos] = value
            where = rf"value {value} at position \({pos[0]}, {pos[1]}\)"
            with pytest.raises(ValueError, match=where):
                check_finite(b, "fit")
            with pytest.raises(ValueError, match=where):
                check_finite(np.asfortranarray(b), "fit")
    b = a.copy()
    b[7, 3], b[7, 9] = np.inf, -np.inf  # the row sums to NaN, not Inf
    with pytest.raises(ValueError, match=r"value inf at position \(7, 3\)"):
        check_finite(b, "fit")
    huge = np.full((50, 37), np.finfo(dtype).max / 2, dtype)
    check_finite(huge, "fit")  # every row sum overflows; every value is finite
