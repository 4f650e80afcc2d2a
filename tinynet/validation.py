"""Input checks that run before any device work, with errors that say what
was wrong, what was expected and how to fix it."""

from __future__ import annotations

from typing import Any

import numpy as np

import backends

Array = Any

_FLOAT_NAMES = ("float32", "float64")


def host_view(a: Array) -> np.ndarray | None:
    """A NumPy view/copy of ``a`` for checking, or None inside ``jit``."""
    if isinstance(a, np.ndarray):
        return a
    backend = backends.backend_of(a)
    if backend.is_traced(a):
        return None
    return backend.to_numpy(a)


def _dtype_name(a: Array) -> str:
    dtype = a.dtype
    name = getattr(dtype, "name", None) or str(dtype)
    return name.rsplit(".", 1)[-1]


def _is_integer_name(name: str) -> bool:
    return name.startswith(("int", "uint"))


def check_labels(labels: Array, num_classes: int, where: str) -> None:
    """Integer class labels of shape ``(n,)`` in ``[0, num_classes)``."""
    shape = tuple(labels.shape)
    if len(shape) != 1:
        raise ValueError(
            f"{where}: integer labels must have shape (n,), received shape {shape}; "
            "pass one label per sample (use argmax(axis=1) to turn one-hot rows into labels)"
        )
    name = _dtype_name(labels)
    if not _is_integer_name(name):
        raise ValueError(
            f"{where}: labels must be integers, received dtype {name}; "
            "convert with labels.astype('int64') (values must be whole numbers)"
        )
    host = host_view(labels)
    if host is None or host.size == 0:
        return
    bad = np.flatnonzero((host < 0) | (host >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: label {host[i]} at position {i} is out of range for "
            f"{num_classes} classes (valid labels are 0..{num_classes - 1}; "
            f"{bad.size} bad label(s) in all)"
        )


def check_loss_inputs(loss: Any, y_true: Array, y_pred: Array) -> Array:
    """Check shapes/dtypes for ``loss(y_true, y_pred)``; returns ``y_true``
    ready for the maths (cast to ``y_pred``'s dtype unless labels)."""
    name = type(loss).__name__
    pred_dtype = _dtype_name(y_pred)
    if pred_dtype not in _FLOAT_NAMES:
        raise TypeError(
            f"{name}: y_pred must be float32 or float64, received dtype {pred_dtype}"
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
    if _dtype_name(y_true) != pred_dtype:
        xp = backends.namespace(y_true)
        y_true = xp.astype(y_true, y_pred.dtype)
    return y_true


def check_features(x: Array, expected: int, where: str) -> None:
    """``x`` must be ``(n, expected)``."""
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{where}: input must have shape (n, {expected}), received shape {shape}"
            + ("; flatten images with x.reshape(len(x), -1)" if len(shape) > 2 else "")
        )
    if shape[1] != expected:
        raise ValueError(
            f"{where}: layer 0 (Dense) expects {expected} input features, "
            f"received input of shape {shape}"
        )


def as_model_input(x: Any, backend: backends.Backend, dtype: str, where: str) -> Array:
    """Host data or a backend array -> ``dtype`` array on ``backend``, checked.

    Integer, bool and float16 inputs are cast to the model dtype; object,
    string and complex arrays are refused with ``TypeError``; NaN/Inf raise
    ``ValueError`` naming the first position.
    """
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
        if kind not in "biuf":
            raise TypeError(
                f"{where}: input must be a numeric array, received dtype {x.dtype}; "
                "convert it with np.asarray(x, dtype='float32')"
            )
        if kind == "f" and x.size and not np.isfinite(x).all():
            pos = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(
                f"{where}: input contains {x[tuple(pos)]} at position {tuple(int(i) for i in pos)}; "
                "remove or impute non-finite values before training"
            )
        if x.dtype != np.dtype(dtype):
            x = x.astype(dtype)
        return backend.asarray(x)
    other = backends.backend_of(x)
    if other is not backend:
        raise TypeError(
            f"{where}: input is a {other.name} array but the model lives on the "
            f"{backend.name} backend; move it with tinynet.get_backend({backend.name!r}).asarray(x)"
        )
    name = _dtype_name(x)
    if name != dtype:
        if not (name in ("float16", "bfloat16", "float32", "float64", "bool") or _is_integer_name(name)):
            raise TypeError(f"{where}: input must be a numeric array, received dtype {name}")
        x = backend.xp.astype(x, backend.dtype(dtype))
    return x
