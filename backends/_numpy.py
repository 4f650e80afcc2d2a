"""NumPy backend (CPU).

NumPy >= 2 implements the array API in its main namespace, so ``xp`` is
``numpy`` itself: the ``array_api_compat.numpy`` wrapper would add a Python
call to every operation, which is most of a small model's step.  The
``strict`` backend proves the shared code uses only standard calls.

Memory for speed, on first use: glibc returns freed blocks above its mmap
threshold (128 KiB) to the OS and page-faults them back in on the next step,
which dominates a training step at MNIST size (PyTorch's and XLA's
allocators keep their memory instead).  When this backend is first loaded,
tinynet asks glibc to keep freed memory in the heap (``mallopt``).  This
only trades memory for speed; ``TINYNET_MALLOC_TUNE=0`` turns it off.
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np

from .ops import Ops, _window_slice, window_output

MALLOC_ENV = "TINYNET_MALLOC_TUNE"


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap; True if it was done."""
    if os.environ.get(MALLOC_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024)
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024)
    mallopt(M_TOP_PAD, 64 * 1024 * 1024)
    return True


class NumpyOps(Ops):
    name = "numpy"
    host_memory = True

    def asarray(self, data, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        return np.asarray(data, dtype=dtype)

    def ignore_fp_errors(self):
        return np.errstate(all="ignore")

    def scatter_add(self, indices, values, rows):
        # np.add.at: an unbuffered scatter, no (rows, len(indices)) one-hot matrix
        out = np.zeros((rows, values.shape[1]), dtype=values.dtype)
        np.add.at(out, indices, values)
        return out

    # Max pooling: the portable op finds the first maximum's index with one
    # `where` per window element over fresh arrays; NumPy has in-place ufuncs
    # to count it instead.  Same results, the first maximum winning on ties.
    # (An in-place max_pool_backward was tried: below the 10% bar, dropped.)

    def max_pool(self, x, window, strides):
        ones = (1,) * len(window)
        out = window_output(x.shape[1:-1], window, strides, ones)
        offsets = itertools.product(*map(range, window))
        views = [x[_window_slice(offset, out, strides, ones)] for offset in offsets]
        y = views[0].copy()
        for view in views[1:]:
            np.maximum(y, view, out=y)
        # which = the number of leading window elements that are not the
        # maximum: the first maximum's index, no where/copyto over the views
        notyet = np.not_equal(views[0], y)
        which = notyet.astype(np.int32)
        differs = np.empty(y.shape, dtype=bool)
        for view in views[1:-1]:
            np.not_equal(view, y, out=differs)
            np.logical_and(notyet, differs, out=notyet)
            np.add(which, notyet, out=which)
        if np.issubdtype(y.dtype, np.inexact):  # a NaN maximum equals nothing: p = 0
            nan = np.isnan(y)
            if nan.any():
                which[nan] = 0
        return y, which


def load() -> NumpyOps:
    if int(np.__version__.split(".")[0]) < 2:
        from . import BackendUnavailableError

        raise BackendUnavailableError(
            f"tinynet needs numpy >= 2 (found {np.__version__}); "
            "upgrade with: pip install -U 'numpy>=2'"
        )
    tune_allocator()
    return NumpyOps(np, "cpu", np.__version__, "CPU")
