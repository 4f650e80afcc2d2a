"""tinynet.compare: one training step on every backend against a NumPy float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinynet as tn
from tinynet import backends, commands, compare, core, datasets
from tinynet import random as tnrandom

LOSS = "sparse_categorical_crossentropy"


def _available() -> list[str]:
    return [name for name in backends.BACKEND_NAMES if backends.probe(name)[0] is not None]


def _model(dtype: str = "float32", seed: int = 3) -> tn.Sequential:
    return tn.Sequential(
        [
            tn.Dense(2, 8, init="he_uniform"),
            tn.ReLU(),
            tn.Dropout(0.25),
            tn.Dense(8, 8),
            tn.Tanh(),
            tn.Dense(8, 3),
            tn.Softmax(),
        ],
        dtype=dtype,
        seed=seed,
        backend="numpy",
    )


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    x, y = datasets.spiral(samples_per_class=20, classes=3, noise=0.2, seed=1)
    rows = np.random.default_rng(0).permutation(len(x))[:32]
    return x[rows], y[rows]


def _expected_quantities(model: tn.Sequential, with_update: bool) -> list[tuple]:
    """(layer, quantity) in the documented order: forward, loss, backward, update."""
    n = len(model.layers)
    out = [(i, "output") for i in range(n)] + [(None, "loss")]
    for i in range(n - 1, -1, -1):
        out.append((i, "grad_input"))
        out += [(i, f"grad_{p}") for p in sorted(model.params[i])]
    if with_update:
        out += [(i, f"updated_{p}") for i in range(n) for p in sorted(model.params[i])]
    return out


def test_report_structure(batch):
    model = _model()
    before = [{k: tn.to_numpy(v).copy() for k, v in p.items()} for p in model.params]
    report = compare.compare_backends(model, *batch, LOSS, optimizer="adam")
    available = _available()
    assert report.compared == available
    assert set(report.compared) | set(report.skipped) == set(backends.BACKEND_NAMES)
    assert report.dtype == "float32" and report.batch_size == 32
    assert report.dropout_seed == model.fit_seed == 0
    assert set(report.losses) == {"reference", *available}
    types = [type(layer).__name__ for layer in model.layers]
    for name in available:
        rows = report.for_backend(name)
        assert [(r.layer, r.quantity) for r in rows] == _expected_quantities(model, True)
        for r in rows:
            assert isinstance(r, compare.Row) and r.backend == name
            want = "SparseCategoricalCrossentropy" if r.layer is None else types[r.layer]
            assert r.layer_type == want
            assert isinstance(r.max_abs, float) and isinstance(r.max_rel, float)
            assert 0.0 <= r.max_abs and 0.0 <= r.max_rel < 1e-4 and r.note == ""
    assert list(report) == report.rows and len(report) == len(report.rows)
    assert set(report.to_dicts()[0]) == {
        "backend",
        "layer",
        "layer_type",
        "quantity",
        "max_abs",
        "max_rel",
        "note",
    }
    # the model is left alone
    for p, q in zip(model.params, before, strict=True):
        for k in p:
            np.testing.assert_array_equal(tn.to_numpy(p[k]), q[k])
    assert model.backend.name == "numpy" and model.optimizer is None


def test_without_optimizer_no_update_rows(batch):
    report = compare.compare_backends(_model(), *batch, LOSS, backends=["numpy"])
    assert report.compared == ["numpy"] and report.skipped == {} and report.optimizer is None
    assert not any(r.quantity.startswith("updated_") for r in report)


def test_float64_matches_reference_on_every_backend(batch):
    report = compare.compare_backends(_model("float64"), *batch, LOSS, optimizer="adam")
    assert "numpy" in report.compared
    for r in report:
        if r.backend in report.compared:
            assert r.max_rel < 1e-12, r
    # NumPy float64 *is* the reference computation
    assert all(r.max_abs == 0.0 for r in report.for_backend("numpy"))
    for name in report.compared:
        assert report.losses[name] == pytest.approx(report.losses["reference"], rel=1e-12)


def test_float32_model_compared_in_float64(batch):
    # dtype= overrides the model's: float32 parameters cast exactly to float64
    report = compare.compare_backends(_model("float32"), *batch, LOSS, dtype="float64")
    assert report.dtype == "float64"
    assert max(report.max_rel(name) for name in report.compared) < 1e-12


def test_float32_differences_small_but_nonzero(batch):
    report = compare.compare_backends(_model("float32"), *batch, LOSS, optimizer="sgd")
    for name in report.compared:
        rows = report.for_backend(name)
        assert max(r.max_rel for r in rows) < 1e-4, report.worst(name)
        # float32 rounding shows up: outputs of Dense layers are not exact
        assert any(r.max_rel > 0.0 for r in rows if r.quantity == "output"), name
        assert all(math.isfinite(r.max_abs) for r in rows)
        assert report.losses[name] == pytest.approx(report.losses["reference"], rel=1e-5)


def test_unavailable_backend_rows_say_why(batch, monkeypatch):
    real_probe = backends.probe

    def probe(name):
        if name == "strict":
            return None, "strict is switched off for this test"
        return real_probe(name)

    monkeypatch.setattr(compare.registry, "probe", probe)
    report = compare.compare_backends(_model(), *batch, LOSS, backends=["numpy", "strict"])
    assert report.compared == ["numpy"]
    assert report.skipped == {"strict": "strict is switched off for this test"}
    (row,) = report.for_backend("strict")
    assert row.quantity == "unavailable" and row.layer is None
    assert math.isnan(row.max_abs) and math.isnan(row.max_rel)
    assert row.note == "strict is switched off for this test"
    text = compare.format_report(report)
    assert "strict: skipped: strict is switched off for this test" in text


def test_really_unavailable_backends_are_reported(batch):
    report = compare.compare_backends(_model(), *batch, LOSS)
    for name in backends.BACKEND_NAMES:
        backend, why = backends.probe(name)
        if backend is None:
            (row,) = report.for_backend(name)
            assert row.quantity == "unavailable" and row.note == why and why


def test_failing_backend_gives_error_row(batch, monkeypatch):
    real_run = compare._run

    def run(model, backend, *args):
        if backend.name == "strict":
            raise MemoryError("out of device memory")
        return real_run(model, backend, *args)

    monkeypatch.setattr(compare, "_run", run)
    report = compare.compare_backends(_model(), *batch, LOSS, backends=["numpy", "strict"])
    (row,) = report.for_backend("strict")
    assert row.quantity == "error" and "MemoryError: out of device memory" in row.note
    assert report.skipped["strict"] == row.note and report.compared == ["numpy"]


def test_unknown_backend_and_dtype_are_errors(batch):
    with pytest.raises(ValueError, match="unknown backend 'tpu'.*numpy, jax, cupy, strict"):
        compare.compare_backends(_model(), *batch, LOSS, backends=["tpu"])
    with pytest.raises(ValueError, match="dtype"):
        compare.compare_backends(_model(), *batch, LOSS, dtype="float16")


def test_step_equals_the_training_maths(batch):
    """The instrumented step computes exactly what fit's loss_and_grads does."""
    model = _model("float64")
    bk = backends.load("numpy")
    x = bk.asarray(batch[0], "float64")
    y = bk.asarray(batch[1])
    key = compare.step_key(0, bk)
    loss = tn.losses.get(LOSS)
    value, grads, _, _ = core.make_loss_and_grads(model.layers, loss, bk)(
        model.params, model.state, x, y, key, True
    )
    out = compare._make_step(model.layers, loss, None, bk)(
        model.params, model.state, x, y, key, None
    )
    assert float(out["loss"]) == float(value)
    for g, h in zip(grads, out["grads"], strict=True):
        assert sorted(g) == sorted(h)
        for k in g:
            np.testing.assert_array_equal(h[k], g[k])
    # the key is fit's first step: fold_in(fold_in(fold_in(key(seed), epoch 0), 0xD0), step 0)
    expected = tnrandom.fold_in(tnrandom.fold_in(tnrandom.fold_in(tnrandom.key(0, bk), 0), 0xD0), 0)
    np.testing.assert_array_equal(key, expected)


