"""Reading the user's own array files (``.npz``, ``.npy``) safely: no pickle,
every problem named with the file and the fix."""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import Any

import numpy as np

Split = tuple[np.ndarray, np.ndarray]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
# what NumPy and zipfile raise for a corrupt or truncated file
_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error)


def _read_member(npz: Any, key: str, fname: str) -> np.ndarray:
    try:
        arr = npz[key]
    except _LOAD_ERRORS as exc:
        text = str(exc).lower()
        if isinstance(exc, ValueError) and ("pickle" in text or "object arrays" in text):
            raise ValueError(
                f"{fname}: array {key!r} is an object array stored with pickle; "
                "pickled arrays are not loaded (they could run arbitrary code). "
                "Save plain numeric arrays instead."
            ) from exc
        raise ValueError(f"{fname}: array {key!r} is corrupt or unreadable: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{fname}: member {key!r} is not a .npy array")
    return arr


def _read_arrays(npz: Any, fname: str, keys: list[str]) -> tuple[list[np.ndarray], list[str]]:
    """The arrays under ``keys``, or under ``x, y`` when ``keys`` are the four
    defaults and the file has only those two (see :func:`load_npz`)."""
    present = list(npz.files)
    defaults = keys == ["x_train", "y_train", "x_test", "y_test"]
    if defaults and not set(keys) & set(present) and {"x", "y"} <= set(present):
        keys = ["x", "y"]
    missing = [k for k in keys if k not in present]
    if missing:
        listed = ", ".join(map(repr, present)) if present else "no arrays"
        expected = "; expected x_train, y_train, x_test, y_test (or just x, y)" if defaults else ""
        raise ValueError(
            f"{fname} is missing array(s) {', '.join(map(repr, missing))}; "
            f"it contains {listed}{expected}"
        )
    return [_read_member(npz, k, fname) for k in keys], keys


def _check_dtype(a: np.ndarray, where: str, what: str) -> None:
    """Refuse object arrays and anything but bool, integer or real data."""
    if a.dtype == object:
        raise ValueError(f"{where} is an object array; pickled arrays are not loaded")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold {what}, got dtype {a.dtype}")


