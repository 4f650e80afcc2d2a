"""Data checks before any step runs, the same error on every backend (values
read on the host or reduced to one flag on the device; inside ``jit`` only shapes
and dtypes), saying what was wrong, what was expected and how to fix it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import backends

Array = Any
_INTEGER = ("int", "uint")  # the prefixes of integer dtype names
_REAL = ("float16", "bfloat16", "float32", "float64", "bool")  # and the integers


def host_view(a: Array) -> np.ndarray | None:
    """A NumPy view/copy of ``a`` for checking, or None inside ``jit``."""
    if isinstance(a, np.ndarray):
        return a
    backend = backends.backend_of(a)
    return None if backend.is_traced(a) else backend.to_numpy(a)


def _dtype_name(a: Array) -> str:
    name = getattr(a.dtype, "name", None) or str(a.dtype)
    return name.rsplit(".", 1)[-1]


def _is_real_name(name: str) -> bool:
    return name in _REAL or name.startswith(_INTEGER)


def _not_whole(host: np.ndarray) -> np.ndarray:
    """Where the float array ``host`` holds NaN, Inf or a fraction."""
    return ~(np.isfinite(host) & (host == np.round(host)))


def _first(mask: np.ndarray) -> tuple[tuple[int, ...], str]:
    """The index of the first True in ``mask`` and its name in messages: "2" or "(2, 1)"."""
    pos = tuple(int(i) for i in np.argwhere(mask)[0])
    return pos, str(pos[0]) if len(pos) == 1 else str(pos)


def _own_array(a: Any, backend: Any, where: str, what: str, expected: str = "") -> Array:
    """``a`` if a NumPy array (or a list, tuple) or an array of ``backend``, else a TypeError."""
    if isinstance(a, (list, tuple)):
        return np.asarray(a)
    if isinstance(a, np.ndarray):
        return a
    try:
        other = backends.backend_of(a)
    except TypeError:
        raise TypeError(
            f"{where}: {what} must be a NumPy array or an array of the {backend.name} "
            f"backend{expected}, received {type(a).__name__}"
        ) from None
    if other is not backend:
        is_, it, name = ("are", "them", "y") if what == "targets" else ("is", "it", "x")
        raise TypeError(
            f"{where}: {what} {is_} a {other.name} array but the model lives on the "
            f"{backend.name} backend; move {it} with "
            f"tinynet.get_backend({backend.name!r}).asarray({name})"
        )
    return a


def check_labels(labels: Array, num_classes: int, where: str) -> None:
    """Integer class labels of shape ``(n,)`` in ``[0, num_classes)``, else a ValueError."""
    shape = tuple(labels.shape)
    if len(shape) != 1:
        if len(shape) == 2 and shape[1] == 1:
            hint = "flatten them with labels.reshape(-1)"
        elif len(shape) == 2 and shape[1] == num_classes:
            hint = (
                "these look like one-hot rows: use argmax(axis=1) to turn them into labels, "
                "or CategoricalCrossentropy to train on them"
            )
        else:
            hint = "pass one label per sample"
        raise ValueError(
            f"{where}: integer labels must have shape (n,), received shape {shape} "
            f"for {num_classes} classes; {hint}"
        )
    classes = f"{num_classes} classes (valid labels are 0..{num_classes - 1})"
    name = _dtype_name(labels)
    if not name.startswith(_INTEGER):
        host = host_view(labels) if name.startswith(("float", "bfloat")) else None
        bad = np.flatnonzero(_not_whole(host)) if host is not None else ()
        if len(bad):
            raise ValueError(
                f"{where}: labels must be integers, but label {host[bad[0]]} at position "
                f"{bad[0]} is not a whole number; expected labels for {classes}"
            )
        raise ValueError(
            f"{where}: labels must be integers in 0..{num_classes - 1} for {num_classes} "
            f"classes, received dtype {name}; convert with labels.astype('int64') "
            "(values must be whole numbers)"
        )
    host = host_view(labels)
    bad = () if host is None else np.flatnonzero((host < 0) | (host >= num_classes))
    if len(bad):
        raise ValueError(
            f"{where}: label {host[bad[0]]} at position {bad[0]} is out of range for "
            f"{classes}; {len(bad)} bad label(s) in all"
        )


def check_loss_inputs(loss: Any, y_true: Array, y_pred: Array) -> Array:
    """Check ``loss(y_true, y_pred)``'s inputs; ``y_true`` in ``y_pred``'s dtype unless labels."""
    name = type(loss).__name__
    pred_dtype = _dtype_name(y_pred)
    if pred_dtype not in ("float32", "float64"):
        raise TypeError(f"{name}: y_pred must be float32 or float64, received dtype {pred_dtype}")
    if any(d == 0 for d in y_pred.shape):
        raise ValueError(
            f"{name}: y_pred of shape {tuple(y_pred.shape)} is an empty batch; the mean "
            "loss of no samples is undefined (pass at least one sample)"
        )
    if loss.sparse:
        if len(y_pred.shape) != 2:
            raise ValueError(
                f"{name}: y_pred must have shape (n, classes), received shape {tuple(y_pred.shape)}"
            )
        check_labels(y_true, y_pred.shape[-1], name)
        if y_true.shape[0] != y_pred.shape[0]:
            raise ValueError(
                f"{name}: {y_true.shape[0]} labels for {y_pred.shape[0]} predictions; "
                "y_true and y_pred must have the same length"
            )
        return y_true
    if tuple(y_true.shape) != tuple(y_pred.shape):
        hint = ""
        if len(y_true.shape) == 1 and len(y_pred.shape) == 2:
            hint = "; for integer class labels use SparseCategoricalCrossentropy or tinynet.one_hot"
        raise ValueError(
            f"{name}: y_true has shape {tuple(y_true.shape)} but y_pred has shape "
            f"{tuple(y_pred.shape)}; they must match{hint}"
        )
    true_dtype = _dtype_name(y_true)
    if true_dtype == pred_dtype:
        return y_true
    if not _is_real_name(true_dtype):
        raise TypeError(f"{name}: y_true must be numeric, received dtype {true_dtype}")
    return backends.namespace(y_true).astype(y_true, y_pred.dtype)


def check_input(x: Array, model: Any, where: str) -> None:
    """``x`` must be ``(n, *model.input_shape)`` with ``n >= 1``."""
    shape, expected = tuple(x.shape), model.input_shape
    if shape[1:] != expected:
        if len(expected) == 1 and type(model.layers[0]).__name__ == "Dense" and len(shape) == 2:
            raise ValueError(
                f"{where}: layer 0 (Dense) expects {expected[0]} input features, i.e. input of "
                f"shape (n, {expected[0]}), received input of shape {shape}"
            )
        hint = ""
        if len(expected) == 1 and len(shape) > 2 and math.prod(shape[1:]) == expected[0]:
            hint = "; flatten images with x.reshape(len(x), -1)"
        raise ValueError(
            f"{where}: input must have shape (n, {', '.join(map(str, expected))}), "
            f"received shape {shape}{hint}"
        )
    if shape[0] == 0:
        raise ValueError(f"{where}: the dataset is empty (0 samples)")


def check_finite(a: Array, where: str, what: str = "input", original: Any = None) -> None:
    """A ValueError naming the first NaN/Inf of ``a``, as an overflow of the cast if it
    is finite in ``original`` (the data ``a`` was cast from)."""
    # A finite sum proves every value finite in one pass (an overflow falls through to the
    # exact check); a host matrix is summed by BLAS, ``a @ ones`` (faster than a reduction).
    if isinstance(a, np.ndarray):
        with np.errstate(over="ignore", invalid="ignore"):
            rows = a @ np.ones(a.shape[1], a.dtype) if a.ndim == 2 and a.dtype.char in "fd" else a
            if np.isfinite(np.add.reduce(rows, axis=None)) or np.isfinite(a).all():
                return
        host = a
    else:
        backend = backends.backend_of(a)
        if backend.is_traced(a):
            return
        xp = backend.xp
        with backend.ignore_fp_errors():
            if bool(xp.isfinite(xp.sum(a))) or bool(xp.all(xp.isfinite(a))):
                return
        host = backend.to_numpy(a)
    pos, at = _first(~np.isfinite(host))
    source = None if original is None else host_view(original)
    if source is not None and source.dtype.kind in "biuf" and np.isfinite(source[pos]):
        info = np.finfo(host.dtype)
        raise ValueError(
            f"{where}: {what} value {source[pos]} at position {at} does not fit "
            f"in {info.dtype} (largest finite value {float(info.max):.4g}); rescale the "
            "data or use a float64 model"
        )
    raise ValueError(
        f"{where}: {what} value {host[pos]} at position {at} is not finite; "
        "remove or impute NaN/Inf values first"
    )


def cast_finite(a: Array, backend: backends.Backend, dtype: str, where: str, what: str) -> Array:
    """A real host or ``backend`` array cast to ``dtype`` on ``backend``, refusing NaN/Inf
    and overflows; checked after the copy (a NumPy check first slows XLA, bench/README.md)."""
    with np.errstate(over="ignore", invalid="ignore"):  # reported by check_finite
        if isinstance(a, np.ndarray):
            cast = backend.asarray(a if a.dtype == np.dtype(dtype) else a.astype(dtype))
        else:
            cast = a if _dtype_name(a) == dtype else backend.xp.astype(a, backend.dtype(dtype))
    check_finite(cast, where, what, original=a)
    return cast


def as_model_input(x: Any, backend: backends.Backend, dtype: str, where: str, layer: Any) -> Array:
    """Host data or a backend array -> checked ``dtype`` array on ``backend``, or ``int32``
    (:func:`as_indices`) if the first ``layer`` has ``integer_input`` (Embedding)."""
    if getattr(layer, "integer_input", False):
        return as_indices(x, backend, layer, where)
    x = _own_array(x, backend, where, "input", ", of shape (n, features)")
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: input must be a numeric array, received dtype {x.dtype}; "
                "convert it with np.asarray(x, dtype='float32')"
            )
    elif not _is_real_name(_dtype_name(x)):
        raise TypeError(
            f"{where}: input must be a real numeric array, received dtype {_dtype_name(x)}"
        )
    return cast_finite(x, backend, dtype, where, "input")


def check_indices(x: Array, input_dim: int, where: str) -> None:
    """A ValueError naming the first index outside ``[0, input_dim)``, never a silent clamp."""
    host = x
    if not isinstance(x, np.ndarray):
        bk = backends.backend_of(x)
        if bk.is_traced(x) or not bool(bk.xp.any(_out_of_range(x, input_dim, bk.xp))):
            return
        host = bk.to_numpy(x)
    bad = _out_of_range(host, input_dim, np)
    if not bad.any():
        return
    pos, at = _first(bad)
    raise ValueError(
        f"{where}: index {host[pos]} at position {at} is out of range for "
        f"input_dim={input_dim} (valid indices are 0..{input_dim - 1}); {int(bad.sum())} "
        "bad index(es) in all; make input_dim larger than the largest index or map unknown "
        "values to a reserved index"
    )


def _out_of_range(x: Array, input_dim: int, xp: Any) -> Array:
    """``(x < 0) | (x >= input_dim)``, no int beyond ``x``'s dtype (JAX wraps, strict refuses)."""
    if xp.isdtype(x.dtype, "integral") and input_dim > int(xp.iinfo(x.dtype).max):
        return x < 0
    return (x < 0) | (x >= input_dim)


