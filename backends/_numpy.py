"""NumPy backend (CPU).

NumPy >= 2 implements the array API in its main namespace, so ``xp`` is
``numpy`` itself (with direct-ufunc reductions, see ``_numpy_xp``): the
``array_api_compat.numpy`` wrapper would add a Python call to every
operation, which is most of the step time of a small model.  The ``strict``
backend proves the shared code uses only standard calls.
"""

from __future__ import annotations

import numpy as np

from . import Backend


def _tune_allocator() -> None:
    # glibc returns freed blocks above the mmap threshold (128 KiB) to the OS
    # and page-faults them back in on the next step; for an MLP that is most
    # of the step time at MNIST size.  Keep freed memory in the heap instead
    # (what PyTorch's and XLA's allocators do).  Opt out: TINYNET_MALLOC_TUNE=0.
    import ctypes
    import ctypes.util
    import os
    import sys

    if os.environ.get("TINYNET_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024)
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024)
    mallopt(M_TOP_PAD, 64 * 1024 * 1024)


def load() -> Backend:
    if int(np.__version__.split(".")[0]) < 2:
        from . import BackendUnavailableError

        raise BackendUnavailableError(
            f"tinynet needs numpy >= 2 (found {np.__version__}); "
            "upgrade with: pip install -U 'numpy>=2'"
        )
    _tune_allocator()
    from . import _numpy_kernels, _numpy_xp

    return Backend(
        name="numpy",
        xp=_numpy_xp,
        device="cpu",
        version=np.__version__,
        _to_numpy=np.asarray,
        kernels=_numpy_kernels,
        fused=_numpy_kernels,  # relu_grad, one_hot, threefry_words, argmax_hits
        description="CPU",
    )
