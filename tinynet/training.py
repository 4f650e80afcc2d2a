"""``fit``, ``evaluate`` and ``predict``: the host-side loop around the pure
step functions of :mod:`tinynet.core`.

What the loop does per step is just one call of the (on JAX: compiled) step.
The loss and metric sums stay on the device and are read at most
``SYNCS_PER_EPOCH`` times per epoch (progress bar) and at the epoch end, so
an async device (JAX, CuPy) is never stalled by the host between steps.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

import backends

from . import core, metrics, random
from .callbacks import Callback, History
from .losses import Loss
from .losses import get as get_loss
from .validation import as_model_input, cast_finite, check_features, check_labels, host_view

Array = Any
SYNCS_PER_EPOCH = 10


# ------------------------------------------------------------------ inputs


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, received {name}={value!r}")
    return int(value)


def prepare_targets(model: Any, y: Any, loss: Loss, n: int, where: str) -> Array:
    """Targets ``y`` -> array on the model's backend, checked against ``loss``."""
    backend = model.backend
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if not isinstance(y, np.ndarray):
        other = backends.backend_of(y)
        if other is not backend:
            raise TypeError(
                f"{where}: targets are a {other.name} array but the model lives on the "
                f"{backend.name} backend; move them with "
                f"tinynet.get_backend({backend.name!r}).asarray(y)"
            )
    if len(y.shape) == 0 or y.shape[0] != n:
        raise ValueError(
            f"{where}: x has {n} samples but y has {y.shape[0] if len(y.shape) else 'no'} "
            "samples; x and y must have the same length"
        )
    out = model.output_features
    if loss.sparse:
        host = host_view(y)
        if host is not None and host.dtype.kind == "f":
            # whole-number float labels are accepted; check_labels names any other
            if np.all(np.isfinite(host)) and np.all(host == np.round(host)):
                y = host.astype(np.int64)
        check_labels(y, out, where)
        return backend.asarray(y) if isinstance(y, np.ndarray) else y
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{where}: targets must be numeric, received dtype {y.dtype}")
        if y.ndim == 1 and out is not None and out > 1 and y.dtype.kind in "iu":
            raise ValueError(
                f"{where}: integer labels of shape {y.shape} were given to {type(loss).__name__}, "
                "which expects one-hot rows; use loss='sparse_categorical_crossentropy' or "
                "tinynet.one_hot(y, num_classes)"
            )
        if y.ndim == 1 and out == 1:
            y = y.reshape(-1, 1)
        y = cast_finite(y, backend, model.dtype, where, "targets")
    else:
        xp = backend.xp
        if len(y.shape) == 1 and out == 1:
            y = xp.reshape(y, (-1, 1))
        y = cast_finite(y, backend, model.dtype, where, "targets")
    if out is not None and tuple(y.shape[1:]) != (out,):
        raise ValueError(
            f"{where}: targets of shape {tuple(y.shape)} do not match the model output "
            f"(n, {out}) for {type(loss).__name__}"
        )
    return y


def _data(model: Any, x: Any, y: Any, loss: Loss, where: str) -> tuple[Array, Array]:
    x = as_model_input(x, model.backend, model.dtype, where)
    check_features(x, model.input_features, where)
    if x.shape[0] == 0:
        raise ValueError(f"{where}: the dataset is empty (0 samples)")
    y = prepare_targets(model, y, loss, x.shape[0], where)
    return x, y


def _metric_for(model: Any, loss: Loss) -> metrics.Accuracy | None:
    fused = core.fused_head(model.layers, loss) is not None
    return metrics.for_loss(loss, from_logits=fused or getattr(loss, "from_logits", False))


# ------------------------------------------------------------------ interrupts


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