def test_format_report_table(batch):
    report = compare.compare_backends(
        _model("float64"), *batch, LOSS, backends=["numpy"], optimizer="sgd"
    )
    text = compare.format_report(report)
    lines = text.splitlines()
    assert lines[0].startswith("one training step, batch 32, float64, against numpy float64")
    assert "dropout masks of fit seed 0" in lines[0]
    header = next(line for line in lines if line.startswith("backend"))
    assert header.split() == ["backend", "layer", "type", "quantity", "max_abs", "max_rel"]
    assert sum(line.startswith("numpy ") for line in lines) == len(report.rows)
    assert "numpy: every quantity equals the reference bit for bit" in text


def test_main_compare_with_arrays_and_by_name():
    x, y = datasets.spiral(samples_per_class=30, classes=3, seed=2)
    report = commands.main_compare(
        (x, y),
        hidden=(8,),
        activation="tanh",
        dtype="float64",
        seed=1,
        batch_size=16,
        backends=["numpy", "strict"],
        dropout=0.1,
    )
    assert report.batch_size == 16 and report.dropout_seed == 1
    assert report.compared == ["numpy", "strict"]
    assert max(report.max_rel(n) for n in report.compared) < 1e-12
    assert any(r.layer_type == "Dropout" for r in report)
    by_name = commands.main_compare("spiral", hidden=(4,), batch_size=8, backends=["numpy"])
    assert by_name.batch_size == 8 and by_name.dtype == "float32"
    assert by_name.dropout_seed is None  # no Dropout layer
    with pytest.raises(ValueError, match="batch_size"):
        commands.main_compare((x, y), batch_size=0)


