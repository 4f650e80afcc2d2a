"""Interrupting and resuming training (issue 6, "Hardening").

* Ctrl-C during ``fit`` (a real SIGINT sent to this process from inside a
  step) stops cleanly after the current step: the parameters are those of a
  clean run of exactly that many steps, the finished epochs' history is
  kept, ``history.interrupted`` is set and the last checkpoint is intact.
* Training N epochs, saving, loading in a fresh Python process and training
  M more gives bit-for-bit what N + M uninterrupted epochs give (parameters,
  optimizer state, counters, data order, dropout masks).

A crafted pickle payload where a checkpoint is expected is refused without
running it: ``test_pickle_payload_is_never_unpickled`` in
``tests/test_checkpoint.py`` (with the other damaged-file cases).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import to_numpy

import tinynet as tn
from tinynet import backends
from tinynet.checkpoint import load_into
from tinynet.layers import Layer
from tinynet.tree import tree_leaves

SP = "sparse_categorical_crossentropy"
N_SAMPLES, BATCH = 20, 4  # 5 steps per epoch


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(N_SAMPLES, 3)).astype("float32"), rng.integers(0, 3, N_SAMPLES)


def _state(model) -> dict:
    """Every value training touches, as host bytes, plus the counters."""
    out = {"epoch": model.epoch, "step": model.step, "fit_seed": model.fit_seed,
           "optimizer": model.optimizer.get_config() if model.optimizer else None}
    for name, leaf in tree_leaves({"params": model.params, "opt": model.opt_state}):
        arr = to_numpy(leaf)
        out[name] = (arr.dtype.name, arr.shape, arr.tobytes())
    return out


# ---------------------------------------------------------------- Ctrl-C


class CtrlC(Layer):
    """Identity layer that sends SIGINT to this process from inside the
    training forward pass of the ``at``-th step (eagerly: NumPy, strict)."""

    def __init__(self, at: int, times: int = 1) -> None:
        self.at, self.times, self.calls = at, times, 0

    def forward(self, params, state, x, ops, training=False, key=None):
        if training:
            self.calls += 1
            if self.calls == self.at:
                for _ in range(self.times):
                    os.kill(os.getpid(), signal.SIGINT)
        return x, state, lambda dy, need_dx=True: (dy, {})


@contextlib.contextmanager
def stray_sigints():
    """Record SIGINTs that reach this test's own handler instead of letting
    them abort the whole pytest run (fit must have its own handler)."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _model(backend_name, ctrl_c=None):
    """``ctrl_c`` sits at index 1 in every model (a silent one by default),
    so layer indices, and with them the init and dropout keys, always agree."""
    # ELU rather than ReLU: with ReLU the checkpoints' header is 1920 = 0x780 bytes
    # long and hits test_a_valid_checkpoint_loads_whatever_its_header_length's bug
    layers = [tn.Dense(3, 4), ctrl_c or CtrlC(at=0), tn.ELU(), tn.Dropout(0.25), tn.Dense(4, 3),
              tn.Softmax()]
    return tn.Sequential(layers, seed=2, backend="numpy").to_backend(backend_name)


def _fit(model, x, y, epochs, **kwargs):
    return model.fit(x, y, loss=SP, optimizer=kwargs.pop("optimizer", None), epochs=epochs,
                     batch_size=BATCH, shuffle=False, seed=4, verbose=0, **kwargs)


def _clean_run(backend_name, x, y, full_epochs, extra_steps):
    """Exactly ``full_epochs * 5 + extra_steps`` steps: the first rows of the
    next epoch are its first batches (no shuffling), and the dropout masks
    depend only on the epoch and step index."""
    model = _model(backend_name)
    _fit(model, x, y, full_epochs, optimizer=tn.optimizers.SGD(0.1, momentum=0.9))
    history = model.history
    if extra_steps:
        _fit(model, x[: extra_steps * BATCH], y[: extra_steps * BATCH], 1)
        model.epoch -= 1  # the partial epoch did not finish
    return model, history


