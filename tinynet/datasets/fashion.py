"""Fashion-MNIST (28x28 grey-scale clothing images, 10 classes) from IDX files
already on this machine, plain or gzip-compressed; nothing is downloaded.  The
files are looked for in the folder given, else only in ``TINYNET_DATA`` when
set (each directly or in a ``fashion-mnist/`` subfolder), else in the folder of
the Debian/Ubuntu package ``dataset-fashion-mnist``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .files import Split
from .idx import load_idx

__all__ = ["DEBIAN_FOLDER", "ENV_VAR", "FILES", "fashion_mnist", "find_folder"]

ENV_VAR = "TINYNET_DATA"
SUBFOLDER = "fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"  # where that package puts the files
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SAMPLES = {"train": 60_000, "t10k": 10_000}
IMAGE_SHAPE = (28, 28)
CLASSES = 10
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _file_in(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def find_folder(path: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The paths of the four Fashion-MNIST files, by stem (``FILES``).  Raises
    ``FileNotFoundError`` saying where it looked (and which files a folder
    holding only some lacks) and how to get the files."""
    env = os.environ.get(ENV_VAR)
    if path is not None:
        base, why = Path(path), f"the folder given, {os.fspath(path)}"
    elif env:
        base, why = Path(env), f"{ENV_VAR}={env}"
    else:
        base, why = None, f"the {DEBIAN_PACKAGE} package's folder"
    folders = [Path(DEBIAN_FOLDER)] if base is None else [base, base / SUBFOLDER]
    partial = []
    for folder in folders:
        found = {stem: _file_in(folder, stem) for stem in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
        if any(found.values()):
            missing = ", ".join(s + ".gz" for s, p in found.items() if p is None)
            partial.append(f"{folder} lacks {missing}")
    looked = " and ".join(str(f) for f in folders)
    detail = f" ({'; '.join(partial)})" if partial else ""
    raise FileNotFoundError(
        f"Fashion-MNIST not found: looked in {looked} ({why}){detail}. "
        f"Install it with: apt-get install {DEBIAN_PACKAGE} (Debian/Ubuntu), or put the "
        f"four files {', '.join(s + '.gz' for s in FILES)} from the Fashion-MNIST project "
        f"(github.com/zalandoresearch/fashion-mnist) in a folder and set {ENV_VAR} to it. "
        "tinynet never downloads data."
    )


def _split(images_path: Path, labels_path: Path, n: int) -> Split:
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, 28, 28), found "
            f"{images.dtype} of shape {images.shape}; this is not a Fashion-MNIST image file"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (n,), found {labels.dtype} of "
            f"shape {labels.shape}; this is not a Fashion-MNIST label file"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; they must agree (the two files come from "
            "different downloads?)"
        )
    if labels.size and labels.max() >= CLASSES:
        bad = int(np.flatnonzero(labels >= CLASSES)[0])
        raise ValueError(
            f"{labels_path}: label {int(labels[bad])} at index {bad} is outside 0..9; "
            "the file is corrupt or from another dataset"
        )
    if images.shape[0] != n:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images; Fashion-MNIST's split has {n:,}. "
            "The file is incomplete or from another dataset"
        )
    x = (images.astype(np.float32) / np.float32(255.0))[..., None]
    return x, labels.astype(np.int64)


def fashion_mnist(path: str | os.PathLike[str] | None = None) -> tuple[Split, Split]:
    """The published splits (60,000 and 10,000 images) as ``((x_train, y_train),
    (x_test, y_test))``: ``x`` float32 pixel / 255 of shape ``(n, 28, 28, 1)``,
    ``y`` int64 in ``0..9`` (``CLASS_NAMES``); ``path`` a folder with the four
    ``FILES`` (default: see the module).  Raises ``FileNotFoundError`` (see
    :func:`find_folder`), else ``ValueError`` naming the file for a corrupt or
    incomplete file, image/label counts that disagree or a label outside 0..9."""
    files = list(find_folder(path).values())  # in the order of FILES
    return _split(*files[:2], SAMPLES["train"]), _split(*files[2:], SAMPLES["t10k"])


def found() -> bool:
    """Whether :func:`fashion_mnist` would find its four files (not reading them)."""
    try:
        find_folder()
    except FileNotFoundError:
        return False
    return True
