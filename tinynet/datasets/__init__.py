"""Small datasets as host NumPy arrays (features float32 ``(n, features)`` or
channels-last images, labels int64 ``(n,)``); nothing is downloaded or
unpickled, and scikit-learn is imported only inside :func:`digits`."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import arguments
from .fashion import fashion_mnist
from .fashion import found as _fashion_found
from .files import Split, _features, load_npz, read_inputs  # noqa: F401  (the CLI's predict)
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
TEST_FRACTION = 0.2  # the test split held out of spiral and of an .npz with only x, y


def _positive_int(name: str, value: Any) -> int:
    return arguments.integer("", name, value, "a positive integer", lambda v: v > 0)


def _seed(value: Any) -> int:
    return arguments.integer("", "seed", value, "a non-negative integer", lambda v: v >= 0)


def _fraction(value: Any) -> float:
    return arguments.real(
        "", "test_fraction", value, "a number strictly between 0 and 1", lambda v: 0 < v < 1
    )


def spiral(
    samples_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0
) -> Split:
    """``(x, y)``: ``classes`` interleaved spiral arms of ``samples_per_class``
    points each (class ``c`` in rows ``c*N .. (c+1)*N - 1``), the noise from
    ``np.random.default_rng(seed)``.  ``ValueError`` for an invalid argument."""
    n = _positive_int("samples_per_class", samples_per_class)
    k = _positive_int("classes", classes)
    noise = arguments.non_negative("", "noise", noise)
    rng = np.random.default_rng(_seed(seed))

    x = np.empty((n * k, 2), dtype=np.float64)
    r = np.linspace(0.0, 1.0, n)
    for c in range(k):
        rows = slice(c * n, (c + 1) * n)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.standard_normal(n) * noise
        x[rows, 0] = r * np.sin(t * 2.5)
        x[rows, 1] = r * np.cos(t * 2.5)
    return x.astype(np.float32), np.repeat(np.arange(k, dtype=np.int64), n)


def _split_positions(
    y: np.ndarray | None, order: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """``order`` split into (train, test) rows: the first ``n_class *
    test_fraction`` (rounded half up) of each class along ``order`` (``y=None``:
    one class)."""
    n = order.shape[0]
    y_ordered = np.zeros(n, dtype=np.int64) if y is None else y[order]
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
    """``((x_train, y_train), (x_test, y_test))``, rows shuffled by
    ``np.random.default_rng(seed)``; with ``stratify`` each class of the 1-D
    integer labels ``y`` keeps its proportion.  ``ValueError`` for invalid
    arguments, ``x`` and ``y`` of different lengths or an empty split."""
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
    if stratify and (y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool)):
        raise ValueError(
            f"stratified splitting needs 1-D integer class labels for y, got "
            f"dtype {y.dtype} with shape {y.shape}; pass stratify=False to split "
            "without looking at the labels"
        )
    train, test = _split_positions(y if stratify else None, rng.permutation(x.shape[0]), fraction)
    return (x[train], y[train]), (x[test], y[test])


def _fixed_order(n: int) -> np.ndarray:
    """A permutation of ``range(n)`` fixed forever: the SplitMix64 hash of each
    index (a bijection), not NumPy's random streams, which may change."""
    z = np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.argsort(z, kind="stable")


def digits(test_fraction: float = 0.2, images: bool = False) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits, ``x`` in ``[0, 1]`` of shape ``(n, 64)``
    (``(n, 8, 8, 1)`` with ``images``), split stratified, the same on every
    machine.  ``ImportError`` (with the install command) without scikit-learn."""
    fraction = _fraction(test_fraction)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn, which is not installed; "
            "install it with: pip install 'tinynet[digits]' (or use the 'spiral' dataset, "
            "which needs nothing extra)"
        ) from exc
    data, target = load_digits(return_X_y=True)
    shape = (-1, 8, 8, 1) if images else (-1, 64)
    x = (np.asarray(data, dtype=np.float32) / np.float32(16.0)).reshape(shape)
    y = np.asarray(target, dtype=np.int64)
    train, test = _split_positions(y, _fixed_order(y.shape[0]), fraction)
    return (x[train], y[train]), (x[test], y[test])


def available() -> list[str]:
    """The built-in datasets usable here, checked without importing
    scikit-learn or reading the Fashion-MNIST files."""
    names = ["spiral"]
    if importlib.util.find_spec("sklearn") is not None:
        names.append("digits")
    if _fashion_found():
        names.append("fashion-mnist")
    return names


@dataclass
class Dataset:
    """``train``/``test`` are ``(x, y)``; ``x`` is ``(n, features)`` or, for
    image sets, ``(n, height, width, channels)``."""

    name: str  # spiral, digits, fashion-mnist or the file's name
    spec: str  # what --dataset takes to load it again (recorded in checkpoints)
    train: Split
    test: Split
    note: str = ""  # how tinynet made the test split of a file without one


def by_name(spec: str | None) -> Dataset:
    """The data of ``tinynet train --dataset SPEC``: a name of ``BUILTIN`` or an
    ``.npz`` path (its test split, or one held out here); ``None`` is digits
    where scikit-learn is installed, else spiral.  ``ValueError`` for anything
    else, ``FileNotFoundError`` for Fashion-MNIST not found."""
    if spec is None:
        spec = "digits" if "digits" in available() else "spiral"
    if spec == "spiral":
        x, y = spiral(samples_per_class=300, classes=3, noise=0.2, seed=0)
        return Dataset(spec, spec, *train_test_split(x, y, test_fraction=TEST_FRACTION, seed=0))
    if spec == "digits":
        return Dataset(spec, spec, *digits(images=True))
    if spec == "fashion-mnist":
        return Dataset(spec, spec, *fashion_mnist())
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
        note = (
            f"{name} has no x_test/y_test: {len(test[0])} of its samples "
            f"({TEST_FRACTION:.0%}, seed 0) are held out as the test split"
        )
    return Dataset(name, spec, train, test, note)
