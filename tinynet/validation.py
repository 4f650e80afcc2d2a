"""Input checks that run before any device work, with errors that say what
was wrong, what was expected and how to fix it.

Every check gives the same exception type on every backend: the values are
looked at on the host (or reduced to one flag on the device) before any
step runs.  Inside ``jit`` (traced arrays) the values are unknown, so only
shapes and dtypes are checked there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import backends

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


def _position(index: tuple[int, ...]) -> str:
    """``(2,)`` -> ``"2"``, ``(2, 1)`` -> ``"(2, 1)"``: how messages name a position."""
    index = tuple(int(i) for i in index)
    return str(index[0]) if len(index) == 1 else str(index)  # () for a 0-d array


def _valid_range(num_classes: int) -> str:
    return f"{num_classes} classes (valid labels are 0..{num_classes - 1})"


# ---------------------------------------------------------------- labels


def check_labels(labels: Array, num_classes: int, where: str) -> None:
    """Integer class labels of shape ``(n,)`` in ``[0, num_classes)``.

    Every refusal is a ``ValueError`` that names the number of classes and,
    when a value is to blame, the first bad value and its position.
    """
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
    name = _dtype_name(labels)
    if not _is_integer_name(name):
        _refuse_non_integer_labels(labels, name, num_classes, where)
    host = host_view(labels)
    if host is None or host.size == 0:
        return
    bad = np.flatnonzero((host < 0) | (host >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: label {host[i]} at position {i} is out of range for "
            f"{_valid_range(num_classes)}; {bad.size} bad label(s) in all"
        )


def _refuse_non_integer_labels(labels: Array, name: str, num_classes: int, where: str) -> None:
    host = None
    if name.startswith(("float", "bfloat")):
        host = host_view(labels)
    if host is not None and host.size:
        whole = np.isfinite(host) & (host == np.round(host))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise ValueError(
                f"{where}: labels must be integers, but label {host[i]} at position {i} is "
                f"not a whole number; expected labels for {_valid_range(num_classes)}"
            )
    raise ValueError(
        f"{where}: labels must be integers in 0..{num_classes - 1} for {num_classes} classes, "
        f"received dtype {name}; convert with labels.astype('int64') "
        "(values must be whole numbers)"
    )


# ---------------------------------------------------------------- losses


def check_loss_inputs(loss: Any, y_true: Array, y_pred: Array) -> Array:
    """Check shapes/dtypes for ``loss(y_true, y_pred)``; returns ``y_true``
    ready for the maths (cast to ``y_pred``'s dtype unless labels)."""
    name = type(loss).__name__
    pred_dtype = _dtype_name(y_pred)
    if pred_dtype not in _FLOAT_NAMES:
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
    if true_dtype != pred_dtype:
        if not _is_real_name(true_dtype):
            raise TypeError(f"{name}: y_true must be numeric, received dtype {true_dtype}")
        xp = backends.namespace(y_true)
        y_true = xp.astype(y_true, y_pred.dtype)
    return y_true


# ---------------------------------------------------------------- inputs


def check_input(x: Array, model: Any, where: str) -> None:
    """``x`` must be ``(n, *model.input_shape)`` with ``n >= 1``."""
    shape, expected = tuple(x.shape), model.input_shape
    if shape[1:] != expected:
        first = model.layers[0]
        if len(expected) == 1 and type(first).__name__ == "Dense" and len(shape) == 2:
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
    """Raise ``ValueError`` naming the first NaN/Inf of the float array ``a``.

    ``original`` is the data ``a`` was cast from (host or backend array): a
    value that was finite there overflowed the cast, and the message says so.
    Skipped inside ``jit``.  On a device only one flag is read back unless
    something is wrong.
    """
    # A NaN or Inf anywhere makes the sum non-finite, so a finite sum proves
    # every value finite in one cheap pass (an overflowing sum of finite
    # values just falls through to the exact elementwise check).  A data
    # matrix is summed by BLAS, ``a @ ones`` (both cores, several times
    # faster than a reduction), which multiplies every element by 1.
    if isinstance(a, np.ndarray):
        with np.errstate(over="ignore", invalid="ignore"):
            if a.ndim == 2 and a.dtype.char in "fd":
                total = np.add.reduce(a @ np.ones(a.shape[1], a.dtype))
            else:
                total = np.add.reduce(a, axis=None)
            if np.isfinite(total) or np.isfinite(a).all():
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
    pos = tuple(int(i) for i in np.argwhere(~np.isfinite(host))[0])
    if original is not None:
        source = host_view(original)
        if source is not None and source.dtype.kind in "biuf" and np.isfinite(source[pos]):
            info = np.finfo(host.dtype)
            raise ValueError(
                f"{where}: {what} value {source[pos]} at position {_position(pos)} does not fit "
                f"in {info.dtype} (largest finite value {float(info.max):.4g}); rescale the "
                "data or use a float64 model"
            )
    raise ValueError(
        f"{where}: {what} value {host[pos]} at position {_position(pos)} is not finite; "
        "remove or impute NaN/Inf values first"
    )


def _is_real_name(name: str) -> bool:
    return name in ("float16", "bfloat16", "float32", "float64", "bool") or _is_integer_name(name)


def cast_finite(
    a: Array, backend: backends.Backend, dtype: str, where: str, what: str = "input"
) -> Array:
    """A real-valued host (NumPy) or ``backend`` array cast to ``dtype`` on
    ``backend``, refusing NaN/Inf and values the cast overflows
    (``ValueError`` naming the first value and its position).  On the host
    the check runs before the copy to the device.  The caller checks that
    ``a`` is numeric and lives on ``backend``.

    Host data is checked where it ends up: on the NumPy backend by NumPy (it
    stays where it is), elsewhere on the device after the copy.  A host check
    before a copy to JAX cost the steps after it: NumPy's BLAS sum leaves
    OpenBLAS's threads spinning for a while, and on a 2-core machine XLA's
    matmuls run slower meanwhile (bench/README.md)."""
    if isinstance(a, np.ndarray):
        cast = a
        if a.dtype != np.dtype(dtype):
            with np.errstate(over="ignore", invalid="ignore"):  # reported below
                cast = a.astype(dtype)
        out = backend.asarray(cast)
        check_finite(out, where, what, original=a)
        return out
    cast = a
    if _dtype_name(a) != dtype:
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            cast = backend.xp.astype(a, backend.dtype(dtype))
    check_finite(cast, where, what, original=a)
    return cast


def as_model_input(
    x: Any, backend: backends.Backend, dtype: str, where: str, first_layer: Any = None
) -> Array:
    """Host data or a backend array -> ``dtype`` array on ``backend``, checked.

    Integer, bool and float16 inputs are cast to the model dtype (as are
    float64 inputs to a float32 model); object, string and complex arrays
    are refused with ``TypeError`` naming the dtype; NaN/Inf, and finite
    values that overflow the model dtype, raise ``ValueError`` naming the
    first position.  A model whose first layer takes integer indices
    (``first_layer.integer_input``: Embedding) gets them as ``int32``
    instead (:func:`as_indices`).
    """
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if getattr(first_layer, "integer_input", False):
        return as_indices(x, backend, first_layer, where)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: input must be a numeric array, received dtype {x.dtype}; "
                "convert it with np.asarray(x, dtype='float32')"
            )
        return cast_finite(x, backend, dtype, where, "input")
    try:
        other = backends.backend_of(x)
    except TypeError:
        raise TypeError(
            f"{where}: input must be a NumPy array or an array of the {backend.name} backend, "
            f"of shape (n, features), received {type(x).__name__}"
        ) from None
    if other is not backend:
        raise TypeError(
            f"{where}: input is a {other.name} array but the model lives on the "
            f"{backend.name} backend; move it with tinynet.get_backend({backend.name!r}).asarray(x)"
        )
    name = _dtype_name(x)
    if not _is_real_name(name):
        raise TypeError(f"{where}: input must be a real numeric array, received dtype {name}")
    return cast_finite(x, backend, dtype, where, "input")


