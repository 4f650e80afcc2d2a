"""CuPy backend (NVIDIA GPU) through ``array_api_compat.cupy``: the portable ops (no GPU tests)."""

from __future__ import annotations

from . import BackendUnavailableError
from .ops import Ops


class CupyOps(Ops):
    name = "cupy"

    def to_numpy(self, a):
        import cupy

        return cupy.asnumpy(a)

    def synchronize(self):
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def load(device: str | None = None) -> CupyOps:
    import cupy

    count, why = 0, ""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError, driver missing, ...
        why = f" ({type(err).__name__}: {err})"
    if count == 0:
        raise BackendUnavailableError(
            f"tinynet backend 'cupy': no CUDA device was found{why}; run on a "
            "machine with an NVIDIA GPU and driver, or pick another backend "
            "(TINYNET_BACKEND=numpy or jax)"
        )
    import array_api_compat.cupy as xp

    device = cupy.cuda.Device() if device is None else cupy.cuda.Device(_index(device, count))
    return CupyOps(xp, device, cupy.__version__, f"CUDA device {device.id}")


def _index(spec: str, count: int) -> int:
    """The CUDA device number of ``cuda``, ``cuda:N``, ``gpu:N`` or ``N``."""
    kind, _, index = spec.rpartition(":")
    if spec in ("cuda", "gpu"):
        return 0
    if kind not in ("", "cuda", "gpu") or not index.isdigit():
        raise ValueError(f"unknown CuPy device {spec!r} for tinynet; use cuda, cuda:N or N")
    if int(index) >= count:
        raise BackendUnavailableError(
            f"tinynet backend 'cupy': device {spec!r} does not exist; this machine has "
            f"{count} CUDA device(s)"
        )
    return int(index)