@pytest.fixture(params=["numpy", "strict"])
def eager(request):
    """The eager backends, where a layer's forward runs in every step."""
    loaded, why = backends.probe(request.param)
    if loaded is None:
        pytest.skip(why)
    return loaded


def test_ctrl_c_mid_epoch_stops_after_the_current_step(eager, tmp_path):
    x, y = _data()
    at = 2 * 5 + 3  # the 3rd step of epoch 3
    ctrl_c = CtrlC(at)
    model = _model(eager.name, ctrl_c)
    path = tmp_path / "last.safetensors"
    with stray_sigints() as stray:
        history = _fit(model, x, y, 5, optimizer=tn.optimizers.SGD(0.1, momentum=0.9),
                       callbacks=[tn.ModelCheckpoint(str(path))])
    assert stray == [], "SIGINT reached the default handler: fit did not defer it"
    assert ctrl_c.calls == at, "steps ran after the interrupt"
    assert history.interrupted and model.history is history
    assert "interrupted" in model.stop_reason and "epoch 3" in model.stop_reason
    assert history.stopped_early == model.stop_reason
    # the state of exactly `at` whole steps: nothing from a half-done step
    clean, clean_history = _clean_run(eager.name, x, y, 2, 3)
    assert model.step == at
    assert _state(model) == _state(clean)
    # the history of the finished epochs is kept, unchanged
    assert history.epoch == [0, 1]
    assert history.history == clean_history.history
    # the last checkpoint (end of epoch 2) is intact and holds that state
    saved = load_into(_model(eager.name), path)  # CtrlC is no registered layer: load_into
    assert _state(saved) == _state(_clean_run(eager.name, x, y, 2, 0)[0])
    assert saved.epoch == 2 and saved.step == 10


class CtrlCAtEpochEnd(tn.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, model, epoch, logs):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_between_epochs_keeps_the_checkpoint_of_that_epoch(tmp_path):
    """SIGINT while the callbacks run (before ModelCheckpoint saves): the
    save completes, no further step runs."""
    x, y = _data()
    model = _model("numpy")
    path = tmp_path / "ckpt-{epoch}.safetensors"
    checkpoint = tn.ModelCheckpoint(str(path))
    with stray_sigints() as stray:
        history = _fit(model, x, y, 4, optimizer=tn.optimizers.SGD(0.1, momentum=0.9),
                       callbacks=[CtrlCAtEpochEnd(1), checkpoint])
    assert stray == []
    assert history.interrupted and model.step == 10 and history.epoch == [0, 1]
    assert [os.path.basename(p) for p in checkpoint.saved] == ["ckpt-1.safetensors",
                                                               "ckpt-2.safetensors"]
    clean, _ = _clean_run("numpy", x, y, 2, 0)
    saved = load_into(_model("numpy"), checkpoint.saved[-1])
    assert _state(saved) == _state(model) == _state(clean)


def test_second_ctrl_c_raises_keyboard_interrupt_and_handlers_are_restored():
    x, y = _data()
    outer = signal.getsignal(signal.SIGINT)
    model = _model("numpy", CtrlC(2, times=2))
    with stray_sigints() as stray:
        ours = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            _fit(model, x, y, 1, optimizer="sgd")
        assert signal.getsignal(signal.SIGINT) is ours, "fit left its handler installed"
        _fit(_model("numpy"), x, y, 1, optimizer="sgd")
        assert signal.getsignal(signal.SIGINT) is ours
    assert stray == [] and signal.getsignal(signal.SIGINT) is outer