# ---------------------------------------------------------------- indices


def check_indices(x: Array, input_dim: int, where: str) -> None:
    """Integer indices must lie in ``[0, input_dim)``: a ``ValueError`` naming
    the first bad value and its position otherwise (never a silent clamp, as
    a gather on JAX would do).  Skipped inside ``jit``; on a device only one
    flag is read back unless something is wrong."""
    if isinstance(x, np.ndarray):
        host = x
    else:
        backend = backends.backend_of(x)
        if backend.is_traced(x):
            return
        if not bool(backend.xp.any(_out_of_range(x, input_dim, backend.xp))):
            return
        host = backend.to_numpy(x)
    bad = _out_of_range(host, input_dim, np)
    if not bad.any():
        return
    pos = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{where}: index {host[pos]} at position {_position(pos)} is out of range for "
        f"input_dim={input_dim} (valid indices are 0..{input_dim - 1}); {int(bad.sum())} "
        "bad index(es) in all; make input_dim larger than the largest index or map unknown "
        "values to a reserved index"
    )


def _out_of_range(x: Array, input_dim: int, xp: Any) -> Array:
    """``(x < 0) | (x >= input_dim)``, with no Python int beyond ``x``'s dtype
    (JAX would wrap it, array-api-strict refuse it)."""
    if xp.isdtype(x.dtype, "integral") and input_dim > int(xp.iinfo(x.dtype).max):
        return x < 0
    return (x < 0) | (x >= input_dim)


