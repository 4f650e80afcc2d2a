"""CuPy backend (NVIDIA GPU) through ``array_api_compat.cupy``.

Untested on the development machines (no GPU there); the same array-API calls
are exercised by the ``strict`` and ``jax`` backends.
"""

from __future__ import annotations

from . import Backend, BackendUnavailableError, missing_package


def load() -> Backend:
    try:
        import cupy
    except ImportError:
        raise missing_package("cupy", "cupy-cuda12x") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError, driver missing, ...
        count, why = 0, f" ({type(err).__name__}: {err})"
    else:
        why = ""
    if count == 0:
        raise BackendUnavailableError(
            f"tinynet backend 'cupy': no CUDA device was found{why}; run on a "
            "machine with an NVIDIA GPU and driver, or pick another backend "
            "(TINYNET_BACKEND=numpy or jax)"
        )
    import array_api_compat.cupy as xp

    device = cupy.cuda.Device()
    return Backend(
        name="cupy",
        xp=xp,
        device=device,
        version=cupy.__version__,
        _to_numpy=cupy.asnumpy,
        _sync=lambda: cupy.cuda.get_current_stream().synchronize(),
        description=f"CUDA device {device.id}",
    )
