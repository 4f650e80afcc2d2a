"""Small datasets as host NumPy arrays; nothing here downloads anything.

Built-in datasets
=================

``spiral``
    The classic "neural networks from scratch" toy problem: ``classes``
    interleaved spiral arms in the plane.  Generated on the fly, NumPy only.
``digits``
    scikit-learn's bundled 8x8 hand-written digits (1,797 images shipped
    inside the scikit-learn wheel, no download), with a fixed stratified
    train/test split.  Needs the optional extra: ``pip install 'tinynet[digits]'``.

Your own data
=============

:func:`load_npz` reads arrays you already have on disk, for example the
common ``mnist.npz`` layout (``x_train, y_train, x_test, y_test``).  Files are
opened with ``allow_pickle=False``: object (pickled) arrays are refused, never
unpickled.

Every function returns host ``numpy.ndarray`` objects: features ``float32``
of shape ``(n_samples, n_features)`` and labels ``int64`` of shape
``(n_samples,)``.  Moving them to a backend is the caller's business.

This module imports NumPy only; scikit-learn is imported lazily inside
:func:`digits`.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = [
    "available",
    "digits",
    "load_npz",
    "spiral",
    "train_test_split",
]

Split = tuple[np.ndarray, np.ndarray]

_DIGITS_INSTALL_HINT = (
    "the 'digits' dataset needs scikit-learn, which is not installed; "
    "install it with: pip install 'tinynet[digits]' (or use the 'spiral' dataset, "
    "which needs nothing extra)"
)


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def _fraction(value: Any) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
        and 0.0 < float(value) < 1.0
    )
    if not ok:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------
# spiral
# --------------------------------------------------------------------------


def spiral(
    samples_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0
) -> Split:
    """The classic spiral toy dataset.

    For class ``c`` with ``N = samples_per_class`` points::

        r = linspace(0, 1, N)
        t = linspace(4 c, 4 (c + 1), N) + noise * standard_normal(N)
        x = [r sin(2.5 t), r cos(2.5 t)]

    Returns ``(x, y)``: ``x`` float32 of shape ``(N * classes, 2)`` (every
    point lies within the unit disc), ``y`` int64 of shape ``(N * classes,)``
    holding class ``c`` for rows ``c*N .. (c+1)*N - 1``.  The result depends
    only on the arguments: the noise comes from ``np.random.default_rng(seed)``.

    Raises ``ValueError`` for a non-positive or non-integer
    ``samples_per_class`` or ``classes``, a negative or non-finite ``noise``,
    or a negative ``seed``.
    """
    n = _positive_int("samples_per_class", samples_per_class)
    k = _positive_int("classes", classes)
    if (
        isinstance(noise, bool)
        or not isinstance(noise, numbers.Real)
        or not math.isfinite(float(noise))
        or noise < 0
    ):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(_seed(seed))

    x = np.empty((n * k, 2), dtype=np.float64)
    y = np.empty(n * k, dtype=np.int64)
    r = np.linspace(0.0, 1.0, n)
    for c in range(k):
        rows = slice(c * n, (c + 1) * n)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.standard_normal(n) * float(noise)
        x[rows, 0] = r * np.sin(t * 2.5)
        x[rows, 1] = r * np.cos(t * 2.5)
        y[rows] = c
    return x.astype(np.float32), y


# --------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------


def _class_labels(y: np.ndarray, what: str) -> np.ndarray:
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(
            f"stratified splitting needs 1-D integer class labels for {what}, got "
            f"dtype {y.dtype} with shape {y.shape}; pass stratify=False to split "
            "without looking at the labels"
        )
    return y


def _split_positions(
    y: np.ndarray | None, order: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split the permutation ``order`` into (train, test) row indices.

    With labels ``y`` the split is stratified: of each class, the first
    ``round(n_class * test_fraction)`` members met along ``order`` go to the
    test split (rounding half up).  Both splits keep the ``order`` ordering,
    so classes are interleaved rather than in blocks.
    """
    n = order.shape[0]
    if y is None:
        n_test = math.floor(n * test_fraction + 0.5)
        is_test = np.zeros(n, dtype=bool)
        is_test[:n_test] = True
    else:
        y_ordered = y[order]
        is_test = np.zeros(n, dtype=bool)
        for c in np.unique(y_ordered):
            members = np.flatnonzero(y_ordered == c)
            is_test[members[: math.floor(members.size * test_fraction + 0.5)]] = True
    n_test = int(is_test.sum())
    if n_test == 0 or n_test == n:
        empty = "test" if n_test == 0 else "train"
        raise ValueError(
            f"test_fraction={test_fraction} leaves the {empty} split empty for {n} samples"
        )
    return order[~is_test], order[is_test]


