"""array-api-strict backend, for the tests: only array API standard calls work."""

from __future__ import annotations

import numpy as np

from ._numpy import NumpyOps
from .ops import Ops

API_VERSION = "2024.12"  # what numpy 2.x and jax implement


class StrictOps(Ops):
    name = "strict"
    host_memory = True

    def to_numpy(self, a):
        return np.from_dlpack(a).copy()

    ignore_fp_errors = NumpyOps.ignore_fp_errors


def load() -> StrictOps:
    import array_api_strict as xp

    xp.set_array_api_strict_flags(api_version=API_VERSION)
    device = xp.asarray(0).device
    return StrictOps(xp, device, xp.__version__, f"CPU (array API {API_VERSION} only)")