# ------------------------------------------------------------------ fit


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
    steps_per_execution: int = 1,
    nan_guard: bool = False,
    devices: int | None = None,
) -> History:
    """Train ``model`` on ``(x, y)`` and return a :class:`History`.

    Args:
        x: ``(n, in_features)`` host NumPy array or array of the model's backend.
        y: targets: ``(n,)`` integer labels for sparse CE, ``(n, k)`` one-hot /
            values otherwise (``(n,)`` is accepted for a one-output model).
        loss: a :mod:`tinynet.losses` instance or name (required).
        optimizer: a :mod:`tinynet.optimizers` instance or name.  ``None``
            continues with the model's current optimizer and its state (after
            ``tinynet.load`` or a previous ``fit``); default ``"adam"``.
            A new optimizer starts from a fresh state.
        epochs: epochs to run in this call; counting continues from
            ``model.epoch``, so a resumed run sees the same data order.
        batch_size: samples per step; the last batch of an epoch may be smaller.
        validation_data / validation_split: held-out data evaluated after every
            epoch; a split takes the LAST fraction of ``x`` (before shuffling),
            like Keras.
        shuffle: reshuffle every epoch with :func:`tinynet.random.permutation`
            of ``fold_in(key(seed), epoch)``: the same order on every backend.
        seed: seeds the data order and dropout masks; ``None`` uses
            ``model.fit_seed`` (0, or the seed a loaded checkpoint was trained with).
        callbacks: e.g. ``EarlyStopping``, ``TerminateOnNaN``, ``ModelCheckpoint``.
        verbose: 1 shows a tqdm progress bar per epoch; 0 is silent.
        steps_per_execution: on a compiling backend (JAX), run this many steps
            per dispatch in one compiled loop (Keras's option of the same name).
        nan_guard: check every step for a non-finite loss; on the first one,
            keep the parameters from before it and stop, naming the epoch,
            step and first non-finite layer.  On by default with TerminateOnNaN.
        devices: JAX backend only: data-parallel training on this many devices
            (all devices of all processes after ``tinynet.parallel.initialize``);
            every batch is split over them and the gradients are averaged, with
            the same results as on one device.  ``batch_size`` must be a
            multiple of it.  See docs/parallel.md.
    """
    from . import optimizers

    if loss is None:
        raise ValueError(
            "fit: pass loss=..., e.g. loss='sparse_categorical_crossentropy' for integer labels"
        )
    loss = get_loss(loss)
    epochs = _check_count("epochs", epochs, 0)
    batch_size = _check_count("batch_size", batch_size, 1)
    steps_per_execution = _check_count("steps_per_execution", steps_per_execution, 1)
    if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), received {validation_split!r}")
    if seed is None:
        seed = model.fit_seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, received seed={seed!r}")
    callbacks = list(callbacks)
    nan_guard = nan_guard or any(getattr(cb, "nan_guard", False) for cb in callbacks)

    x, y = _data(model, x, y, loss, "fit")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
        x_val, y_val = _data(model, *validation_data, loss, "fit(validation_data)")
    elif validation_split:
        n_val = int(x.shape[0] * validation_split)
        if n_val == 0 or n_val == x.shape[0]:
            raise ValueError(
                f"fit: validation_split={validation_split} of {x.shape[0]} samples leaves "
                "an empty training or validation set"
            )
        x, x_val = x[: x.shape[0] - n_val, ...], x[x.shape[0] - n_val :, ...]
        y, y_val = y[: y.shape[0] - n_val, ...], y[y.shape[0] - n_val :, ...]
    else:
        x_val = y_val = None

    model.fit_seed = seed
    if optimizer is None:
        if model.optimizer is None:
            model.optimizer = optimizers.get("adam")
            model.opt_state = model.optimizer.init(model.params)
    else:
        optimizer = optimizers.get(optimizer)
        if optimizer is not model.optimizer or model.opt_state is None:
            model.optimizer = optimizer
            model.opt_state = optimizer.init(model.params)

    parallel = None
    if devices is not None:
        from .parallel import DataParallel

        parallel = DataParallel(model.backend, devices)
        parallel.check_batch_size(batch_size, x.shape[0])
        x, y = parallel.put_data(x), parallel.put_data(y)
        if x_val is not None:
            x_val, y_val = parallel.put_data(x_val), parallel.put_data(y_val)
        model.params = parallel.replicate(model.params)
        model.opt_state = parallel.replicate(model.opt_state)
    loop = _FitLoop(
        model, loss, batch_size, steps_per_execution, nan_guard, seed, shuffle, parallel
    )
    history = History()
    model.history = history
    model.stop_training = False
    model.stop_reason = None
    for cb in callbacks:
        cb.on_train_begin(model)
    logs: dict[str, float] = {}
    with _deferred_interrupt() as interrupt:
        for _ in range(epochs):
            epoch = model.epoch
            # The NaN guard checks every step itself: NumPy's overflow warnings
            # would only duplicate (or, as errors, pre-empt) its report.
            with model.backend.ignore_fp_errors() if nan_guard else contextlib.nullcontext():
                logs = loop.run_epoch(x, y, epoch, verbose, interrupt)
            if loop.interrupted:
                history.interrupted = True
                model.stop_reason = f"interrupted by the user in epoch {epoch + 1}"
                break
            if x_val is not None:
                val = evaluate(model, x_val, y_val, loss=loss, batch_size=max(batch_size, 256))
                logs.update({f"val_{k}": v for k, v in val.items()})
            model.epoch += 1
            history.record(epoch, logs)
            if verbose:
                _print_epoch(epoch, logs)
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
        # Back on one device of this process: predict / evaluate / a later fit
        # would otherwise mix mesh arrays with single-device ones.
        model.params = parallel.gather(model.params)
        model.opt_state = parallel.gather(model.opt_state)
    history.stopped_early = model.stop_reason
    if verbose and model.stop_reason:
        print(model.stop_reason)
    return history


