"""Callbacks for :meth:`Sequential.fit` and the :class:`History` it returns.
A callback sees the model and per-epoch ``logs`` (host floats); it may set
``model.stop_training = True``."""

from __future__ import annotations

import math
from typing import Any


class History:
    """Per-epoch values, ``history.history`` is a dict of lists like Keras's."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped_early: str | None = None
        self.interrupted = False

    def record(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class Callback:
    """Hooks called by ``fit``; every method is optional."""

    def on_train_begin(self, model: Any) -> None: ...

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None: ...


class _Monitor:
    """The logged value a callback watches, and whether it improved."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', received mode={mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise ValueError(
                f"{type(self).__name__}: monitor={self.monitor!r} is not among the "
                f"logged values {sorted(logs)}; pass validation data for 'val_*' monitors"
            )
        return logs[self.monitor]

    def improved(self, value: float) -> bool:
        """Keras's test, in its arithmetic: ``value -/+ min_delta`` beats the best."""
        if self.mode == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best


class EarlyStopping(Callback, _Monitor):
    """Stop when ``monitor`` has not beaten its best by more than
    ``min_delta`` for ``patience`` epochs in a row (Keras's rule: ``0`` and
    ``1`` both stop at the first such epoch; never at epoch 0).  With
    ``restore_best_weights=True`` the best epoch's parameters (the first
    epoch's until one improves on it) are put back when training ends."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        restore_best_weights: bool = False,
        min_delta: float = 0.0,
        mode: str = "auto",
    ) -> None:
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, received {patience!r}")
        _Monitor.__init__(self, monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, model: Any) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_epoch: int | None = None
        self.best_params = None

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> None:
        value = self.value(logs)
        improved = self.improved(value)
        if improved or self.best_epoch is None:
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_params = model.snapshot_params()
        if improved:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            model.stop_training = True
            model.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.wait} "
                f"epoch(s); best {self.best:.6g} at epoch {self.best_epoch}"
            )

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        if self.restore_best_weights and self.best_params is not None:
            model.params = self.best_params


class TerminateOnNaN(Callback):
    """Stop as soon as the training loss becomes NaN or infinite: ``fit`` then
    checks every step (its ``nan_guard``), keeps the parameters from before the
    bad step and names its epoch, its step and the first layer gone non-finite."""

    nan_guard = True


class ModelCheckpoint(Callback, _Monitor):
    """Save the model (atomically) after every epoch, or only when ``monitor``
    improved with ``save_best_only=True``.  ``path`` may contain ``{epoch}``
    (1-based) and logged values: ``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``."""

    def __init__(
        self, path: str, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"
    ) -> None:
        _Monitor.__init__(self, monitor, mode)
        self.path = str(path)
        self.save_best_only = save_best_only
        self.saved: list[str] = []

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best_only:
            value = self.value(logs)
            if not self.improved(value):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        model.save(path)
        self.saved.append(path)
