"""tinynet.datasets.load_idx and fashion_mnist: host-only tests (no backend
fixture).  IDX files are written here with ``struct`` and NumPy's big-endian
dtypes, independently of the reader; the real Fashion-MNIST files are read
when installed (Debian's ``dataset-fashion-mnist``) and skipped otherwise."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tinynet import datasets
from tinynet.datasets import fashion, fashion_mnist, load_idx

# type byte -> big-endian dtype, from the IDX format's description
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
STRUCT = {0x08: ">B", 0x09: ">b", 0x0B: ">h", 0x0C: ">i", 0x0D: ">f", 0x0E: ">d"}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """An IDX file holding ``array`` (type from its dtype unless ``code``)."""
    if code is None:
        code = next(c for c, d in CODES.items() if np.dtype(d).newbyteorder("=") == array.dtype)
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=CODES[code]).tobytes()


def write(path: Path, blob: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
    return path


def sample(code: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values spanning the type's range (both extremes included)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(CODES[code]).newbyteorder("=")
    if dtype.kind == "f":
        x = rng.normal(scale=1e3, size=shape).astype(dtype)
        x.flat[:2] = [np.finfo(dtype).max, np.finfo(dtype).tiny]
        return x
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    x.flat[:2] = [info.min, info.max]
    return x


# --------------------------------------------------------------------------
# load_idx: round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("code", sorted(CODES), ids=[f"0x{c:02X}" for c in sorted(CODES)])
def test_load_idx_every_type_code(tmp_path, code, compress):
    expected = sample(code, (3, 4, 5))
    got = load_idx(write(tmp_path / "a.idx", idx_bytes(expected, code), compress))
    assert got.dtype == np.dtype(CODES[code]).newbyteorder("=")  # native order
    assert got.dtype.isnative and got.flags.writeable
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, expected)
    if expected.dtype.itemsize > 1:  # the bytes on disk really are big-endian
        raw = (tmp_path / "a.idx").read_bytes()
        raw = gzip.decompress(raw) if compress else raw
        first = raw[4 + 4 * 3 : 4 + 4 * 3 + expected.dtype.itemsize]
        assert first == struct.pack(STRUCT[code], expected.flat[0].item())


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 1, 3, 2), (0, 28, 28), (1,)])
def test_load_idx_shapes(tmp_path, shape):
    expected = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    got = load_idx(write(tmp_path / "a", idx_bytes(expected)))
    assert got.shape == shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_gzip_is_recognised_by_its_magic_not_its_name(tmp_path):
    x = sample(0x0C, (4, 6))
    plain_named_gz = write(tmp_path / "plain.gz", idx_bytes(x))
    gzip_named_plain = write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(x), compress=True)
    np.testing.assert_array_equal(load_idx(plain_named_gz), x)
    np.testing.assert_array_equal(load_idx(gzip_named_plain), x)
    np.testing.assert_array_equal(load_idx(str(gzip_named_plain)), x)  # str paths too


def test_load_idx_reads_a_gzip_header_the_other_tool_wrote(tmp_path):
    """A gzip stream with a file name in its header (as ``gzip FILE`` writes)."""
    x = sample(0x08, (5, 28, 28))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with open(path, "wb") as raw, gzip.GzipFile("t10k-images-idx3-ubyte", "wb", 9, raw) as gz:
        gz.write(idx_bytes(x))
    np.testing.assert_array_equal(load_idx(path), x)


# --------------------------------------------------------------------------
# load_idx: bad files
# --------------------------------------------------------------------------

GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))  # 4 + 12 + 48 bytes

BAD_FILES = [
    ("empty", b"", ["truncated", "4-byte IDX magic"]),
    ("three-bytes", b"\x00\x00\x08", ["truncated", "3 byte(s)"]),
    ("npy", b"\x93NUMPY\x01\x00" + b"\x00" * 40, ["not an IDX file", "93 4e"]),
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ["not an IDX file"]),
    ("unknown-type", b"\x00\x00\x0a\x01" + struct.pack(">I", 3) + b"abc", ["type byte 0x0A"]),
    ("zero-dims", b"\x00\x00\x08\x00", ["0 dimensions"]),
    ("short-header", GOOD[:10], ["truncated", "3 dimensions", "only 6 byte(s)"]),
    ("short-data", GOOD[:-1], ["truncated", "shape (2, 3, 4)", "48 bytes", "only 47"]),
    ("no-data", GOOD[:16], ["truncated", "only 0 byte(s)"]),
    ("trailing-bytes", GOOD + b"\x00", ["longer than its header declares"]),
    (
        "huge-declared-size",
        b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**31, 2**31, 2**31) + b"\x00" * 8,
        ["truncated", "only 8 byte(s)"],
    ),
]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("name", "blob", "says"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_idx_files_are_named_and_explained(tmp_path, name, blob, says, compress):
    path = write(tmp_path / f"{name}.idx", blob, compress)
    with pytest.raises(ValueError) as err:
        load_idx(path)
    message = str(err.value)
    assert str(path) in message
    if compress and "truncated" in says:
        assert "truncated gzip-compressed IDX file" in message
    for text in says:
        assert text in message


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(GOOD, mtime=0)
    path = write(tmp_path / "cut.gz", blob[: len(blob) - 12])  # the stream stops early
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt or truncated gzip data"):
        load_idx(path)


def test_corrupt_gzip_stream(tmp_path):
    blob = bytearray(gzip.compress(GOOD, mtime=0))
    blob[-8] ^= 0xFF  # the CRC-32 of the data
    path = write(tmp_path / "crc.gz", bytes(blob))
    with pytest.raises(ValueError, match=r"crc\.gz: corrupt or truncated gzip data.*CRC"):
        load_idx(path)
    path = write(tmp_path / "garbage.gz", b"\x1f\x8b" + b"\xff" * 40)
    with pytest.raises(ValueError, match=r"garbage\.gz: corrupt or truncated gzip data"):
        load_idx(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.gz")
    with pytest.raises(ValueError, match="is a folder"):
        load_idx(tmp_path)


# --------------------------------------------------------------------------
# fashion_mnist on fake folders
# --------------------------------------------------------------------------


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels tell sample and position apart, labels 0..9."""
    rows = np.arange(n, dtype=np.int64)[:, None]
    images = ((rows * 7 + seed + np.arange(784)) % 256).astype(np.uint8).reshape(n, 28, 28)
    labels = ((rows[:, 0] * 3 + seed) % 10).astype(np.uint8)
    return images, labels