def _print_epoch(epoch: int, logs: dict[str, float]) -> None:
    parts = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
    print(f"epoch {epoch + 1}: {parts}", flush=True)


class _FitLoop:
    """One fit call's compiled steps and its per-epoch loop."""

    def __init__(
        self, model, loss, batch_size, steps_per_execution, nan_guard, seed, shuffle, parallel=None
    ):
        self.model = model
        self.parallel = parallel
        self.backend = model.backend
        self.batch_size = batch_size
        self.steps_per_execution = steps_per_execution
        self.nan_guard = nan_guard
        self.shuffle = shuffle
        self.run_key = self._place(random.key(seed, self.backend))
        self.has_key = any(layer.needs_key for layer in model.layers)
        self.metric = _metric_for(model, loss)
        self.loss = loss
        self.interrupted = False
        self.nan_report: str | None = None
        optimizer = model.optimizer
        cache_key = ("fit", loss, id(optimizer), optimizer, self.metric is not None, parallel)
        self.fit_step = model._cached(
            cache_key, lambda: core.make_fit_step(model.layers, loss, optimizer, self.metric)
        )
        self._jitted: dict[Any, Any] = model._cached(cache_key + ("jitted",), dict)

    # Steps, compiled once per batch size (the ragged last batch compiles once).
    def _step(self, size: int, block: int):
        fn = self._jitted.get((size, block, self.nan_guard))
        if fn is None:
            backend = self.backend
            shard = self.parallel.shard_batch if self.parallel is not None else None
            one = core.make_indexed_step(self.fit_step, size, self.batch_size, self.has_key, shard)
            if block == 1:
                body = one
            else:

                def body(params, opt_state, sums, i, x, y, order, key):
                    return backend.fori_loop(
                        block,
                        lambda carry: one(*carry, x, y, order, key),
                        (params, opt_state, sums, i),
                    )

            # With the NaN guard the step's inputs must survive it (no donation).
            donate = () if self.nan_guard else (0, 1, 2)
            fn = backend.jit(body, donate_argnums=donate)
            self._jitted[(size, block, self.nan_guard)] = fn
        return fn

    def _place(self, tree):
        """With data parallelism every input of the compiled step must live on
        the device mesh (replicated), not on the single default device."""
        return tree if self.parallel is None else self.parallel.replicate(tree)

    def _epoch_setup(self, n: int):
        """``(row order, step key)`` of an epoch, one compiled call on JAX."""
        fn = self._jitted.get(("setup", n, self.shuffle))
        if fn is None:
            shuffle, has_key = self.shuffle, self.has_key

            def setup(run_key, epoch):
                xp = backends.namespace(run_key)
                epoch_key = random.fold_in(run_key, epoch)
                if shuffle:
                    order = random.permutation(random.fold_in(epoch_key, 0x5EED), n)
                else:
                    order = xp.arange(n, dtype=xp.int64)
                return order, (random.fold_in(epoch_key, 0xD0) if has_key else None)

            fn = self._jitted[("setup", n, self.shuffle)] = self.backend.jit(setup)
        return fn

    def run_epoch(self, x, y, epoch, verbose, interrupt) -> dict[str, float]:
        model, backend, xp = self.model, self.backend, self.backend.xp
        n, bs = x.shape[0], self.batch_size
        n_full, last = divmod(n, bs)
        n_steps = n_full + (1 if last else 0)
        order, step_key = self._epoch_setup(n)(self.run_key, epoch)
        # made on the model's device like the params, so the first compiled
        # call sees the same input placement as every later one (no recompile)
        sums = self._place((backend.asarray(0.0, model.dtype), backend.asarray(0.0, model.dtype)))
        bar = _progress(verbose, n_steps, epoch)
        sync_every = max(1, n_steps // SYNCS_PER_EPOCH)
        params, opt_state = model.params, model.opt_state
        done = 0
        if backend.compiles:
            i = self._place(backend.asarray(0, "int32"))
            block = 1 if self.nan_guard else self.steps_per_execution
            while done < n_steps and not interrupt["hit"]:
                if done + block <= n_full and block > 1:
                    fn, advance = self._step(bs, block), block
                elif done < n_full:
                    fn, advance = self._step(bs, 1), 1
                else:
                    fn, advance = self._step(last, 1), 1
                before = (params, opt_state) if self.nan_guard else None
                params, opt_state, sums, i = fn(params, opt_state, sums, i, x, y, order, step_key)
                done += advance
                model.params, model.opt_state, model.step = params, opt_state, model.step + advance
                if self.nan_guard and self._bad(sums, before, epoch, done, x, y, order, step_key):
                    break
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(
                        bar,
                        advance if done % sync_every else sync_every,
                        sums,
                        done,
                        n,
                        bs,
                        self.metric,
                    )
        else:
            step = self.fit_step
            for s in range(n_steps):
                if interrupt["hit"]:
                    break
                a, b = s * bs, min(s * bs + bs, n)
                if self.shuffle:
                    # gather one batch at a time: it is still in cache for the step
                    rows = order[a:b]
                    xb, yb = xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)
                else:
                    xb, yb = x[a:b, ...], y[a:b, ...]
                k = random.fold_in(step_key, s) if step_key is not None else None
                before = (params, opt_state) if self.nan_guard else None
                params, opt_state, sums = step(params, opt_state, sums, xb, yb, k)
                done += 1
                model.params, model.opt_state = params, opt_state
                model.step += 1
                if self.nan_guard and self._bad(
                    sums, before, epoch, done, x, y, order if self.shuffle else None, step_key
                ):
                    break
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(
                        bar,
                        sync_every if done % sync_every == 0 else done % sync_every,
                        sums,
                        done,
                        n,
                        bs,
                        self.metric,
                    )
        if bar is not None:
            bar.close()
        self.interrupted = interrupt["hit"] and done < n_steps
        seen = min(done * bs, n)
        logs = {"loss": float(backend.to_numpy(sums[0])) / max(seen, 1)}
        if self.metric is not None:
            per = self.metric.per_batch((seen,) + tuple(y.shape[1:])) if seen else 1
            logs["accuracy"] = float(backend.to_numpy(sums[1])) / max(per, 1)
        return logs

    def _params_finite(self) -> bool:
        xp = self.backend.xp
        flags = [xp.all(xp.isfinite(v)) for p in self.model.params for v in p.values()]
        return bool(xp.all(xp.stack(flags))) if flags else True

    def _bad(self, sums, before, epoch, done, x, y, order, key) -> bool:
        value = float(self.backend.to_numpy(sums[0]))
        if math.isfinite(value) and self._params_finite():
            return False
        what = "loss" if not math.isfinite(value) else "parameters after the update"
        from .diagnostics import first_nonfinite

        params, opt_state = before
        self.model.params, self.model.opt_state = params, opt_state
        self.model.step -= 1
        where = first_nonfinite(
            self.model, self.loss, x, y, order, done - 1, self.batch_size, step_key=key
        )
        self.nan_report = (
            f"non-finite {what} at epoch {epoch + 1}, step {done} ({where}); "
            "training stopped and the parameters from before that step were kept"
        )
        return True