def as_indices(x: Any, backend: backends.Backend, layer: Any, where: str) -> Array:
    """Indices for a first layer like Embedding -> checked ``int32`` (floats only if whole)."""
    where = f"{where}: layer 0 ({type(layer).__name__})"
    x = _own_array(x, backend, where, "input", " holding integer indices")
    name = _dtype_name(x)
    if name.startswith(("float", "bfloat")):
        x = host_view(x)
        bad = _not_whole(x)
        if bad.any():
            pos, at = _first(bad)
            raise ValueError(
                f"{where}: expects integer indices, but input value {x[pos]} at position {at} "
                "is not a whole number; pass integer indices, e.g. x.astype('int32')"
            )
    elif not name.startswith(_INTEGER):
        shown = x.dtype if isinstance(x, np.ndarray) else name  # "<U3" rather than "str96"
        raise TypeError(
            f"{where}: expects integer indices, received dtype {shown}; pass integer "
            "indices, e.g. x.astype('int32')"
        )
    check_indices(x, layer.input_dim, where)
    if isinstance(x, np.ndarray):
        return backend.asarray(x if x.dtype == np.int32 else x.astype(np.int32))
    return x if name == "int32" else backend.xp.astype(x, backend.dtype("int32"))


def prepare_targets(model: Any, y: Any, loss: Any, n: int, where: str) -> Array:
    """Targets -> array on the model's backend, checked against ``loss`` and the output shape."""
    backend = model.backend
    y = _own_array(y, backend, where, "targets")
    if len(y.shape) == 0 or y.shape[0] != n:
        raise ValueError(
            f"{where}: x has {n} samples but y has {y.shape[0] if len(y.shape) else 'no'} "
            "samples; x and y must have the same length"
        )
    out = model.output_shape
    if loss.sparse:
        host = host_view(y)
        # whole-number float labels are accepted; check_labels names any other
        if host is not None and host.dtype.kind == "f" and not _not_whole(host).any():
            y = host.astype(np.int64)
        check_labels(y, model.output_features, where)
        return backend.asarray(y) if isinstance(y, np.ndarray) else y
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{where}: targets must be numeric, received dtype {y.dtype}")
        if y.ndim == 1 and out[-1:] != (1,) and y.dtype.kind in "iu":
            raise ValueError(
                f"{where}: integer labels of shape {y.shape} were given to {type(loss).__name__}, "
                "which expects one-hot rows; use loss='sparse_categorical_crossentropy' or "
                "tinynet.one_hot(y, num_classes)"
            )
    if len(y.shape) == 1 and out == (1,):
        y = y.reshape(-1, 1) if isinstance(y, np.ndarray) else backend.xp.reshape(y, (-1, 1))
    y = cast_finite(y, backend, model.dtype, where, "targets")
    if tuple(y.shape[1:]) != out:
        raise ValueError(
            f"{where}: targets of shape {tuple(y.shape)} do not match the model output "
            f"(n, {', '.join(map(str, out))}) for {type(loss).__name__}"
        )
    return y


def prepare_data(model: Any, x: Any, y: Any, loss: Any, where: str) -> tuple[Array, Array]:
    """``(x, y)`` as checked arrays of the model's backend and dtype."""
    x = as_model_input(x, model.backend, model.dtype, where, model.layers[0])
    check_input(x, model, where)
    return x, prepare_targets(model, y, loss, x.shape[0], where)
