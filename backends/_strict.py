"""array-api-strict backend, for the tests: NumPy underneath, but only array
API standard calls work (the same calls CuPy gets on a GPU).
"""

from __future__ import annotations

import numpy as np

from . import missing_package
from .ops import Ops

API_VERSION = "2024.12"  # what numpy 2.x and jax implement


class StrictOps(Ops):
    name = "strict"
    host_memory = True

    def to_numpy(self, a):
        return np.from_dlpack(a).copy()

    def ignore_fp_errors(self):
        return np.errstate(all="ignore")


def load() -> StrictOps:
    try:
        import array_api_strict as xp
    except ImportError:
        raise missing_package("strict", "array-api-strict") from None
    xp.set_array_api_strict_flags(api_version=API_VERSION)
    device = xp.asarray(0).device
    return StrictOps(xp, device, xp.__version__, f"CPU (array API {API_VERSION} only)")
