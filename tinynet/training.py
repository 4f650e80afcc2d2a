"""``fit``, ``evaluate`` and ``predict``: argument checks and the host-side
loops around the pure step functions of :mod:`tinynet.core` (the epochs
themselves are :class:`tinynet.fit_loop.FitLoop`'s)."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Sequence
from typing import Any

from . import arguments, core, optimizers
from .callbacks import Callback, History
from .data_parallel import DataParallel
from .fit_loop import FitLoop, mean_logs, metric_for
from .losses import Loss
from .losses import get as get_loss
from .validation import as_model_input, check_input, prepare_data


def _in_scope(fn):
    """Run ``fn(model, ...)`` inside the model backend's scope (JAX: float64 on)."""

    @functools.wraps(fn)
    def call(model, *args, **kwargs):
        with model.backend.scope():
            return fn(model, *args, **kwargs)

    return call


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn Ctrl-C into a flag checked between steps, so a step is never cut
    in half (params would mix two steps; on JAX donated buffers would be lost)."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:  # second Ctrl-C: the user insists
            raise KeyboardInterrupt
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@_in_scope
def fit(
    model: Any,
    x: Any,
    y: Any,
    *,
    loss: Loss | str | None = None,
    optimizer: Any = None,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    callbacks: Sequence[Callback] = (),
    verbose: int = 1,
    steps_per_execution: int | str = "auto",
    nan_guard: bool = False,
    devices: int | None = None,
) -> History:
    """Train ``model`` on ``(x, y)`` and return a :class:`History`.

    On JAX the steps donate the parameter, state and optimizer buffers (old
    references become deleted arrays): keep a copy with ``model.snapshot_params()``.

    Args:
        x: ``(n, in_features)`` host NumPy array or array of the model's backend.
        y: ``(n,)`` integer labels for sparse CE, else ``(n, k)`` one-hot /
            values (``(n,)`` is accepted for a one-output model).
        loss: a :mod:`tinynet.losses` instance or name (required).
        optimizer: a :mod:`tinynet.optimizers` instance or name (a new one starts
            from a fresh state); ``None`` continues with the model's optimizer
            and state (after ``tinynet.load`` or a ``fit``), else ``"adam"``.
        epochs: epochs to run now; ``model.epoch`` counts on, so a resumed run
            sees the same data order.
        batch_size: samples per step; the last batch of an epoch may be smaller.
        validation_data / validation_split: held-out data evaluated after every
            epoch; a split takes the LAST fraction of ``x`` (unshuffled), as Keras.
        shuffle: reshuffle every epoch, in the same order on every backend.
        seed: seeds the data order and dropout masks; ``None``: ``model.fit_seed``
            (0, or the seed a loaded checkpoint was trained with).
        callbacks: e.g. ``EarlyStopping``, ``TerminateOnNaN``, ``ModelCheckpoint``.
        verbose: 1 shows a tqdm progress bar per epoch; 0 is silent.
        steps_per_execution: steps per dispatch of a compiled loop on JAX (same
            maths): an integer, as in Keras, or ``"auto"``: all full batches
            between two progress-bar reads (at most 10 per epoch, the whole epoch
            with ``verbose=0``).  Ctrl-C stops after the running block on JAX.
        nan_guard: stop at the first step with a non-finite loss or parameters,
            keeping the parameters from before it and naming the epoch, step and
            layer (on with TerminateOnNaN); that epoch's logs average the kept steps.
        devices: JAX only: data-parallel training on this many devices (of all
            processes, see docs/parallel.md), with the same results as on one
            device; ``batch_size`` must be a multiple of it.
    """
    if loss is None:
        raise ValueError(
            "fit: pass loss=..., e.g. loss='sparse_categorical_crossentropy' for integer labels"
        )
    loss = get_loss(loss)
    epochs = arguments.count("", "epochs", epochs, 0)
    batch_size = arguments.count("", "batch_size", batch_size)
    if not (isinstance(steps_per_execution, str) and steps_per_execution == "auto"):
        requirement = "an integer >= 1 or 'auto'"
        steps_per_execution = arguments.integer(
            "", "steps_per_execution", steps_per_execution, requirement, lambda v: v >= 1
        )
    if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), received {validation_split!r}")
    seed = arguments.seed("fit", model.fit_seed if seed is None else seed)
    callbacks = list(callbacks)
    nan_guard = nan_guard or any(getattr(cb, "nan_guard", False) for cb in callbacks)

    x, y = prepare_data(model, x, y, loss, "fit")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
        x_val, y_val = prepare_data(model, *validation_data, loss, "fit(validation_data)")
    elif validation_split:
        n_val = int(x.shape[0] * validation_split)
        if n_val == 0 or n_val == x.shape[0]:
            raise ValueError(
                f"fit: validation_split={validation_split} of {x.shape[0]} samples leaves "
                "an empty training or validation set"
            )
        cut = x.shape[0] - n_val
        x, x_val = x[:cut, ...], x[cut:, ...]
        y, y_val = y[:cut, ...], y[cut:, ...]
    else:
        x_val = y_val = None

    model.fit_seed = seed
    if optimizer is not None or model.optimizer is None:
        optimizer = optimizers.get("adam" if optimizer is None else optimizer)
        if optimizer is not model.optimizer or model.opt_state is None:
            model.optimizer, model.opt_state = optimizer, optimizer.init(model.params)

    parallel = None
    if devices is not None:
        parallel = DataParallel(model.backend, devices)
        parallel.check_batch_size(batch_size, x.shape[0])
        x, y, x_val, y_val = parallel.replicate((x, y, x_val, y_val))
        trained = (model.params, model.state, model.opt_state)
        model.params, model.state, model.opt_state = parallel.replicate(trained)
    loop = FitLoop(model, loss, batch_size, steps_per_execution, nan_guard, seed, shuffle, parallel)
    model.history = history = History()
    model.stop_training = False
    model.stop_reason = None
    for cb in callbacks:
        cb.on_train_begin(model)
    logs: dict[str, float] = {}
    resume = _resume_point(model, loop, x.shape[0]) if epochs else None
    with _deferred_interrupt() as interrupt:
        for _ in range(epochs):
            epoch = model.epoch
            # The NaN guard checks every step itself: NumPy's overflow warnings
            # would only duplicate (or, as errors, pre-empt) its report.
            with model.backend.ignore_fp_errors() if nan_guard else contextlib.nullcontext():
                logs = loop.run_epoch(x, y, epoch, verbose, interrupt, resume)
            resume = None
            model.epoch_progress = loop.progress
            if loop.interrupted:
                history.interrupted = True
                model.stop_reason = f"interrupted by the user in epoch {epoch + 1}"
                if loop.progress:
                    model.stop_reason += f" after step {loop.progress['step']}"
                break
            if x_val is not None:
                val = evaluate(model, x_val, y_val, loss=loss, batch_size=max(batch_size, 256))
                logs.update({f"val_{k}": v for k, v in val.items()})
            model.epoch += 1
            history.record(epoch, logs)
            if verbose:
                parts = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                print(f"epoch {epoch + 1}: {parts}", flush=True)
            if loop.nan_report is not None:
                model.stop_training = True
                model.stop_reason = loop.nan_report
            for cb in callbacks:
                cb.on_epoch_end(model, epoch, logs)
            if model.stop_training:
                break
    for cb in callbacks:
        cb.on_train_end(model, logs)
    if parallel is not None:
        # Back on one device of this process, for predict, evaluate or a later fit.
        trained = (model.params, model.state, model.opt_state)
        model.params, model.state, model.opt_state = parallel.gather(trained)
    history.stopped_early = model.stop_reason
    if verbose and model.stop_reason:
        print(model.stop_reason)
    return history


