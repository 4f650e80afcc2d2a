"""One training step on every backend, compared layer by layer with the same
step in float64 on NumPy as ``max_abs = max |a - ref|`` and ``max_rel = max_abs
/ max |ref|`` (the max norm stays meaningful where reference elements are zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from . import backends as registry  # `backends` is a parameter name here
from . import core, random, to_numpy
from .fit_loop import epoch_setup
from .tree import tree_map

__all__ = ["CompareReport", "Row", "compare_backends", "format_report", "step_key", "verdict"]

REFERENCE = "numpy float64"
# The largest max_rel that passes, per dtype, and after the optimizer update.
# One step of train's MLP rounds to ~1e-6 in float32 (~1e-14 in float64), but
# Adam divides each gradient element by its magnitude plus epsilon (1e-7): a
# float32 element near 1e-7 moves its update visibly (~1e-3 over 75 seeds).
TOLERANCES = {"float32": 1e-4, "float64": 1e-10}
UPDATE_TOLERANCES = {"float32": 1e-2, "float64": 1e-10}


class Row(NamedTuple):
    """One compared quantity of one backend (or a skipped backend)."""

    backend: str
    layer: int | None  # None: the loss, or a whole-backend row (skipped / failed)
    layer_type: str  # layer class name, the loss class name, or ""
    quantity: str  # output, loss, grad_input, grad_W, updated_W, ... or unavailable / error
    max_abs: float
    max_rel: float
    note: str = ""


@dataclass
class CompareReport:
    """Every :class:`Row` of :func:`compare_backends`; a backend that could not run
    has one ``"unavailable"`` (or ``"error"``) row, NaN differences, the reason in
    ``note`` and in ``skipped``."""

    rows: list[Row]
    dtype: str
    batch_size: int
    compared: list[str] = field(default_factory=list)  # backends that ran
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> reason
    losses: dict[str, float] = field(default_factory=dict)  # incl. "reference"
    devices: dict[str, str] = field(default_factory=dict)
    optimizer: str | None = None
    dropout_seed: int | None = None  # None: the model has no Dropout

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def for_backend(self, name: str) -> list[Row]:
        return [row for row in self.rows if row.backend == name]

    def max_rel(self, name: str) -> float:
        """The largest relative difference of backend ``name`` (NaN propagates)."""
        return self.worst(name).max_rel

    def worst(self, name: str) -> Row:
        """The row of backend ``name`` with the largest relative difference."""
        rows = self.for_backend(name)
        if not rows:
            raise KeyError(f"backend {name!r} is not in this report")
        return max(rows, key=lambda r: math.inf if math.isnan(r.max_rel) else r.max_rel)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [row._asdict() for row in self.rows]


# ------------------------------------------------------------------ the step


def step_key(seed: int, backend: registry.Backend, epoch: int = 0, step: int = 0) -> Any:
    """The key ``fit(seed=seed)`` gives training step ``step`` of epoch ``epoch``
    (layer ``i`` of the model draws with ``fold_in(step_key, i)``)."""
    _, key = epoch_setup(random.key(seed, backend), epoch, 0, False, True)
    return random.fold_in(key, step)


def _make_step(layers: Sequence[Any], loss: Any, optimizer: Any, ops: Any) -> Callable:
    """A pure ``step(params, state, x, y, key, opt_state) -> dict`` returning
    every intermediate of :func:`tinynet.core.make_loss_and_grads` (the maths
    ``fit`` runs) and the optimizer update."""
    layers = tuple(layers)
    fused = core.fused_head(layers, loss) is not None
    loss_and_grads = core.make_loss_and_grads(layers, loss, ops, record=True)

    def step(params, state, x, y, key, opt_state):
        value, grads, new_state, h, seen = loss_and_grads(params, state, x, y, key, True)
        outputs, grad_in = list(seen["outputs"]), list(seen["grad_in"])
        if fused:  # the last activation's output, and the gradient at its input (the logits)
            out, _, _ = layers[-1].forward(params[-1], state[-1], h, ops, False, None)
            outputs.append(out)
            grad_in[-1] = seen["grad_head"]
        updated = optimizer.update(grads, opt_state, params)[0] if optimizer is not None else None
        return dict(outputs=outputs, loss=value, grad_in=grad_in, grads=grads, updated=updated)

    return step


def _run(
    model: Any, backend: Any, dtype: str, host: tuple, loss: Any, optimizer: Any, seed: int | None
) -> dict:
    """One step on ``backend`` in ``dtype`` from the ``host`` NumPy (params, state,
    x, y); every result as a host float64 array."""
    from .validation import as_model_input, prepare_targets

    x_host, y_host = host[2:]
    like = SimpleNamespace(
        backend=backend,
        dtype=dtype,
        output_shape=model.output_shape,
        output_features=model.output_features,
    )
    with backend.scope():
        x = as_model_input(x_host, backend, dtype, "compare_backends", model.layers[0])
        y = prepare_targets(like, y_host, loss, x_host.shape[0], "compare_backends")
        params, state = tree_map(lambda a: backend.asarray(a.astype(dtype)), host[:2])
        key = step_key(seed, backend) if seed is not None else None
        opt_state = optimizer.init(params) if optimizer is not None else None
        step = backend.jit(_make_step(model.layers, loss, optimizer, backend))
        out = step(params, state, x, y, key, opt_state)
    return tree_map(lambda a: np.asarray(to_numpy(a), dtype=np.float64), out)


def _diff(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(max |a - ref|, that / max |ref|)``; NaN if either is non-finite."""
    if a.shape != ref.shape:
        raise ValueError(f"shape {a.shape} differs from the reference shape {ref.shape}")
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        max_abs = float(np.max(np.abs(a - ref)))
        scale = float(np.max(np.abs(ref)))
    if math.isnan(max_abs) or math.isnan(scale):
        return math.nan, math.nan
    if scale == 0.0:
        return max_abs, (0.0 if max_abs == 0.0 else math.inf)
    return max_abs, max_abs / scale