def train_test_split(
    x: Any, y: Any, test_fraction: float = 0.2, seed: int = 0, *, stratify: bool = True
) -> tuple[Split, Split]:
    """Deterministically split ``(x, y)`` into ``((x_train, y_train), (x_test, y_test))``.

    Rows are shuffled with ``np.random.default_rng(seed)``; the same inputs and
    seed always give the same split.  With ``stratify=True`` (the default)
    ``y`` must hold 1-D integer class labels and each class contributes
    ``round(n_class * test_fraction)`` rows to the test split, so class
    proportions are kept.  With ``stratify=False``, ``round(n * test_fraction)``
    rows are drawn regardless of label.  Arrays keep their dtypes; the first
    axis is the sample axis.

    Raises ``ValueError`` if ``x`` and ``y`` differ in length,
    ``test_fraction`` is not strictly between 0 and 1, ``seed`` is negative,
    or either split would come out empty.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    fraction = _fraction(test_fraction)
    rng = np.random.default_rng(_seed(seed))
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"x and y must be arrays of samples, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        )
    labels = _class_labels(y, "y") if stratify else None
    train, test = _split_positions(labels, rng.permutation(x.shape[0]), fraction)
    return (x[train], y[train]), (x[test], y[test])


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


def _fixed_order(n: int) -> np.ndarray:
    """A pseudo-random permutation of ``range(n)`` fixed forever.

    Rows are sorted by the SplitMix64 hash of their index: plain unsigned
    64-bit integer arithmetic, so the order is identical on every machine and
    does not depend on NumPy's random-number streams (which NumPy does not
    promise to keep unchanged across releases).  The hash is a bijection, so
    there are no ties.
    """
    z = np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.argsort(z, kind="stable")


def digits(test_fraction: float = 0.2) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits with a fixed, stratified split.

    Returns ``((x_train, y_train), (x_test, y_test))``.  ``x`` is float32 of
    shape ``(n, 64)`` with pixel intensities (0..16 in the source) scaled to
    ``[0, 1]``; ``y`` is int64 in ``0..9``.  The data ship inside the
    scikit-learn package; nothing is downloaded.

    The split is the same on every call and every machine: rows are visited
    in a fixed hash order (not NumPy's RNG) and each digit class contributes
    ``round(n_class * test_fraction)`` rows to the test split (359 of the
    1,797 images at the default 0.2).

    Raises ``ImportError`` (with the install command) if scikit-learn is not
    installed and ``ValueError`` if ``test_fraction`` is not strictly between
    0 and 1.
    """
    fraction = _fraction(test_fraction)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(_DIGITS_INSTALL_HINT) from exc
    data, target = load_digits(return_X_y=True)
    x = (np.asarray(data, dtype=np.float32) / np.float32(16.0)).reshape(-1, 64)
    y = np.asarray(target, dtype=np.int64)
    train, test = _split_positions(y, _fixed_order(y.shape[0]), fraction)
    return (x[train], y[train]), (x[test], y[test])


def available() -> list[str]:
    """Names of the built-in datasets usable here (``digits`` needs scikit-learn).

    Checks whether scikit-learn is installed without importing it.
    """
    names = ["spiral"]
    if importlib.util.find_spec("sklearn") is not None:
        names.append("digits")
    return names


# --------------------------------------------------------------------------
# load_npz
# --------------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip

_LOAD_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
)


