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
``fashion-mnist``
    Zalando's Fashion-MNIST, 60,000 + 10,000 grey-scale 28x28 images of 10
    kinds of clothing, read from IDX files already on the machine (the
    Debian package ``dataset-fashion-mnist``, or a folder named by the
    ``TINYNET_DATA`` environment variable); see :func:`fashion_mnist`.

Your own data
=============

:func:`load_idx` reads one IDX file (the MNIST family's format, plain or
gzip).  :func:`load_npz` reads arrays you already have on disk, for example the
common ``mnist.npz`` layout (``x_train, y_train, x_test, y_test``).  Files are
opened with ``allow_pickle=False``: object (pickled) arrays are refused, never
unpickled.

Every function returns host ``numpy.ndarray`` objects: features ``float32``
of shape ``(n_samples, n_features)`` (images: ``(n_samples, height, width,
channels)``, channels-last) and labels ``int64`` of shape ``(n_samples,)``.
Moving them to a backend is the caller's business.

This module imports NumPy only; scikit-learn is imported lazily inside
:func:`digits`.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import arguments
from .fashion import fashion_mnist
from .fashion import found as _fashion_found
from .files import _features, load_npz, read_inputs  # noqa: F401  (the CLI's predict)
from .idx import load_idx

__all__ = [
    "BUILTIN",
    "available",
    "by_name",
    "digits",
    "fashion_mnist",
    "load_idx",
    "load_npz",
    "spiral",
    "train_test_split",
]

BUILTIN = ("spiral", "digits", "fashion-mnist")  # the names --dataset takes

Split = tuple[np.ndarray, np.ndarray]
TEST_FRACTION = 0.2  # the test split held out of spiral and of an .npz with only x, y

_DIGITS_INSTALL_HINT = (
    "the 'digits' dataset needs scikit-learn, which is not installed; "
    "install it with: pip install 'tinynet[digits]' (or use the 'spiral' dataset, "
    "which needs nothing extra)"
)


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    return arguments.integer("", name, value, "a positive integer", lambda v: v > 0)


def _seed(value: Any) -> int:
    return arguments.integer("", "seed", value, "a non-negative integer", lambda v: v >= 0)


def _fraction(value: Any) -> float:
    return arguments.real(
        "", "test_fraction", value, "a number strictly between 0 and 1", lambda v: 0 < v < 1
    )


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
        raise ValueError(f"noise must be a finite number >= 0, received noise={noise!r}")
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


def digits(test_fraction: float = 0.2, images: bool = False) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits with a fixed, stratified split.

    Returns ``((x_train, y_train), (x_test, y_test))``.  ``x`` is float32 of
    shape ``(n, 64)``, or ``(n, 8, 8, 1)`` (channels-last, for a CNN) with
    ``images=True``, with pixel intensities (0..16 in the source) scaled to
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
    shape = (-1, 8, 8, 1) if images else (-1, 64)
    x = (np.asarray(data, dtype=np.float32) / np.float32(16.0)).reshape(shape)
    y = np.asarray(target, dtype=np.int64)
    train, test = _split_positions(y, _fixed_order(y.shape[0]), fraction)
    return (x[train], y[train]), (x[test], y[test])


def available() -> list[str]:
    """Names of the built-in datasets usable here (``digits`` needs
    scikit-learn, ``fashion-mnist`` its files: see :func:`fashion_mnist`).

    Checks whether scikit-learn is installed without importing it, and
    whether the Fashion-MNIST files exist without reading them.
    """
    names = ["spiral"]
    if importlib.util.find_spec("sklearn") is not None:
        names.append("digits")
    if _fashion_found():
        names.append("fashion-mnist")
    return names


# --------------------------------------------------------------------------
# the command line's --dataset
# --------------------------------------------------------------------------


@dataclass
class Dataset:
    """``train``/``test`` are ``(x, y)``; ``x`` is ``(n, features)`` or, for
    image sets, ``(n, height, width, channels)``."""

    name: str  # spiral, digits, fashion-mnist or the file's name
    spec: str  # what --dataset takes to load it again (recorded in checkpoints)
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    note: str = ""  # how tinynet made the test split of a file without one


def by_name(spec: str | None) -> Dataset:
    """The data ``tinynet train --dataset SPEC`` trains on: ``spiral``,
    ``digits`` (needs scikit-learn; images ``(n, 8, 8, 1)``),
    ``fashion-mnist`` (images ``(n, 28, 28, 1)``; ``FileNotFoundError`` when
    its files are not on this machine), or a path to an ``.npz`` file (its
    test split, or one held out here); ``None`` is digits where scikit-learn
    is installed, else spiral.  ``ValueError`` for anything else."""
    if spec is None:
        spec = "digits" if "digits" in available() else "spiral"
    if spec == "spiral":
        x, y = spiral(samples_per_class=300, classes=3, noise=0.2, seed=0)
        train, test = train_test_split(x, y, test_fraction=TEST_FRACTION, seed=0)
        return Dataset("spiral", spec, train, test)
    if spec == "digits":
        train, test = digits(images=True)
        return Dataset("digits", spec, train, test)
    if spec == "fashion-mnist":
        train, test = fashion_mnist()
        return Dataset("fashion-mnist", spec, train, test)
    if not (spec.endswith(".npz") or os.path.exists(spec)):
        raise ValueError(
            f"unknown dataset {spec!r}; use spiral, digits (needs scikit-learn), "
            "fashion-mnist (needs its files) or a path to a .npz file"
        )
    if not os.path.exists(spec):
        raise ValueError(f"dataset file not found: {spec}; give the path of an existing .npz file")
    train, test = load_npz(spec)
    name, note = Path(spec).name, ""
    if test is None:
        train, test = train_test_split(*train, test_fraction=TEST_FRACTION, seed=0)
        if len(test[0]) == 0:
            raise ValueError(f"{spec} has too few samples to hold out a test split; add more")
        note = (
            f"{name} has no x_test/y_test: {len(test[0])} of its samples "
            f"({TEST_FRACTION:.0%}, seed 0) are held out as the test split"
        )
    return Dataset(name, spec, train, test, note)