def _rows(name: str, layers: Sequence[Any], loss: Any, got: dict, ref: dict) -> list[Row]:
    """Rows in computation order: forward, loss, backward (last layer first), update."""
    rows = []

    def add(layer: int | None, kind: str, quantity: str, a: Any, r: Any) -> None:
        if a is not None and r is not None:
            rows.append(Row(name, layer, kind, quantity, *_diff(a, r)))

    types = [type(layer).__name__ for layer in layers]
    for i, kind in enumerate(types):
        add(i, kind, "output", got["outputs"][i], ref["outputs"][i])
    add(None, type(loss).__name__, "loss", got["loss"], ref["loss"])
    for i in range(len(layers) - 1, -1, -1):
        add(i, types[i], "grad_input", got["grad_in"][i], ref["grad_in"][i])
        for pname in sorted(ref["grads"][i]):
            add(i, types[i], f"grad_{pname}", got["grads"][i][pname], ref["grads"][i][pname])
    if ref["updated"] is not None:
        for i, kind in enumerate(types):
            for pname in sorted(ref["updated"][i]):
                add(i, kind, f"updated_{pname}", got["updated"][i][pname], ref["updated"][i][pname])
    return rows


def compare_backends(
    model: Any,
    x: Any,
    y: Any,
    loss: Any,
    backends: Sequence[str] | None = None,
    optimizer: Any = None,
    *,
    dtype: str | None = None,
    seed: int | None = None,
) -> CompareReport:
    """One training step of ``model`` (a :class:`tinynet.Sequential` on any backend,
    left unchanged) on the batch ``(x, y)`` (host or any backend's arrays, ``y`` as
    ``fit`` takes it for ``loss``, a :mod:`tinynet.losses` instance or name) on each
    of ``backends`` (default: all; those that cannot load here get an ``unavailable``
    row with the reason), compared with a NumPy float64 reference.  ``optimizer``
    (instance, name or config): also compare the parameters after one update from a
    fresh state.  ``dtype``: the backends' (default: the model's).  ``seed``: the
    ``fit`` seed whose first step's Dropout masks are used (default: ``model.fit_seed``;
    ignored without Dropout).
    Returns a :class:`CompareReport`; :func:`format_report` renders it.
    """
    from . import optimizers
    from .losses import get as get_loss

    loss = get_loss(loss)
    dtype = dtype or model.dtype
    if dtype not in ("float32", "float64"):
        raise ValueError(f"compare_backends: dtype must be float32 or float64, received {dtype!r}")
    names = list(registry.BACKEND_NAMES if backends is None else backends)
    names = [n.strip().lower() if isinstance(n, str) else n for n in names]
    for name in names:
        if name not in registry.BACKEND_NAMES:
            raise ValueError(
                f"compare_backends: unknown backend {name!r}; valid names are: "
                f"{', '.join(registry.BACKEND_NAMES)}"
            )
    if optimizer is not None:
        optimizer = optimizers.get(optimizer)
    has_key = any(layer.needs_key for layer in model.layers)
    seed = (model.fit_seed if seed is None else seed) if has_key else None

    x_host = np.asarray(x if isinstance(x, (list, tuple)) else to_numpy(x))
    y_host = np.asarray(y if isinstance(y, (list, tuple)) else to_numpy(y))
    host = (tree_map(to_numpy, model.params), tree_map(to_numpy, model.state), x_host, y_host)
    ref = _run(model, registry.load("numpy"), "float64", host, loss, optimizer, seed)
    described = None if optimizer is None else repr(optimizer)
    report = CompareReport([], dtype, int(x_host.shape[0]), optimizer=described, dropout_seed=seed)
    report.losses["reference"] = float(ref["loss"])
    for name in names:
        backend, why = registry.probe(name)
        quantity = "unavailable"
        if backend is not None:
            try:
                got = _run(model, backend, dtype, host, loss, optimizer, seed)
            except Exception as err:  # a backend that loads but fails (e.g. out of memory)
                why, quantity = f"{type(err).__name__}: {err}", "error"
            else:
                report.compared.append(name)
                report.devices[name] = backend.description or str(backend.device)
                report.losses[name] = float(got["loss"])
                report.rows.extend(_rows(name, model.layers, loss, got, ref))
                continue
        report.skipped[name] = why
        report.rows.append(Row(name, None, "", quantity, math.nan, math.nan, why))
    return report