def test_main_compare_builds_the_cnn_too():
    """``model="cnn"``: train's CNN on images, every backend within float64
    rounding of NumPy float64, convolution and pooling rows included."""
    rng = np.random.default_rng(4)
    x = rng.random((40, 8, 8, 1))
    y = rng.integers(0, 3, 40)
    report = commands.main_compare((x, y), model="cnn", dtype="float64", batch_size=16,
                                   backends=_available())
    assert report.compared == _available()
    rows = [r for r in report.rows if r.backend != "numpy"]
    # Outputs, loss and gradients to float64 rounding.  After Adam's update a
    # BatchNorm beta-gradient element that cancels to near zero over the
    # batch becomes a fraction of a whole step, so its rounding shows at
    # ~2e-11 of the largest update: compare.UPDATE_TOLERANCES allows 1e-10.
    assert max(r.max_rel for r in rows if not r.quantity.startswith("updated_")) < 1e-12
    assert max(r.max_rel for r in rows if r.quantity.startswith("updated_")) < 1e-10
    assert compare.verdict(report)[0]
    numpy_rows = {(r.layer_type, r.quantity) for r in report.for_backend("numpy")}
    assert {("Conv2D", "grad_W"), ("Conv2D", "updated_W"), ("MaxPool2D", "grad_input")} <= (
        numpy_rows
    )
    with pytest.raises(ValueError, match="model 'cnn' on the given samples: the cnn takes images"):
        commands.main_compare((x.reshape(40, -1), y), model="cnn")


