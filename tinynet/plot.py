"""Training curves (and decision regions for 2-D data) as an image, with matplotlib."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'tinynet[plot]'") from None
    return plt


def check_path(path: str) -> None:
    """Raise now, before a run, if :func:`plot_training` could not write an
    image to ``path``: matplotlib missing or an image type it does not know."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    extension = os.path.splitext(path)[1].lower()
    if extension[1:] not in FigureCanvasBase.get_supported_filetypes():
        what = f"{extension} is not an image type matplotlib writes"
        what = what if extension else "the name has no file extension"
        raise ValueError(f"--plot {path}: {what}; use a name ending in .png, .pdf or .svg")


def plot_training(history: Any, path: str, model: Any = None, data: tuple | None = None) -> None:
    """Write loss and accuracy per epoch (train and validation) to ``path``; with
    ``model`` and 2-D ``data=(x, y)``, a third panel of its decision regions."""
    plt = _pyplot()
    h = history.history
    regions = model is not None and data is not None and data[0].shape[1] == 2
    panels = 3 if regions else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    epochs = np.arange(1, len(history.epoch) + 1)
    for ax, key in zip(axes[:2], ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in h:
                ax.plot(epochs, h[prefix + key], style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if regions:
        from . import to_numpy

        x, y = data
        ax = axes[2]
        lo, hi = x.min(axis=0) - 0.1, x.max(axis=0) + 0.1
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
        z = to_numpy(model.predict(grid)).argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, z, alpha=0.3, cmap="brg")
        ax.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="brg")
        ax.set_title("decision regions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