def test_a_valid_checkpoint_loads_whatever_its_header_length(tmp_path):
    """A safetensors file starts with its header length (8 bytes, little
    endian); when that is 128 mod 256, the first byte is 0x80, like a pickle's.
    Such a checkpoint, written by ``save``, must load."""
    path = tmp_path / "model.safetensors"
    for depth in range(1, 41):
        model = tn.Sequential([tn.Dense(2, 2) for _ in range(depth)], backend="numpy")
        for digits in range(16):  # the step counter's digits shift the length by 1 each
            model.step = 10**digits
            model.save(str(path))
            if int.from_bytes(path.read_bytes()[:8], "little") % 256 == 128:
                assert path.read_bytes()[0] == 0x80
                assert _state(tn.load(path, backend="numpy")) == _state(model)
                return
    pytest.fail("save wrote no header of length 128 mod 256: widen the search")


# ---------------------------------------------------------------- resume in a fresh process

RESUME = """
import json, sys
import numpy as np
import tinynet
checkpoint, data, out, backend, epochs = sys.argv[1:6]
model = tinynet.load(checkpoint, backend=backend)
d = np.load(data)
history = model.fit(d["x"], d["y"], loss="sparse_categorical_crossentropy",
                    epochs=int(epochs), batch_size=int(d["batch_size"]), verbose=0)
model.save(out)
with open(out + ".json", "w") as f:
    json.dump({"epoch": history.epoch, "history": history.history,
               "backend": model.backend.name}, f)
"""