def test_cli_compare_cnn_refuses_mlp_flags_and_feature_vectors(capsys):
    from tinynet.cli import main

    assert main(["compare-backends", "--model", "cnn", "--hidden", "8"]) == 2
    assert "--hidden shapes the mlp; --model cnn has fixed layers" in capsys.readouterr().err
    assert main(["compare-backends", "--model", "cnn", "--dataset", "spiral"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model 'cnn' on spiral: the cnn takes images" in err


# ------------------------------------------------------------------ the verdict


def _with_row(report, **changes):
    """``report`` with its first numpy row changed."""
    rows = list(report.rows)
    first = next(i for i, r in enumerate(rows) if r.backend == "numpy")
    rows[first] = rows[first]._replace(**changes)
    return compare.CompareReport(rows, report.dtype, report.batch_size, report.compared,
                                 report.skipped, optimizer=report.optimizer)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_verdict_passes_within_the_stated_tolerance(batch, dtype):
    report = compare.compare_backends(_model(dtype), *batch, LOSS, optimizer="adam",
                                      backends=["numpy", "cupy"])
    passed, line = compare.verdict(report)
    assert passed and line.startswith("PASS: numpy within the ")
    assert f"{dtype} tolerance {compare.TOLERANCES[dtype]:.0e}" in line
    assert "(skipped: cupy)" in line or "cupy" in report.compared
    limit = compare.TOLERANCES[dtype]
    failed, line = compare.verdict(_with_row(report, max_rel=limit * 1.5))
    assert not failed and line.startswith("FAIL: numpy ") and f"{limit:.0e}" in line
    failed, _ = compare.verdict(_with_row(report, max_rel=math.nan))
    assert not failed


def test_verdict_updates_have_their_own_tolerance(batch):
    report = compare.compare_backends(_model(), *batch, LOSS, optimizer="adam",
                                      backends=["numpy"])
    update = next(i for i, r in enumerate(report.rows) if r.quantity.startswith("updated_"))
    loose = compare.UPDATE_TOLERANCES["float32"] / 2
    assert loose > compare.TOLERANCES["float32"]
    report.rows[update] = report.rows[update]._replace(max_rel=loose)
    passed, line = compare.verdict(report)
    assert passed and "1e-02 after the optimizer update" in line


def test_verdict_fails_when_nothing_ran_or_a_backend_failed(batch, monkeypatch):
    nothing = compare.CompareReport([], "float32", 8, [], {"cupy": "not installed"})
    nothing.rows.append(compare.Row("cupy", None, "", "unavailable", math.nan, math.nan, "x"))
    assert compare.verdict(nothing) == (False, "FAIL: no backend ran (skipped: cupy)")
    report = compare.compare_backends(_model(), *batch, LOSS, backends=["numpy"])
    report.skipped["jax"] = "RuntimeError: out of memory"
    report.rows.append(compare.Row("jax", None, "", "error", math.nan, math.nan, "oom"))
    assert compare.verdict(report) == (False, "FAIL: jax failed to run")


def test_main_compare_uses_train_defaults():
    from tinynet import options
    from tinynet.cli import build_parser

    train = build_parser().parse_args(["train"])
    cli = build_parser().parse_args(["compare-backends"])
    for flag in ("dataset", "model", "hidden", "batch_size", "optimizer", "lr", "dtype", "seed",
                 "activation", "dropout"):
        assert getattr(cli, flag) == getattr(train, flag), flag
    report = commands.main_compare(backends=["numpy"])
    assert report.batch_size == options.default_batch_size(None) == 32  # None: per dataset
    assert "Adam(lr=0.003," in report.optimizer  # train's learning rate, not Adam's 0.001
    widths = [r.layer_type for r in report.for_backend("numpy") if r.quantity == "output"]
    assert widths.count("Dense") == len(options.default_hidden(None)) + 1


def test_cli_ends_with_the_verdict_and_its_exit_status(monkeypatch, capsys):
    from tinynet.cli import main

    argv = ["compare-backends", "--dataset", "spiral", "--backends", "numpy"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: numpy within the float32")
    monkeypatch.setitem(compare.TOLERANCES, "float32", 1e-12)
    assert main(argv) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL: numpy ")
