"""The NumPy backend's ``xp``: the ``numpy`` namespace itself, except for the
reductions, which call the ufunc's ``reduce`` directly.

``np.sum``/``np.max`` go through Python wrappers (``_wrapreduction``) that
cost more than the reduction itself on the small arrays of a small model's
step, and a step has half a dozen of them.  Everything else is looked up in
``numpy`` (NumPy >= 2 implements the array API in its main namespace).
"""

from __future__ import annotations

from typing import Any

import numpy as _np

__array_api_version__ = _np.__array_api_version__

_add_reduce = _np.add.reduce
_max_reduce = _np.maximum.reduce
_min_reduce = _np.minimum.reduce


def sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _add_reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def max(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _max_reduce(x, axis=axis, keepdims=keepdims)


def min(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _min_reduce(x, axis=axis, keepdims=keepdims)


def __getattr__(name: str) -> Any:
    value = getattr(_np, name)
    globals()[name] = value  # found once, then a plain module attribute
    return value