def _progress(verbose: int, total: int, epoch: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}", unit="step", leave=False, mininterval=0.2)


def _update(bar, advance, sums, done, n, bs, metric) -> None:
    seen = min(done * bs, n)
    post = {}
    loss_sum = float(backends.backend_of(sums[0]).to_numpy(sums[0]))
    post["loss"] = f"{loss_sum / seen:.4f}"
    if metric is not None and metric.kind != "binary":
        correct = float(backends.backend_of(sums[1]).to_numpy(sums[1]))
        post["acc"] = f"{correct / seen:.4f}"
    bar.set_postfix(post, refresh=False)
    bar.update(advance)


# ------------------------------------------------------------------ evaluate / predict


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
    batch_size = _check_count("batch_size", batch_size, 1)
    x, y = _data(model, x, y, loss, "evaluate")
    metric = _metric_for(model, loss)
    step = model._cached(
        ("eval", loss, metric is not None),
        lambda: model.backend.jit(core.make_eval_step(model.layers, loss, metric)),
    )
    n = x.shape[0]
    loss_sum = count = None
    for a in range(0, n, batch_size):
        v, c = step(
            model.params, x[a : min(a + batch_size, n), ...], y[a : min(a + batch_size, n), ...]
        )
        loss_sum = v if loss_sum is None else loss_sum + v
        count = c if count is None else count + c
    to_numpy = model.backend.to_numpy
    logs = {"loss": float(to_numpy(loss_sum)) / n}
    if metric is not None:
        logs["accuracy"] = float(to_numpy(count)) / metric.per_batch(
            tuple(y.shape) if metric.kind == "binary" else (n,)
        )
    return logs


def predict(model: Any, x: Any, batch_size: int | None = None) -> Array:
    """Model outputs for ``x``, an array of the model's backend."""
    if batch_size is not None:
        batch_size = _check_count("batch_size", batch_size, 1)
    x = as_model_input(x, model.backend, model.dtype, "predict")
    check_features(x, model.input_features, "predict")
    forward = model._cached("predict", lambda: model.backend.jit(core.make_forward(model.layers)))
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return forward(model.params, x)
    batch_size = _check_count("batch_size", batch_size, 1)
    xp = model.backend.xp
    return xp.concat(
        [forward(model.params, x[a : min(a + batch_size, n), ...]) for a in range(0, n, batch_size)]
    )
