"""NumPy backend (CPU): ``xp`` is ``numpy`` itself; first load tunes glibc's malloc."""

from __future__ import annotations

import os
import sys

import numpy as np

from . import BackendUnavailableError
from .ops import Ops, _window_views

MALLOC_ENV = "TINYNET_MALLOC_TUNE"


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap (``TINYNET_MALLOC_TUNE=0``: don't); True if done."""
    if os.environ.get(MALLOC_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD (malloc.h), in MiB
    for param, mib in ((-3, 256), (-1, 512), (-2, 64)):
        mallopt(param, mib * 1024 * 1024)
    return True


class NumpyOps(Ops):
    name = "numpy"
    host_memory = True

    def asarray(self, data, dtype=None):
        return np.asarray(data, dtype=None if dtype is None else self.dtype(dtype))

    def ignore_fp_errors(self):
        return np.errstate(all="ignore")

    def scatter_add(self, indices, values, rows):
        # np.add.at: an unbuffered scatter, no (rows, len(indices)) one-hot matrix
        out = np.zeros((rows, values.shape[1]), dtype=values.dtype)
        np.add.at(out, indices, values)
        return out

    def max_pool(self, x, window, strides):
        # in-place ufuncs, not one `where` per window element over fresh arrays (same results)
        views = _window_views(x, window, strides, (1,) * len(window))
        y = views[0].copy()
        for view in views[1:]:
            np.maximum(y, view, out=y)
        # which = the number of leading window elements that are not the maximum
        notyet = np.not_equal(views[0], y)
        which = notyet.astype(np.int32)
        differs = np.empty(y.shape, dtype=bool)
        for view in views[1:-1]:
            np.not_equal(view, y, out=differs)
            np.logical_and(notyet, differs, out=notyet)
            np.add(which, notyet, out=which)
        if np.issubdtype(y.dtype, np.inexact):  # a NaN maximum equals nothing: p = 0
            which[np.isnan(y)] = 0
        return y, which


def load() -> NumpyOps:
    if int(np.__version__.split(".")[0]) < 2:
        raise BackendUnavailableError(
            f"tinynet needs numpy >= 2 (found {np.__version__}); "
            "upgrade with: pip install -U 'numpy>=2'"
        )
    tune_allocator()
    return NumpyOps(np, "cpu", np.__version__, "CPU")