def write_folder(folder: Path, n_train=60_000, n_test=10_000, compress=False, **replace) -> Path:
    """The four files in ``folder``; ``replace`` swaps one by stem for bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(fashion.FILES, (*fake_split(n_train, 1), *fake_split(n_test, 2))))
    suffix = ".gz" if compress else ""
    for stem, array in arrays.items():
        blob = replace.get(stem.replace("-", "_"), None)
        write(folder / (stem + suffix), idx_bytes(array) if blob is None else blob, compress)
    return folder


@pytest.fixture(scope="module")
def fake_full(tmp_path_factory):
    """Full-size fake Fashion-MNIST, plain IDX files (written once per module)."""
    return write_folder(tmp_path_factory.mktemp("fake") / "data")


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(fashion.ENV_VAR, raising=False)


def linked(src: Path, dst: Path, suffix: str = "") -> Path:
    """``dst`` holding symbolic links to the four files of ``src`` (named + suffix)."""
    dst.mkdir(parents=True)
    for stem in fashion.FILES:
        (dst / (stem + suffix)).symlink_to(src / stem)
    return dst


def check_fake(result) -> None:
    (x, y), (xt, yt) = result
    assert x.shape == (60_000, 28, 28, 1) and xt.shape == (10_000, 28, 28, 1)
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    for (images, labels), got_x, got_y in (
        (fake_split(60_000, 1), x, y),
        (fake_split(10_000, 2), xt, yt),
    ):
        np.testing.assert_array_equal(got_x[..., 0], images.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(got_y, labels)
    assert x.min() == 0.0 and x.max() == 1.0


def test_fashion_mnist_from_the_path_argument(fake_full, no_env):
    check_fake(fashion_mnist(str(fake_full)))


def test_fashion_mnist_in_a_fashion_mnist_subfolder_and_named_gz(fake_full, tmp_path, no_env):
    # gz names on plain files: load_idx goes by the bytes, not the name
    linked(fake_full, tmp_path / "fashion-mnist", suffix=".gz")
    check_fake(fashion_mnist(tmp_path))


def test_fashion_mnist_from_tinynet_data(fake_full, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", str(fake_full))
    check_fake(fashion_mnist())
    linked(fake_full, tmp_path / "fashion-mnist")
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    check_fake(fashion_mnist())
    assert "fashion-mnist" in datasets.available()
    data = datasets.by_name("fashion-mnist")
    assert (data.name, data.spec, data.note) == ("fashion-mnist", "fashion-mnist", "")
    assert data.train[0].shape == (60_000, 28, 28, 1) and data.test[1].shape == (10_000,)


def test_the_argument_wins_over_tinynet_data(fake_full, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path / "empty"))
    check_fake(fashion_mnist(fake_full))


def test_tinynet_data_is_the_only_place_looked_when_set(tmp_path, monkeypatch):
    """A folder the user names is never silently replaced by the system copy."""
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist()
    message = str(err.value)
    assert f"looked in {tmp_path} and {tmp_path / 'fashion-mnist'}" in message
    assert f"TINYNET_DATA={tmp_path}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "fashion-mnist" not in datasets.available()


def test_not_installed_anywhere(tmp_path, monkeypatch, no_env):
    monkeypatch.setattr(fashion, "DEBIAN_FOLDER", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist()
    message = str(err.value)
    assert (
        f"looked in {tmp_path / 'absent'} (the dataset-fashion-mnist package's folder)" in message
    )
    assert "set TINYNET_DATA" in message and "never downloads" in message
    assert datasets.available()[-1] != "fashion-mnist"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.by_name("fashion-mnist")


def test_a_folder_with_some_of_the_files_says_which_are_missing(fake_full, tmp_path, no_env):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").symlink_to(fake_full / "train-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist(folder)
    assert f"{folder} lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz" in str(err.value)


def tiny(tmp_path: Path, **replace) -> Path:
    return write_folder(tmp_path / "tiny", n_train=6, n_test=4, compress=True, **replace)


def test_wrong_counts_are_refused(tmp_path, no_env):
    with pytest.raises(ValueError) as err:
        fashion_mnist(tiny(tmp_path))
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz holds 6 images" in message and "60,000" in message


def test_images_and_labels_must_agree(tmp_path, no_env):
    labels = idx_bytes(np.zeros(5, dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"holds 6 images but .*train-labels-idx1-ubyte\.gz holds 5"
    ):
        fashion_mnist(tiny(tmp_path, train_labels_idx1_ubyte=labels))


def test_out_of_range_labels_are_refused(tmp_path, no_env):
    labels = idx_bytes(np.array([0, 1, 9, 10, 2, 3], dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"labels-idx1-ubyte\.gz: label 10 at index 3 is outside 0\.\.9"
    ):
        fashion_mnist(tiny(tmp_path, train_labels_idx1_ubyte=labels))


@pytest.mark.parametrize(
    ("stem", "array", "says"),
    [
        (
            "train_images_idx3_ubyte",
            np.zeros((6, 32, 32), np.uint8),
            "(n, 28, 28), found uint8 of shape (6, 32, 32)",
        ),
        ("train_images_idx3_ubyte", np.zeros((6, 28, 28), np.float32), "found float32"),
        (
            "train_labels_idx1_ubyte",
            np.zeros(6, np.int32),
            "uint8 labels of shape (n,), found int32",
        ),
        ("train_labels_idx1_ubyte", np.zeros((6, 1), np.uint8), "found uint8 of shape (6, 1)"),
    ],
)
def test_files_of_the_wrong_kind_are_refused(tmp_path, no_env, stem, array, says):
    with pytest.raises(ValueError) as err:
        fashion_mnist(tiny(tmp_path, **{stem: idx_bytes(array)}))
    assert says in str(err.value)


def test_a_corrupt_file_names_itself(tmp_path, no_env):
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: truncated"):
        fashion_mnist(tiny(tmp_path, train_images_idx3_ubyte=GOOD[:-3]))


# --------------------------------------------------------------------------
# the real files (Debian's dataset-fashion-mnist, or TINYNET_DATA)
# --------------------------------------------------------------------------


def independent_read(path: Path) -> np.ndarray:
    """The Fashion-MNIST project's own recipe (utils/mnist_reader.py): skip
    the 16- or 8-byte header of a gzip file and take the rest as uint8."""
    offset = 16 if "images" in path.name else 8
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def real():
    try:
        files = fashion.find_folder()
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed here ({err})")
    return files, fashion_mnist()


def test_real_fashion_mnist_shapes_dtypes_and_range(real):
    _, ((x, y), (xt, yt)) = real
    assert x.shape == (60_000, 28, 28, 1) and xt.shape == (10_000, 28, 28, 1)
    assert y.shape == (60_000,) and yt.shape == (10_000,)
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and xt.min() == 0.0 and xt.max() == 1.0


def test_real_fashion_mnist_labels_are_balanced(real):
    _, ((_, y), (_, yt)) = real
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [1000] * 10)
    assert list(y[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the first is an ankle boot
    assert list(yt[:10]) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


# pixel sums and SHA-256 of the raw uint8 pixels of the published files
CHECKSUMS = {
    "train-images-idx3-ubyte": (
        3_431_114_169,
        76_247,
        "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    ),
    "t10k-images-idx3-ubyte": (
        573_469_082,
        33_456,
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    ),
}


def test_real_fashion_mnist_pixel_checksums(real):
    files, ((x, _), (xt, _)) = real
    for stem, images in (("train-images-idx3-ubyte", x), ("t10k-images-idx3-ubyte", xt)):
        total, first, sha = CHECKSUMS[stem]
        pixels = np.rint(images * 255).astype(np.uint8)
        np.testing.assert_array_equal(images, pixels.astype(np.float32) / np.float32(255))
        assert int(pixels.sum(dtype=np.int64)) == total
        assert int(pixels[0].sum(dtype=np.int64)) == first
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == sha
        if files[stem].suffix == ".gz":
            np.testing.assert_array_equal(independent_read(files[stem]), pixels.reshape(-1))