def _read_member(npz: Any, key: str, fname: str) -> np.ndarray:
    try:
        arr = npz[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise ValueError(
                f"{fname}: array {key!r} is an object array stored with pickle; "
                "pickled arrays are not loaded (they could run arbitrary code). "
                "Save plain numeric arrays instead."
            ) from exc
        raise ValueError(f"{fname}: array {key!r} is corrupt or unreadable: {exc}") from exc
    except _LOAD_ERRORS as exc:
        raise ValueError(f"{fname}: array {key!r} is corrupt or unreadable: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{fname}: member {key!r} is not a .npy array")
    return arr


def _read_arrays(
    npz: Any,
    fname: str,
    x_key: str,
    y_key: str,
    x_test_key: str | None,
    y_test_key: str | None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Resolve the key layout (see :func:`load_npz`) and read those arrays."""
    present = list(npz.files)
    keys = [x_key, y_key]
    if x_test_key is not None and y_test_key is not None:
        keys += [x_test_key, y_test_key]
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
    return {k: _read_member(npz, k, fname) for k in keys}, keys


def _features(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == object:
        raise ValueError(f"{where} is an object array; pickled arrays are not loaded")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold real numbers, got dtype {x.dtype}")
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
    if y.dtype == object:
        raise ValueError(f"{where} is an object array; pickled arrays are not loaded")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold integer class labels, got dtype {y.dtype}")
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
    """Read a dataset you already have as an ``.npz`` file.

    Returns ``((x_train, y_train), (x_test, y_test))``, or
    ``((x, y), None)`` when the file has no test split (see below).

    Layouts:

    * ``x_train, y_train, x_test, y_test`` (the common ``mnist.npz``
      layout; the default keys).  All four must be present.
    * ``x, y`` only: when the file contains none of the four default keys but
      has ``x`` and ``y``, those are returned as the training split with
      ``None`` for the test split; use :func:`train_test_split` to make one.
    * Other names: pass ``x_key``/``y_key`` (and ``x_test_key``/
      ``y_test_key``); pass ``x_test_key=None, y_test_key=None`` to read a
      training split only (the test split is then ``None``).

    Conversions:

    * ``x`` of shape ``(n, d1, d2, ...)`` is flattened to ``(n, d1*d2*...)``,
      e.g. 28x28 images become 784 features.
    * ``uint8`` ``x`` is taken to be 0..255 pixel data and scaled to float32
      in ``[0, 1]``; any other real dtype (float, other integers, bool) is
      converted to float32 *unscaled*.  The train and test splits must then
      agree on whether they are ``uint8``.
    * ``y`` becomes int64.  Integer and bool labels are used as they are;
      float labels are accepted only if every value is a whole number
      (``3.0``); a 2-D ``(n, 1)`` column is flattened; 2-D one-hot rows
      (all zeros with a single 1) are converted to class indices with argmax.

    Refused with an error naming the file and array:

    * missing file -> ``FileNotFoundError``;
    * a directory, a non-``.npz`` file (including a single ``.npy`` array or
      a pickle), a corrupt archive -> ``ValueError``;
    * missing keys -> ``ValueError`` listing the missing and present keys;
    * object arrays -> ``ValueError``: the file is read with
      ``allow_pickle=False`` so pickled data are never unpickled;
    * empty arrays, non-numeric or complex data, ``x`` with fewer than two
      dimensions, NaN/Inf in ``x`` (after conversion to float32), ``x``/``y``
      length mismatches, train/test feature-count mismatches, non-integer,
      NaN, negative or not-one-hot labels -> ``ValueError``.
    """
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
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # pragma: no cover - magic checked
            raise ValueError(f"{fname} is not an .npz archive")
        with loaded as npz:
            arrays, keys = _read_arrays(npz, fname, x_key, y_key, x_test_key, y_test_key)

    train = _pair(arrays[keys[0]], arrays[keys[1]], fname, keys[0], keys[1])
    if len(keys) == 2:
        return train, None
    test = _pair(arrays[keys[2]], arrays[keys[3]], fname, keys[2], keys[3])
    if train[0].shape[1] != test[0].shape[1]:
        raise ValueError(
            f"{fname}: {keys[0]!r} has {train[0].shape[1]} features per sample but "
            f"{keys[2]!r} has {test[0].shape[1]}; they must match"
        )
    if (arrays[keys[0]].dtype == np.uint8) != (arrays[keys[2]].dtype == np.uint8):
        raise ValueError(
            f"{fname}: {keys[0]!r} has dtype {arrays[keys[0]].dtype} but {keys[2]!r} has "
            f"dtype {arrays[keys[2]].dtype}; uint8 data are scaled by 1/255 and other "
            "dtypes are not, so both splits must use the same kind"
        )
    return train, test