def as_indices(x: Any, backend: backends.Backend, layer: Any, where: str) -> Array:
    """Input of a model whose first layer takes integer indices (Embedding)
    -> an ``int32`` array on ``backend``, every value in ``[0, layer.input_dim)``.

    Integer arrays are accepted, float arrays only when every value is a whole
    number; anything else is refused, naming the first bad value and its
    position, before any step runs."""
    where = f"{where}: layer 0 ({type(layer).__name__})"
    if not isinstance(x, np.ndarray):
        try:
            other = backends.backend_of(x)
        except TypeError:
            raise TypeError(
                f"{where}: input must be a NumPy array or an array of the {backend.name} "
                f"backend holding integer indices, received {type(x).__name__}"
            ) from None
        if other is not backend:
            raise TypeError(
                f"{where}: input is a {other.name} array but the model lives on the "
                f"{backend.name} backend; move it with "
                f"tinynet.get_backend({backend.name!r}).asarray(x)"
            )
    name = _dtype_name(x)
    if name.startswith(("float", "bfloat")):
        host = host_view(x)
        whole = np.isfinite(host) & (host == np.round(host))
        if not whole.all():
            pos = tuple(int(i) for i in np.argwhere(~whole)[0])
            raise ValueError(
                f"{where}: expects integer indices, but input value {host[pos]} at position "
                f"{_position(pos)} is not a whole number; pass integer indices, e.g. "
                "x.astype('int32')"
            )
        x = host
    elif not _is_integer_name(name):
        shown = x.dtype if isinstance(x, np.ndarray) else name  # "<U3" rather than "str96"
        raise TypeError(
            f"{where}: expects integer indices, received dtype {shown}; pass integer "
            "indices, e.g. x.astype('int32')"
        )
    check_indices(x, layer.input_dim, where)
    if isinstance(x, np.ndarray):
        return backend.asarray(x if x.dtype == np.int32 else x.astype(np.int32))
    return x if name == "int32" else backend.xp.astype(x, backend.dtype("int32"))


# ---------------------------------------------------------------- model data


def prepare_targets(model: Any, y: Any, loss: Any, n: int, where: str) -> Array:
    """Targets ``y`` -> array on the model's backend, checked against ``loss``
    and the model's output shape."""
    backend = model.backend
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if not isinstance(y, np.ndarray):
        try:
            other = backends.backend_of(y)
        except TypeError:
            raise TypeError(
                f"{where}: targets must be a NumPy array or an array of the {backend.name} "
                f"backend, received {type(y).__name__}"
            ) from None
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
    out = model.output_shape
    if loss.sparse:
        host = host_view(y)
        if host is not None and host.dtype.kind == "f":
            # whole-number float labels are accepted; check_labels names any other
            if np.all(np.isfinite(host)) and np.all(host == np.round(host)):
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
