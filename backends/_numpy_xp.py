"""The NumPy backend's ``xp``: the ``numpy`` namespace itself, except for the
reductions, which call the ufunc's ``reduce`` directly or, over one axis of
a small 2-D float array, a C loop.

``np.sum``/``np.max`` go through Python wrappers (``_wrapreduction``) that
cost more than the reduction itself on the small arrays of a small model's
step, and a step has half a dozen of them.  Even the bare ufunc reductions
over one axis of a 2-D array cost 5-14 us at (300, 3) or (300, 64) (per-call
and per-row overhead): a Dense layer's bias gradient is ``sum(dy, axis=0)``,
softmax takes a row max and a row sum.  Where the optional C extension
``backends._fused`` was built, those three go to its loops, which add in
NumPy's order (rows one after the other for ``axis=0``; NumPy's pairwise
summation along a row) and take NumPy's maximum: the same results, bit for
bit (``tests/test_fused_ops.py`` compares them with ``np.add.reduce`` and
``np.maximum.reduce`` over many shapes and special values; only which NaN
comes out where NaNs meet may differ).  Everything else is looked up in
``numpy`` (NumPy >= 2 implements the array API in its main namespace),
except ``take``/``argmax``/``astype``, which call the ndarray methods, and
``sort``, which sorts a 1-D uint64 array with a C loop (the same result).
"""

from __future__ import annotations

from typing import Any

import numpy as _np

try:
    from . import _fused
except ImportError:  # not built (no C compiler at install): NumPy's reductions
    _fused = None

__array_api_version__ = _np.__array_api_version__

_add_reduce = _np.add.reduce
_max_reduce = _np.maximum.reduce
_min_reduce = _np.minimum.reduce
_ndarray = _np.ndarray
_empty = _np.empty
_C_FLOATS = (_np.dtype("float32"), _np.dtype("float64"))  # native byte order only

# Up to this many elements the C loops are used; larger arrays amortise
# NumPy's overhead (and its vectorised maximum beats the C loop on long rows).
FUSED_MAX_SIZE = 1 << 16
FUSED_MAX_ROW_FOR_MAX = 32


def _fused_2d(x: Any, axis: Any, keepdims: bool, maximum: bool) -> Any:
    """The C loop's result for ``sum``/``max`` over one axis of ``x``, or
    None where it does not apply (NumPy's own reduction runs)."""
    if (
        _fused is None
        or type(x) is not _ndarray
        or x.ndim != 2
        or x.dtype not in _C_FLOATS
        or not 0 < x.size <= FUSED_MAX_SIZE
        or not x.flags.c_contiguous
    ):
        return None
    rows, cols = x.shape
    if axis in (1, -1):
        if maximum and cols > FUSED_MAX_ROW_FOR_MAX:
            return None
        out = _empty((rows, 1) if keepdims else (rows,), x.dtype)
        (_fused.rowmax if maximum else _fused.rowsum)(x, out)
        return out
    if axis == 0 and not maximum and cols > 1:  # one column: NumPy sums it pairwise
        out = _empty((1, cols) if keepdims else (cols,), x.dtype)
        _fused.colsum(x, out)
        return out
    return None


def sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    if axis is not None and dtype is None:
        out = _fused_2d(x, axis, keepdims, False)
        if out is not None:
            return out
    return _add_reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def max(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    if axis is not None:
        out = _fused_2d(x, axis, keepdims, True)
        if out is not None:
            return out
    return _max_reduce(x, axis=axis, keepdims=keepdims)


def min(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return _min_reduce(x, axis=axis, keepdims=keepdims)


# NumPy's function forms of these go through Python wrappers that cost more
# than the call on small arrays (np.argmax 6.8 us vs 2.8 us for the method at
# (300, 3); np.take +1.5 us): fit's batch gather and accuracy run them every step.


def take(x: Any, indices: Any, /, *, axis: Any = None) -> Any:
    if type(x) is _ndarray:
        return x.take(indices, axis=axis)
    return _np.take(x, indices, axis=axis)


def argmax(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
    if type(x) is _ndarray:
        return x.argmax(axis=axis, keepdims=keepdims)
    return _np.argmax(x, axis=axis, keepdims=keepdims)


def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    if type(x) is _ndarray and device is None:
        return x.astype(dtype, copy=copy)
    return _np.astype(x, dtype, copy=copy, device=device)


_UINT64 = _np.dtype("uint64")  # native byte order: a big-endian dtype compares unequal


def sort(x: Any, /, *, axis: int = -1, stable: bool = True) -> Any:
    """``np.sort``; a 1-D uint64 array goes to the C sort (``_fused.sort_u64``:
    ``tinynet.random.permutation`` sorts n random draws every shuffled epoch,
    and NumPy took 184 us at n = 7680, the C sort 29 us).  Equal integers
    are indistinguishable, so every sort of them is stable."""
    if (
        _fused is not None
        and type(x) is _ndarray
        and x.ndim == 1
        and axis in (0, -1)
        and x.dtype == _UINT64
        and x.flags.c_contiguous
    ):
        out = _empty(x.shape, x.dtype)
        _fused.sort_u64(x, out)
        return out
    return _np.sort(x, axis=axis, stable=stable)


def __getattr__(name: str) -> Any:
    value = getattr(_np, name)
    globals()[name] = value  # found once, then a plain module attribute
    return value