# ------------------------------------------------------------------ output


def _num(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if v == 0.0:
        return "0"
    return f"{v:.2e}"


def format_report(report: CompareReport) -> str:
    """A plain-text table of ``report``: a header, one line per row, a summary."""
    title = f"one training step, batch {report.batch_size}, {report.dtype}, against {REFERENCE}"
    if report.optimizer:
        title += f", then {report.optimizer}"
    if report.dropout_seed is not None:
        title += f" (dropout masks of fit seed {report.dropout_seed})"
    lines = [title] + [f"  {name}: {report.devices.get(name, '')}" for name in report.compared]
    lines.append("loss: " + ", ".join(f"{k} {v:.17g}" for k, v in report.losses.items()))
    table = [("backend", "layer", "type", "quantity", "max_abs", "max_rel")]
    for row in report.rows:
        if row.quantity not in ("unavailable", "error"):
            layer = "-" if row.layer is None else str(row.layer)
            numbers = _num(row.max_abs), _num(row.max_rel)
            table.append((row.backend, layer, row.layer_type, row.quantity, *numbers))
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    lines.append("")
    for i, cells in enumerate(table):
        if i > 1 and cells[0] != table[i - 1][0]:  # a blank line between backends
            lines.append("")
        padded = (
            c.rjust(w) if j in (1, 4, 5) else c.ljust(w)  # layer and numbers to the right
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        lines.append("  ".join(padded).rstrip())
    if report.compared:
        lines.append("")
    for name in report.compared:
        worst = report.worst(name)
        where = "the loss" if worst.layer is None else f"layer {worst.layer} ({worst.layer_type})"
        if worst.max_rel == 0.0:
            lines.append(f"{name}: every quantity equals the reference bit for bit")
        else:
            largest = f"largest relative difference {_num(worst.max_rel)}"
            lines.append(f"{name}: {largest} in {worst.quantity} of {where}")
    for name, why in report.skipped.items():
        lines.append(f"{name}: skipped: {why}")
    return "\n".join(lines)


def verdict(report: CompareReport) -> tuple[bool, str]:
    """``(passed, line)``: PASS if every quantity of every backend that ran is
    within the tolerance for ``report.dtype`` (:data:`TOLERANCES`, and
    :data:`UPDATE_TOLERANCES` for ``updated_*``) and at least one ran; a
    backend that loads but fails is a FAIL, one that cannot load is skipped."""
    tol, update_tol = TOLERANCES[report.dtype], UPDATE_TOLERANCES[report.dtype]
    stated = f"{report.dtype} tolerance {tol:.0e} of max |a - ref| / max |ref|"
    if report.optimizer and update_tol != tol:
        stated += f" ({update_tol:.0e} after the optimizer update)"
    over = []
    for name in report.compared:
        for row in report.for_backend(name):
            limit = update_tol if row.quantity.startswith("updated_") else tol
            if not row.max_rel <= limit:  # NaN fails too
                where = "the loss" if row.layer is None else f"layer {row.layer}"
                over.append(f"{name} {_num(row.max_rel)} in {row.quantity} of {where}")
                break
    errors = [name for name in report.skipped if report.for_backend(name)[0].quantity == "error"]
    skipped = [name for name in report.skipped if name not in errors]
    failed = [f"{'; '.join(over)}: over the {stated}"] if over else []
    failed += [f"{name} failed to run" for name in errors]
    if failed:
        return False, f"FAIL: {'; '.join(failed)}"
    if not report.compared:
        return False, f"FAIL: no backend ran (skipped: {', '.join(skipped)})"
    largest = max(report.max_rel(name) for name in report.compared)
    return True, (
        f"PASS: {', '.join(report.compared)} within the {stated}; largest {_num(largest)}"
        + (f" (skipped: {', '.join(skipped)})" if skipped else "")
    )