def _resume_point(model: Any, loop: FitLoop, n: int) -> dict | None:
    """``model.epoch_progress`` to continue, or None; ValueError if the batches differ."""
    progress = model.epoch_progress
    if progress is None:
        return None
    expected = loop.where(n)
    differ = [k for k, v in expected.items() if progress.get(k) != v]
    if differ:
        was = ", ".join(f"{k}={progress.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={expected[k]!r}" for k in differ)
        raise ValueError(
            f"fit: the model stopped in the middle of epoch {model.epoch + 1} (after step "
            f"{progress['step']}) of a run with {was}, and this call has {now} (n: training "
            "samples after validation_split); pass the same data, batch_size, shuffle and "
            "seed to continue that epoch exactly, or set model.epoch_progress = None to "
            "start it over"
        )
    return progress


@_in_scope
def evaluate(
    model: Any,
    x: Any,
    y: Any,
    *,
    loss: Loss | str | None = None,
    batch_size: int = 256,
    verbose: int = 0,
) -> dict[str, float]:
    """``{"loss": mean loss, "accuracy": ...}`` over ``(x, y)`` (no parameter change)."""
    if loss is None:
        raise ValueError("evaluate: pass loss=..., the loss to report")
    loss = get_loss(loss)
    batch_size = arguments.count("", "batch_size", batch_size)
    x, y = prepare_data(model, x, y, loss, "evaluate")
    metric = metric_for(model, loss)
    ops = model.backend
    step = model._cached(
        ("eval", loss, metric is not None),
        lambda: ops.jit(core.make_eval_step(model.layers, loss, ops, metric)),
    )
    sums = None
    for rows in _batches(x.shape[0], batch_size):
        v, c = step(model.params, model.state, x[rows, ...], y[rows, ...])
        sums = (v, c) if sums is None else (sums[0] + v, sums[1] + c)
    return mean_logs(ops, metric, sums, x.shape[0], y)


@_in_scope
def predict(model: Any, x: Any, batch_size: int | None = None) -> Any:
    """Model outputs for ``x``, an array of the model's backend."""
    if batch_size is not None:
        batch_size = arguments.count("", "batch_size", batch_size)
    x = as_model_input(x, model.backend, model.dtype, "predict", model.layers[0])
    check_input(x, model, "predict")
    ops = model.backend
    forward = model._cached(
        "predict", lambda: ops.jit(lambda p, s, x: core.make_forward(model.layers, ops)(p, s, x)[0])
    )
    if batch_size is None or batch_size >= x.shape[0]:
        return forward(model.params, model.state, x)
    batches = _batches(x.shape[0], batch_size)
    return ops.xp.concat([forward(model.params, model.state, x[rows, ...]) for rows in batches])


def _batches(n: int, size: int) -> list[slice]:
    """The row slices of ``n`` rows in batches of ``size`` (the last may be smaller)."""
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]