OPTIMIZERS = {
    "sgd-momentum": lambda: tn.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: tn.optimizers.Adam(0.01),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("backend_name", ["numpy", "jax", "torch"])
def test_resume_in_a_fresh_process_equals_uninterrupted_training(tmp_path, backend_name,
                                                                 optimizer):
    if backends.probe(backend_name)[0] is None:
        pytest.skip(backends.probe(backend_name)[1])
    n_epochs, m_epochs, batch = 2, 2, 5
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(23, 3)).astype("float32"), rng.integers(0, 3, 23)  # ragged last batch
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y, batch_size=batch)

    layers = [tn.Dense(3, 6), tn.Tanh(), tn.Dropout(0.3), tn.Dense(6, 3), tn.Softmax()]
    model = tn.Sequential(layers, seed=1, backend="numpy").to_backend(backend_name)
    initial = [{k: to_numpy(v).copy() for k, v in p.items()} for p in model.params]
    opt = OPTIMIZERS[optimizer]()

    def fit(epochs):  # shuffle=True (the default), dropout, seed 11
        return model.fit(x, y, loss=SP, optimizer=opt, epochs=epochs, batch_size=batch, seed=11,
                         verbose=0)

    first_history = fit(n_epochs)
    checkpoint = tmp_path / "after-n.safetensors"
    model.save(str(checkpoint))
    first = _state(model)
    out = tmp_path / "resumed.safetensors"
    child = subprocess.Popen(
        [sys.executable, "-c", RESUME, str(checkpoint), str(data), str(out), backend_name,
         str(m_epochs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # While the child runs: N + M epochs in one go from the same initial state.
    # (The same model object, rewound, so that JAX reuses the compiled steps.)
    model.params = [{k: model.backend.asarray(v) for k, v in p.items()} for p in initial]
    model.opt_state, model.epoch, model.step = None, 0, 0
    history = fit(n_epochs + m_epochs)
    assert model.epoch == n_epochs + m_epochs
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, stderr[-3000:]

    resumed = tn.load(out, backend=backend_name)
    report = json.loads((tmp_path / "resumed.safetensors.json").read_text())
    assert report["backend"] == backend_name
    assert resumed.epoch == n_epochs + m_epochs and resumed.fit_seed == 11
    assert _state(resumed) == _state(model)
    # the same data order and masks epoch by epoch: identical per-epoch losses
    assert report["epoch"] == [n_epochs, n_epochs + 1]
    assert report["history"]["loss"] == history.history["loss"][n_epochs:]
    assert first_history.history["loss"] == history.history["loss"][:n_epochs]
    # and the resumed epochs really trained (not a copy of the checkpoint)
    assert _state(resumed) != first


# ---------------------------------------------------------------- mid-epoch resume


def _interrupt_after(monkeypatch, ops, blocks: int) -> None:
    """Send SIGINT to this process right after ``fit``'s ``blocks``-th block
    (one step each with ``steps_per_execution=1``), on any backend."""
    calls = {"n": 0}
    run_block = ops.run_block

    def counting(*args, **kwargs):
        out = run_block(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == blocks:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(ops, "run_block", counting)


MID = dict(loss=SP, batch_size=5, seed=11, verbose=0, steps_per_execution=1)  # 5 steps per epoch


@pytest.mark.parametrize("at", [1, 7, 10, 14])  # epoch 1 step 1, mid-epoch 2, boundaries
def test_resume_after_a_ctrl_c_mid_epoch_gives_the_uninterrupted_bits(
    backend, monkeypatch, tmp_path, at
):
    """Interrupted after ``at`` steps (Adam, dropout, shuffled, float64),
    saved, loaded in a fresh process and trained for the remaining epochs:
    the parameters, optimizer state, counters and every epoch's logs are
    those of the run that was never interrupted."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(23, 3)), rng.integers(0, 3, 23)  # 5 steps, the last ragged

    def model():
        layers = [tn.Dense(6), tn.Tanh(), tn.Dropout(0.3), tn.Dense(3), tn.Softmax()]
        return tn.Sequential(layers, input_shape=(3,), dtype="float64", seed=1)

    whole = model()
    history = whole.fit(x, y, optimizer=tn.optimizers.Adam(0.01), epochs=4, **MID)

    cut = model()
    _interrupt_after(monkeypatch, backend, at)
    first = cut.fit(x, y, optimizer=tn.optimizers.Adam(0.01), epochs=4, **MID)
    monkeypatch.undo()
    assert first.interrupted and cut.step == at
    assert cut.epoch == at // 5 and cut.history.epoch == list(range(at // 5))
    if at % 5:
        assert cut.epoch_progress["step"] == at % 5
        assert f"epoch {at // 5 + 1} after step {at % 5}" in cut.stop_reason
    else:
        assert cut.epoch_progress is None  # stopped at an epoch's end: nothing to continue
    path = tmp_path / "cut.safetensors"
    cut.save(path)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y, batch_size=5)
    child = subprocess.run(
        [sys.executable, "-c", RESUME, str(path), str(data), str(tmp_path / "done.safetensors"),
         backend.name, str(4 - cut.epoch)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    resumed = tn.load(tmp_path / "done.safetensors", backend=backend.name)
    report = json.loads((tmp_path / "done.safetensors.json").read_text())
    assert resumed.step == whole.step == 20 and resumed.epoch == 4
    assert resumed.epoch_progress is None
    assert _state(resumed) == _state(whole)
    losses = first.history.get("loss", []) + report["history"]["loss"]
    assert losses == history.history["loss"]
    assert first.history.get("accuracy", []) + report["history"]["accuracy"] == (
        history.history["accuracy"]
    )


def test_continuing_an_interrupted_epoch_with_other_batches_is_refused(monkeypatch):
    x, y = _data()
    model = _model("numpy")
    _interrupt_after(monkeypatch, model.backend, 3)
    _fit(model, x, y, 2, steps_per_execution=1)
    monkeypatch.undo()
    assert model.epoch_progress["step"] == 3
    def fit_other_batches():
        model.fit(x, y, loss=SP, epochs=1, batch_size=2, shuffle=False, seed=4, verbose=0)

    with pytest.raises(
        ValueError,
        match=r"^fit: the model stopped in the middle of epoch 1 \(after step 3\) of a run "
        r"with batch_size=4, and this call has batch_size=2 .*model\.epoch_progress = None",
    ):
        fit_other_batches()
    model.epoch_progress = None  # start that epoch over: allowed
    fit_other_batches()
    assert model.epoch == 1 and model.step == 3 + 10