def _features(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as float32 ``(n, features)``: uint8 scaled by 1/255, other dtypes as they are."""
    _check_dtype(x, where, "real numbers")
    if x.ndim < 2:
        raise ValueError(
            f"{where} must have shape (samples, features...), got shape {x.shape}; "
            "reshape 1-D data to (n, 1)"
        )
    if x.size == 0:
        raise ValueError(f"{where} is empty (shape {x.shape})")
    x = x.reshape(x.shape[0], -1)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32)  # finite float64 beyond float32's range becomes inf
    bad = ~np.isfinite(out)
    if bad.any():
        raise ValueError(
            f"{where} contains {int(bad.sum())} NaN or Inf value(s) "
            "(after conversion to float32), first at sample "
            f"{int(np.flatnonzero(bad.any(axis=1))[0])}"
        )
    return out


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """``y`` as int64 class indices (from indices, whole floats or one-hot rows)."""
    _check_dtype(y, where, "integer class labels")
    if y.dtype == np.bool_:
        y = y.astype(np.int64)
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{where} must be 1-D class indices or 2-D one-hot rows, got shape {y.shape}"
        )
    if y.size == 0:
        raise ValueError(f"{where} is empty (shape {y.shape})")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all() or not (y.sum(axis=1) == 1).all():
            raise ValueError(
                f"{where} has shape {y.shape} but is not one-hot (every row must be "
                "zeros with a single 1); labels must be 1-D integer class indices "
                "or one-hot rows"
            )
        return np.argmax(y, axis=1).astype(np.int64)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{where} contains NaN or Inf labels")
        frac = np.flatnonzero(y != np.floor(y))
        if frac.size:
            i = int(frac[0])
            raise ValueError(
                f"{where} contains non-integer labels, e.g. {y[i]!r} at index {i}; "
                "labels must be integer class indices"
            )
    if y.min() < 0:
        raise ValueError(f"{where} contains negative labels (minimum {y.min().item()!r})")
    if y.max() >= 2**63:
        raise ValueError(f"{where} contains labels too large for int64 (max {y.max().item()!r})")
    return y.astype(np.int64)


def _pair(x: np.ndarray, y: np.ndarray, fname: str, x_key: str, y_key: str) -> Split:
    xs = _features(x, f"{fname}: {x_key!r}")
    ys = _labels(y, f"{fname}: {y_key!r}")
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(
            f"{fname}: {x_key!r} has {xs.shape[0]} samples but {y_key!r} has "
            f"{ys.shape[0]} labels; they must match"
        )
    return np.ascontiguousarray(xs), np.ascontiguousarray(ys)


def load_npz(
    path: str | os.PathLike[str],
    x_key: str = "x_train",
    y_key: str = "y_train",
    x_test_key: str | None = "x_test",
    y_test_key: str | None = "y_test",
) -> tuple[Split, Split | None]:
    """``((x_train, y_train), (x_test, y_test))`` from an ``.npz`` file: the
    default keys (``mnist.npz``'s layout), else ``x, y`` and a ``None`` test
    split; ``x_test_key=y_test_key=None`` reads a training split only.  ``x``
    becomes float32 ``(n, features)`` (only ``uint8`` scaled by 1/255, so both
    splits must agree on it), ``y`` int64 (from indices, whole floats, a column
    or one-hot rows).  Raises ``FileNotFoundError`` for a missing file, else
    ``ValueError`` naming file and array (pickled data are never unpickled)."""
    fname = os.fspath(path)
    if not os.path.exists(fname):
        raise FileNotFoundError(f"dataset file not found: {fname}")
    if os.path.isdir(fname):
        raise ValueError(f"{fname} is a directory, not an .npz file")
    if (x_test_key is None) != (y_test_key is None):
        raise ValueError(
            "x_test_key and y_test_key must both be given or both be None, got "
            f"{x_test_key!r} and {y_test_key!r}"
        )

    # Open the file ourselves (np.load leaks its own handle when a zip is
    # corrupt) and look at the magic bytes before handing it to NumPy, so a
    # non-archive is rejected without NumPy ever considering unpickling it.
    with open(fname, "rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
        if magic.startswith(_NPY_MAGIC):
            raise ValueError(
                f"{fname} is a single .npy array, not an .npz archive of named arrays; "
                "save with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
            )
        if not magic.startswith(_ZIP_MAGICS):
            raise ValueError(
                f"{fname} is not a readable .npz archive (it does not start with the zip "
                "signature); pickled data are never loaded"
            )
        fh.seek(0)
        try:
            loaded = np.load(fh, allow_pickle=False)
        except _LOAD_ERRORS as exc:
            raise ValueError(f"{fname} is not a readable .npz archive: {exc}") from exc
        keys = [x_key, y_key] + ([] if x_test_key is None else [x_test_key, y_test_key])
        with loaded as npz:
            arrays, keys = _read_arrays(npz, fname, keys)

    train = _pair(arrays[0], arrays[1], fname, keys[0], keys[1])
    if len(keys) == 2:
        return train, None
    test = _pair(arrays[2], arrays[3], fname, keys[2], keys[3])
    if train[0].shape[1] != test[0].shape[1]:
        raise ValueError(
            f"{fname}: {keys[0]!r} has {train[0].shape[1]} features per sample but "
            f"{keys[2]!r} has {test[0].shape[1]}; they must match"
        )
    if (arrays[0].dtype == np.uint8) != (arrays[2].dtype == np.uint8):
        raise ValueError(
            f"{fname}: {keys[0]!r} has dtype {arrays[0].dtype} but {keys[2]!r} has "
            f"dtype {arrays[2].dtype}; uint8 data are scaled by 1/255 and other "
            "dtypes are not, so both splits must use the same kind"
        )
    return train, test


def read_inputs(path: str, key: str | None = None) -> tuple[np.ndarray, str]:
    """``(array, name for messages)``: what ``tinynet predict`` reads from a ``.npy``
    file or an ``.npz`` archive (its array ``key``, else ``x``, else ``x_test``).
    Raises ``ValueError`` naming the file for anything it cannot read."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except FileNotFoundError:
        raise ValueError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder; give a .npy or .npz file") from None
    if magic != _NPY_MAGIC and not magic.startswith(b"PK"):
        raise ValueError(
            f"{path} is not a .npy or .npz file; save the inputs with np.save(path, x) "
            "or np.savez(path, x=x)"
        )
    if magic == _NPY_MAGIC and key is not None:
        raise ValueError(f"--key picks an array of an .npz file, but {path} is a .npy file")
    names: list[str] = []
    try:
        if magic == _NPY_MAGIC:
            return np.load(path, allow_pickle=False), path
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            key = key or next((k for k in ("x", "x_test") if k in names), None)
            if key in names:
                return npz[key], f"{path}: {key!r}"
    except _LOAD_ERRORS as err:
        if "pickle" in str(err):
            raise ValueError(
                f"{path} holds Python objects (pickled data), which tinynet never "
                "loads; save a numeric array with np.save"
            ) from None
        raise ValueError(f"cannot read {path}: {err}") from None
    raise ValueError(
        f"{path} has no array {key or 'x or x_test'} (it has "
        f"{', '.join(names) or 'none'}); choose one with --key NAME"
    )
