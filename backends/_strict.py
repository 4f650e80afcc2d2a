"""array-api-strict backend: NumPy underneath, but only standard calls work.

It exists for the tests: code that runs here uses nothing beyond the array
API standard -- the same calls CuPy gets on a GPU.
"""

from __future__ import annotations

import numpy as np

from . import Backend, missing_package

API_VERSION = "2024.12"  # what numpy 2.x and jax implement


def load() -> Backend:
    try:
        import array_api_strict as xp
    except ImportError:
        raise missing_package("strict", "array-api-strict") from None
    xp.set_array_api_strict_flags(api_version=API_VERSION)
    return Backend(
        name="strict",
        xp=xp,
        device=xp.asarray(0).device,
        version=xp.__version__,
        _to_numpy=lambda a: np.from_dlpack(a).copy(),
        description=f"CPU (array API {API_VERSION} only)",
    )
