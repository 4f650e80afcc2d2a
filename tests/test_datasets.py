"""tinynet.datasets: host-only tests (no backend fixture)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tinynet import datasets
from tinynet.datasets import available, digits, load_npz, spiral, train_test_split

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# import hygiene
# --------------------------------------------------------------------------


def test_import_does_not_pull_in_heavy_libraries():
    code = (
        "import sys\n"
        "import tinynet\n"
        "before = set(sys.modules)\n"
        "import tinynet.datasets\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] in ('sklearn', 'jax', 'cupy'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------
# spiral
# --------------------------------------------------------------------------


def test_spiral_shapes_and_dtypes():
    x, y = spiral(samples_per_class=50, classes=4, noise=0.1, seed=3)
    assert x.shape == (200, 2)
    assert y.shape == (200,)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)


def test_spiral_defaults():
    x, y = spiral()
    assert x.shape == (300, 2)
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])


def test_spiral_deterministic_per_seed():
    a = spiral(seed=7)
    b = spiral(seed=7)
    c = spiral(seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])


def test_spiral_class_balance_and_order():
    x, y = spiral(samples_per_class=30, classes=5)
    np.testing.assert_array_equal(np.bincount(y), [30] * 5)
    np.testing.assert_array_equal(y, np.repeat(np.arange(5), 30))


def test_spiral_radius_bound_and_formula():
    n = 40
    x, y = spiral(samples_per_class=n, classes=3, noise=0.0)
    radius = np.hypot(x[:, 0].astype(np.float64), x[:, 1].astype(np.float64))
    assert radius.max() <= 1.0 + 1e-6
    r = np.linspace(0.0, 1.0, n)
    np.testing.assert_allclose(radius, np.tile(r, 3), atol=1e-6)
    # noise=0 gives the exact textbook formula
    for c in range(3):
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n)
        expected = np.c_[r * np.sin(t * 2.5), r * np.cos(t * 2.5)]
        np.testing.assert_allclose(x[y == c], expected, rtol=1e-6, atol=1e-7)


def test_spiral_noise_matches_default_rng():
    n, noise, seed = 20, 0.3, 5
    x, _ = spiral(samples_per_class=n, classes=2, noise=noise, seed=seed)
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 1.0, n)
    for c in range(2):
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.standard_normal(n) * noise
        expected = np.c_[r * np.sin(t * 2.5), r * np.cos(t * 2.5)]
        np.testing.assert_allclose(x[c * n : (c + 1) * n], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"samples_per_class": 0}, r"samples_per_class .*received samples_per_class=0"),
        ({"samples_per_class": -3}, r"samples_per_class .*received samples_per_class=-3"),
        ({"samples_per_class": 2.5}, r"samples_per_class .*received samples_per_class=2\.5"),
        ({"samples_per_class": True}, r"samples_per_class .*received samples_per_class=True"),
        ({"classes": 0}, r"classes .*received classes=0"),
        ({"classes": "3"}, r"classes .*received classes='3'"),
        ({"noise": -0.1}, r"noise .*received noise=-0\.1"),
        ({"noise": float("nan")}, r"noise .*received noise=nan"),
        ({"noise": "0.2"}, r"noise .*received noise='0\.2'"),
        ({"seed": -1}, r"seed .*received seed=-1"),
        ({"seed": 1.5}, r"seed .*received seed=1\.5"),
    ],
)
def test_spiral_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        spiral(**kwargs)


def test_spiral_accepts_numpy_integers():
    x, y = spiral(samples_per_class=np.int64(4), classes=np.int32(2), seed=np.int64(1))
    assert x.shape == (8, 2)


# --------------------------------------------------------------------------
# train_test_split
# --------------------------------------------------------------------------


def test_train_test_split_deterministic_and_stratified():
    x, y = spiral(samples_per_class=40, classes=3)
    (xa, ya), (xb, yb) = train_test_split(x, y, test_fraction=0.25, seed=1)
    (xa2, ya2), (xb2, yb2) = train_test_split(x, y, test_fraction=0.25, seed=1)
    for p, q in ((xa, xa2), (ya, ya2), (xb, xb2), (yb, yb2)):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(np.bincount(yb), [10, 10, 10])
    np.testing.assert_array_equal(np.bincount(ya), [30, 30, 30])
    assert xa.dtype == np.float32 and ya.dtype == np.int64
    # a partition: every row exactly once
    rows = {tuple(r) for r in np.concatenate([xa, xb]).tolist()}
    assert rows == {tuple(r) for r in x.tolist()}
    # classes are interleaved, not in blocks
    assert not np.array_equal(ya, np.sort(ya))
    (_, _), (xc, _) = train_test_split(x, y, test_fraction=0.25, seed=2)
    assert not np.array_equal(xb, xc)


def test_train_test_split_unstratified():
    x = np.arange(10.0).reshape(10, 1)
    y = np.linspace(0, 1, 10)  # not class labels: fine without stratify
    (xa, ya), (xb, yb) = train_test_split(x, y, test_fraction=0.3, seed=0, stratify=False)
    assert xb.shape == (3, 1) and xa.shape == (7, 1)
    np.testing.assert_array_equal(xb[:, 0] / 9, yb)
    with pytest.raises(ValueError, match="stratify=False"):
        train_test_split(x, y, test_fraction=0.3, seed=0)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((np.zeros((4, 2)), np.zeros(5, dtype=int), 0.5, 0), r"same number of samples.*4 and 5"),
        ((np.zeros((4, 2)), np.zeros(4, dtype=int), 0.0, 0), r"received test_fraction=0\.0"),
        ((np.zeros((4, 2)), np.zeros(4, dtype=int), 1, 0), r"received test_fraction=1"),
        ((np.zeros((4, 2)), np.zeros(4, dtype=int), 0.5, -2), r"seed .*received seed=-2"),
        ((np.zeros((4, 2)), np.zeros(4, dtype=int), 0.01, 0), r"leaves the test split empty"),
        ((np.zeros((4, 2)), np.zeros(4, dtype=int), 0.99, 0), r"leaves the train split empty"),
    ],
)
def test_train_test_split_validation(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        train_test_split(*args)


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    pytest.importorskip("sklearn")
    return digits()


def test_digits_sizes_dtypes_range(digits_split):
    (xt, yt), (xs, ys) = digits_split
    assert xt.shape == (1438, 64) and xs.shape == (359, 64)
    assert yt.shape == (1438,) and ys.shape == (359,)
    assert xt.dtype == xs.dtype == np.float32
    assert yt.dtype == ys.dtype == np.int64
    for x in (xt, xs):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert max(xt.max(), xs.max()) == 1.0
    assert set(np.unique(np.concatenate([yt, ys]))) == set(range(10))


def test_digits_split_is_stratified_and_a_partition(digits_split):
    (xt, yt), (xs, ys) = digits_split
    from sklearn.datasets import load_digits

    data, target = load_digits(return_X_y=True)
    total = np.bincount(target, minlength=10)
    test_counts = np.bincount(ys, minlength=10)
    np.testing.assert_array_equal(test_counts, np.floor(total * 0.2 + 0.5).astype(int))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), total - test_counts)
    # every original image lands in exactly one split
    combined = np.concatenate([xt, xs]) * 16
    original = data.astype(np.float32)
    assert sorted(map(bytes, combined.astype(np.uint8))) == sorted(
        map(bytes, original.astype(np.uint8))
    )


def test_digits_split_is_fixed(digits_split):
    (xt, yt), (xs, ys) = digits_split
    (xt2, yt2), (xs2, ys2) = digits()
    for p, q in ((xt, xt2), (yt, yt2), (xs, xs2), (ys, ys2)):
        np.testing.assert_array_equal(p, q)
    # pinned so that the split never silently changes between releases/machines
    assert ys[:20].tolist() == [1, 9, 5, 3, 5, 6, 6, 6, 7, 7, 5, 9, 6, 9, 7, 4, 7, 4, 1, 5]
    assert float(xs.astype(np.float64).sum()) == 7025.8125
    assert float(xt.astype(np.float64).sum()) == 28081.5625


def test_digits_fixed_order_is_rng_independent():
    order = datasets._fixed_order(1000)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    np.testing.assert_array_equal(order, datasets._fixed_order(1000))
    assert not np.array_equal(order, np.arange(1000))


def test_digits_other_fraction():
    pytest.importorskip("sklearn")
    (xt, _), (xs, _) = digits(test_fraction=0.5)
    assert xt.shape[0] + xs.shape[0] == 1797
    assert abs(xs.shape[0] - 1797 / 2) <= 10


@pytest.mark.parametrize("bad", [0, 1.0, -0.1, float("nan"), "0.2"])
def test_digits_bad_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=bad)


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'tinynet\[digits\]'"):
        digits()


def test_available(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))  # no Fashion-MNIST there
    names = available()
    assert names[0] == "spiral"
    try:
        import sklearn  # noqa: F401
    except ImportError:
        assert names == ["spiral"]
    else:
        assert names == ["spiral", "digits"]
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    assert available() == ["spiral"]
    for stem in datasets.fashion.FILES:  # files need only exist: available() reads none
        (tmp_path / f"{stem}.gz").write_bytes(b"")
    assert available() == ["spiral", "fashion-mnist"]


def test_digits_as_images(digits_split):
    (x, y), (xt, yt) = digits(images=True)
    assert x.shape == (len(digits_split[0][0]), 8, 8, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x.reshape(len(x), 64), digits_split[0][0])
    np.testing.assert_array_equal(xt.reshape(len(xt), 64), digits_split[1][0])
    np.testing.assert_array_equal(y, digits_split[0][1])
    from sklearn.datasets import load_digits

    source = load_digits()  # .images: the (n, 8, 8) pictures the 64 features come from
    first = int(np.flatnonzero(np.all(source.data / 16 == x[0].reshape(64), axis=1))[0])
    np.testing.assert_array_equal(x[0, :, :, 0], (source.images[first] / 16).astype(np.float32))
    data = datasets.by_name("digits")  # the CLI's images; its MLP flattens them
    assert data.train[0].shape[1:] == (8, 8, 1)


# --------------------------------------------------------------------------
# load_npz: round trips
# --------------------------------------------------------------------------


def _mnist_like(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def _save(tmp_path: Path, name="data.npz", compressed=False, **arrays) -> Path:
    path = tmp_path / name
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_load_npz_mnist_layout(tmp_path, compressed):
    arrays = _mnist_like()
    path = _save(tmp_path, compressed=compressed, **arrays)
    (xt, yt), (xs, ys) = load_npz(path)
    assert xt.shape == (12, 784) and xs.shape == (5, 784)
    assert xt.dtype == xs.dtype == np.float32
    assert yt.dtype == ys.dtype == np.int64
    np.testing.assert_allclose(xt, arrays["x_train"].reshape(12, 784) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(xs, arrays["x_test"].reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yt, arrays["y_train"])
    np.testing.assert_array_equal(ys, arrays["y_test"])
    assert 0.0 <= xt.min() and xt.max() <= 1.0
    # str paths work too
    (xt2, _), _ = load_npz(str(path))
    np.testing.assert_array_equal(xt, xt2)


def test_load_npz_float_data_kept_unscaled(tmp_path):
    x = np.linspace(-3, 3, 24, dtype=np.float64).reshape(6, 4)
    path = _save(tmp_path, x_train=x, y_train=np.arange(6), x_test=x[:2], y_test=[0, 1])
    (xt, yt), (xs, ys) = load_npz(path)
    assert xt.dtype == np.float32
    np.testing.assert_allclose(xt, x.astype(np.float32))
    np.testing.assert_array_equal(ys, [0, 1])


def test_load_npz_x_y_layout_has_no_test_split(tmp_path):
    x = np.ones((5, 3), dtype=np.float32)
    path = _save(tmp_path, x=x, y=np.array([0, 1, 2, 1, 0]))
    train, test = load_npz(path)
    assert test is None
    np.testing.assert_array_equal(train[0], x)
    np.testing.assert_array_equal(train[1], [0, 1, 2, 1, 0])


def test_load_npz_custom_keys_and_train_only(tmp_path):
    path = _save(tmp_path, feats=np.zeros((3, 2)), labels=np.array([1, 0, 1]))
    train, test = load_npz(path, x_key="feats", y_key="labels", x_test_key=None, y_test_key=None)
    assert test is None and train[0].shape == (3, 2)
    with pytest.raises(ValueError, match="both be given or both be None"):
        load_npz(path, x_key="feats", y_key="labels", x_test_key=None)


def test_load_npz_integral_float_labels_cast(tmp_path):
    path = _save(tmp_path, x=np.zeros((3, 2)), y=np.array([0.0, 2.0, 1.0]))
    (_, y), _ = load_npz(path)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [0, 2, 1])


def test_load_npz_one_hot_labels_converted(tmp_path):
    onehot = np.eye(4, dtype=np.float32)[[3, 0, 2, 2, 1]]
    path = _save(tmp_path, x=np.zeros((5, 2)), y=onehot)
    (_, y), _ = load_npz(path)
    np.testing.assert_array_equal(y, [3, 0, 2, 2, 1])


def test_load_npz_column_labels_and_bool_labels(tmp_path):
    path = _save(tmp_path, x=np.zeros((3, 2)), y=np.array([[1], [0], [2]]))
    (_, y), _ = load_npz(path)
    np.testing.assert_array_equal(y, [1, 0, 2])
    path = _save(tmp_path, "b.npz", x=np.zeros((2, 2)), y=np.array([True, False]))
    (_, y), _ = load_npz(path)
    np.testing.assert_array_equal(y, [1, 0])
    assert y.dtype == np.int64


def test_load_npz_higher_rank_images_flattened(tmp_path):
    path = _save(tmp_path, x=np.zeros((4, 8, 8, 3), dtype=np.uint8), y=np.zeros(4, np.int32))
    (x, _), _ = load_npz(path)
    assert x.shape == (4, 192)


# --------------------------------------------------------------------------
# load_npz: validation errors
# --------------------------------------------------------------------------


def test_load_npz_missing_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_npz(missing)


def test_load_npz_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_npz(tmp_path)


def test_load_npz_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a numpy file at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.npz is not a readable \.npz archive"):
        load_npz(path)


def test_load_npz_truncated_archive(tmp_path):
    good = _save(tmp_path, **_mnist_like())
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match=r"truncated\.npz"):
        load_npz(bad)


def test_load_npz_corrupt_member(tmp_path):
    path = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00garbage header that is not valid")
        zf.writestr("y.npy", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(ValueError, match=r"corrupt\.npz: array 'x' is corrupt or unreadable"):
        load_npz(path)


def test_load_npz_corrupt_compressed_data(tmp_path):
    good = _save(tmp_path, compressed=True, x=np.arange(2000.0).reshape(1000, 2), y=np.zeros(1000))
    raw = bytearray(good.read_bytes())
    mid = len(raw) // 3
    raw[mid : mid + 64] = bytes(64)  # stomp on deflate data
    bad = tmp_path / "stomped.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"stomped\.npz"):
        load_npz(bad)


def test_load_npz_single_npy_refused(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"single\.npy is a single \.npy array, not an \.npz"):
        load_npz(path)


def test_load_npz_missing_keys_lists_missing_and_present(tmp_path):
    arrays = _mnist_like()
    del arrays["x_test"], arrays["y_test"]
    path = _save(tmp_path, extra=np.zeros(2), **arrays)
    with pytest.raises(ValueError, match=r"missing array\(s\) 'x_test', 'y_test'") as info:
        load_npz(path)
    msg = str(info.value)
    assert "data.npz" in msg
    assert "it contains 'extra', 'x_train', 'y_train'" in msg


def test_load_npz_no_known_keys(tmp_path):
    path = _save(tmp_path, a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(ValueError, match=r"missing array\(s\) 'x_train', 'y_train', 'x_test', "):
        load_npz(path)


def test_load_npz_empty_archive(tmp_path):
    path = tmp_path / "empty.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    with pytest.raises(ValueError, match="it contains no arrays"):
        load_npz(path)


def test_load_npz_length_mismatch(tmp_path):
    arrays = _mnist_like()
    arrays["y_test"] = arrays["y_test"][:-1]
    path = _save(tmp_path, **arrays)
    with pytest.raises(ValueError, match=r"'x_test' has 5 samples but 'y_test' has 4 labels"):
        load_npz(path)


def test_load_npz_feature_mismatch(tmp_path):
    arrays = _mnist_like()
    arrays["x_test"] = arrays["x_test"][:, :27, :]
    path = _save(tmp_path, **arrays)
    with pytest.raises(ValueError, match=r"784 features .* 'x_test' has 756"):
        load_npz(path)


def test_load_npz_mixed_uint8_and_float(tmp_path):
    arrays = _mnist_like()
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    path = _save(tmp_path, **arrays)
    with pytest.raises(
        ValueError, match=r"'x_train' has dtype uint8 but 'x_test' has dtype float32"
    ):
        load_npz(path)


@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        (np.array([0.0, 1.5, 2.0]), r"'y' contains non-integer labels, e.g. .*1\.5.* index 1"),
        (np.array([0.0, np.nan, 2.0]), r"'y' contains NaN or Inf labels"),
        (np.array([0, -1, 2]), r"'y' contains negative labels \(minimum -1\)"),
        (np.array([0.0, -2.0, 1.0]), r"'y' contains negative labels"),
        (np.array([0.0, 1e30, 1.0]), r"'y' contains labels too large"),
        (np.array(["a", "b", "c"]), r"'y' must hold integer class labels, got dtype <U1"),
        (np.array([1 + 0j, 0j, 0j]), r"'y' must hold integer class labels, got dtype complex"),
        (np.array([[1, 0], [1, 1], [0, 1]]), r"'y' has shape \(3, 2\) but is not one-hot"),
        (np.array([[0.5, 0.5], [1, 0], [0, 1]]), r"not one-hot"),
        (np.array([[0, 0], [1, 0], [0, 1]]), r"not one-hot"),
        (np.zeros((3, 2, 2), dtype=int), r"'y' must be 1-D class indices or 2-D one-hot"),
    ],
)
def test_load_npz_bad_labels(tmp_path, y, pattern):
    path = _save(tmp_path, x=np.zeros((3, 2)), y=y)
    with pytest.raises(ValueError, match=pattern) as info:
        load_npz(path)
    assert "data.npz" in str(info.value)


@pytest.mark.parametrize(
    ("x", "pattern"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3, 4]]), r"'x' contains 1 NaN or Inf .* sample 0"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [3, -np.inf]]), r"'x' contains 2 NaN or Inf"),
        (np.array([[0.0, 1.0], [1e300, 2.0], [3, 4]]), r"'x' contains 1 NaN or Inf"),
        (np.array([1.0, 2.0, 3.0]), r"'x' must have shape \(samples, features...\)"),
        (np.array([["a"], ["b"], ["c"]]), r"'x' must hold real numbers, got dtype <U1"),
        (np.zeros((3, 2), dtype=complex), r"'x' must hold real numbers, got dtype complex"),
        (np.zeros((3, 0)), r"'x' is empty \(shape \(3, 0\)\)"),
    ],
)
def test_load_npz_bad_features(tmp_path, x, pattern):
    path = _save(tmp_path, x=x, y=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=pattern) as info:
        load_npz(path)
    assert "data.npz" in str(info.value)


def test_load_npz_empty_arrays(tmp_path):
    arrays = _mnist_like()
    arrays["x_train"] = arrays["x_train"][:0]
    arrays["y_train"] = arrays["y_train"][:0]
    path = _save(tmp_path, **arrays)
    with pytest.raises(ValueError, match=r"'x_train' is empty \(shape \(0, 28, 28\)\)"):
        load_npz(path)
    path = _save(tmp_path, "y.npz", x=np.zeros((2, 2)), y=np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"'y' is empty"):
        load_npz(path)


# --------------------------------------------------------------------------
# load_npz: pickle is never executed
# --------------------------------------------------------------------------


class _Booby:
    """Unpickling this creates the directory ``marker`` (a visible side effect)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_payload_would_run_if_unpickled(tmp_path):
    # control: the booby trap is live, so the tests below mean something
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Booby(marker)))
    assert marker.is_dir()


@pytest.mark.parametrize("key", ["x_train", "y_train"])
def test_load_npz_refuses_pickled_object_array(tmp_path, key):
    marker = tmp_path / "pwned"
    arrays = _mnist_like()
    trap = np.empty(arrays[key].shape[0], dtype=object)
    trap[:] = [_Booby(marker)] * trap.shape[0]
    arrays[key] = trap
    path = tmp_path / "evil.npz"
    np.savez(path, allow_pickle=True, **arrays)
    with pytest.raises(ValueError, match=rf"evil\.npz: array '{key}' is an object array.*pickled"):
        load_npz(path)
    assert not marker.exists()


def test_load_npz_refuses_plain_pickle_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"x_train": _Booby(marker)}))
    with pytest.raises(ValueError, match=r"evil\.npz is not a readable \.npz archive"):
        load_npz(path)
    assert not marker.exists()


def test_load_npz_refuses_pickled_npy(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    trap = np.empty(1, dtype=object)
    trap[0] = _Booby(marker)
    np.save(path, trap, allow_pickle=True)
    with pytest.raises(ValueError, match=r"evil\.npy"):
        load_npz(path)
    assert not marker.exists()
