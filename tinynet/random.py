"""Counter-based random numbers (Threefry-2x32-20) on the array API: a key is a
``uint32`` array (2,); every function runs on the key's backend (jitted on JAX).
``threefry_2x32``, ``key``, ``split``, ``fold_in``, ``bits`` and ``uniform`` equal
``jax.random``'s bit for bit; all but ``normal`` are bit-identical on every backend."""

from __future__ import annotations

import math
import numbers
import operator
import struct
from collections.abc import Callable
from typing import Any

from . import backends
from .backends.ops import THREEFRY_PARITY, THREEFRY_ROTATIONS

__all__ = [
    "bernoulli",
    "bits",
    "fold_in",
    "key",
    "normal",
    "permutation",
    "split",
    "threefry_2x32",
    "uniform",
]

Array = Any
Shape = int | tuple[int, ...]

_MAX_DRAWS = 2**32  # counters are (0, i) with i a uint32
_M32 = 0xFFFFFFFF
_COMPILED: dict[tuple[Callable, str], Callable] = {}


def _device(x: Array) -> Any:
    """Device of ``x`` or None (JAX tracers have none: use the default)."""
    return backends.backend_of(x).device_of(x)


def _compiled(fn: Callable, like: Array, **jit_kwargs: Any) -> Callable:
    """``fn`` compiled by ``like``'s backend (``ops.jit``), once per function and backend."""
    backend = backends.backend_of(like)
    compiled = _COMPILED.get((fn, backend.name))
    if compiled is None:
        compiled = _COMPILED[(fn, backend.name)] = backend.jit(fn, **jit_kwargs)
    return compiled


def _block(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32-20 (``ops.threefry2x32``) on broadcastable 1-d uint32 arrays."""
    return backends.backend_of(x1).threefry2x32(k0, k1, x0, x1)


def _block_int(k0: int, k1: int, x0: int, x1: int) -> tuple[int, int]:
    """:func:`_block` on Python ints (host keys): faster than ~115 tiny NumPy ops."""
    ks = (k0, k1, k0 ^ k1 ^ THREEFRY_PARITY)
    x0 = (x0 + k0) & _M32
    x1 = (x1 + k1) & _M32
    for i in range(5):
        for r in THREEFRY_ROTATIONS[i % 2]:
            x0 = (x0 + x1) & _M32
            x1 = (((x1 << r) & _M32) | (x1 >> (32 - r))) ^ x0
        x0 = (x0 + ks[(i + 1) % 3]) & _M32
        x1 = (x1 + ks[(i + 2) % 3] + i + 1) & _M32
    return x0, x1


def _check_key(key: Array) -> Any:
    """The namespace of a valid key (uint32, shape (2,)); TypeError otherwise."""
    xp = backends.namespace(key)
    if tuple(key.shape) != (2,) or key.dtype != xp.uint32:
        raise TypeError(
            f"a tinynet random key is a uint32 array of shape (2,); got dtype "
            f"{key.dtype} and shape {tuple(key.shape)} (make one with tinynet.random.key)"
        )
    return xp


def _shape(key: Array, shape: Shape) -> tuple[int, ...]:
    """Check the key (:func:`_check_key`) and return ``shape`` as a tuple."""
    _check_key(key)
    if isinstance(shape, int):
        shape = (shape,)
    dims = tuple(operator.index(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must have non-negative dimensions, got {dims}")
    if math.prod(dims) >= _MAX_DRAWS:
        raise ValueError(f"at most 2**32 - 1 draws per key, asked for {dims}; split the key")
    return dims


def _dtype(key: Array, dtype: Any, allowed: tuple[str, ...]) -> Any:
    """The key's backend dtype for a name or dtype object, one of ``allowed``."""
    backend = backends.backend_of(key)
    options = [backend.dtype(name) for name in allowed]
    if not isinstance(dtype, str):
        for dt in options:  # NumPy's xp.float32 is a scalar type Backend.dtype rejects
            if dtype == dt:
                return dt
    dt = backend.dtype(dtype)
    if dt not in options:
        raise ValueError(f"dtype must be one of {', '.join(allowed)}; got {dtype!r}")
    return dt


def _words(key: Array, shape: tuple[int, ...]) -> tuple[Any, Array, Array]:
    """The namespace and the flat output words of counters ``(0, i)``, ``i < prod(shape)``."""
    xp = backends.namespace(key)
    lo = xp.arange(math.prod(shape), dtype=xp.uint32, device=_device(key))
    return xp, *_block(key[0:1], key[1:2], xp.zeros_like(lo), lo)


def threefry_2x32(keypair: Any, count: Array) -> Array:
    """The Threefry-2x32-20 block function, as ``jax.extend.random.threefry_2x32``:
    ``keypair`` a uint32 key (2,) or a pair of uint32 scalars or ints, ``count``
    uint32 of any shape (its flat halves are the counters), output of its shape."""
    if isinstance(keypair, (tuple, list)):
        if len(keypair) != 2:
            raise ValueError(f"a threefry keypair has 2 words, got {len(keypair)}")
        xp = backends.namespace(*keypair, count)
        words = [xp.asarray(k, dtype=xp.uint32) if isinstance(k, int) else k for k in keypair]
        keypair = xp.concat([xp.reshape(k, (1,)) for k in words])
    xp = backends.namespace(keypair, count)
    if keypair.dtype != xp.uint32 or count.dtype != xp.uint32:
        raise TypeError(
            f"threefry_2x32 requires uint32 arguments, got {keypair.dtype}, {count.dtype}"
        )
    _check_key(keypair)
    flat = xp.reshape(count, (-1,))
    n = flat.shape[0]
    if n % 2:
        flat = xp.concat([flat, xp.zeros((1,), dtype=xp.uint32, device=_device(count))])
    h = flat.shape[0] // 2
    y0, y1 = _compiled(_block, count)(keypair[0:1], keypair[1:2], flat[:h], flat[h:])
    return xp.reshape(xp.concat([y0, y1])[:n], tuple(count.shape))


def key(seed: int, backend: backends.Backend | str | None = None) -> Array:
    """The key ``[seed >> 32, seed & 0xffffffff]`` of a seed in ``[-2**63, 2**63)``, as
    ``jax.random.PRNGKey`` with x64, on ``backend`` (a Backend, a name or None: current)."""
    seed = operator.index(seed)
    if not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must be a 64-bit signed integer, got {seed}")
    if backend is None or isinstance(backend, str):
        backend = backends.get_backend(backend)
    value = seed % 2**64
    return backend.asarray([value >> 32, value & 0xFFFFFFFF], dtype="uint32")


def _split(key: Array, shape: tuple[int, ...]) -> Array:
    xp, w0, w1 = _words(key, shape)
    return xp.reshape(xp.stack([w0, w1], axis=1), (*shape, 2))


def split(key: Array, num: Shape = 2) -> Array:
    """``num`` new keys, shape (num, 2) (or ``(*num, 2)`` for a shape), as ``jax.random.split``."""
    shape = _shape(key, num)
    return _compiled(_split, key, static_argnums=1)(key, shape)


def _fold_in(key: Array, data: Array) -> Array:
    xp = backends.namespace(key)
    y0, y1 = _block(key[0:1], key[1:2], xp.zeros_like(data), data)
    return xp.concat([y0, y1])


def fold_in(key: Array, data: int | Array) -> Array:
    """A new key mixing in ``data`` (int in [0, 2**32) or 0-d integer array):
    the block of counter ``(0, data)``, as ``jax.random.fold_in``."""
    xp = _check_key(key)
    backend = backends.backend_of(key)
    if not isinstance(data, numbers.Integral):  # not a Python or NumPy integer
        if backends.namespace(key, data) is not xp or tuple(data.shape) != ():
            raise TypeError("fold_in data must be an int or a 0-d integer array like the key")
        host = backend.host_value(data)  # a 0-d array in host memory: its int
        if not isinstance(host, int):
            return _compiled(_fold_in, key)(key, xp.reshape(xp.astype(data, xp.uint32), (1,)))
        data = host
    data = int(data)
    if not 0 <= data < 2**32:
        raise ValueError(f"fold_in data must be in [0, 2**32), got {data}")
    k0 = backend.host_value(key[0])
    if k0 is not None:  # a key in host memory (NumPy, strict): Python ints
        y = _block_int(k0, backend.host_value(key[1]), 0, data)
        return xp.asarray(y, dtype=xp.uint32, device=_device(key))
    d = xp.asarray([data], dtype=xp.uint32, device=_device(key))
    return _compiled(_fold_in, key)(key, d)


def _bits(key: Array, shape: tuple[int, ...], dt: Any) -> Array:
    xp, w0, w1 = _words(key, shape)
    if dt == xp.uint64:
        out = (xp.astype(w0, dt) * 2**32) | xp.astype(w1, dt)  # w0 << 32 | w1
    elif dt == xp.uint32:
        out = w0 ^ w1
    else:
        out = xp.astype((w0 ^ w1) & (0xFF if dt == xp.uint8 else 0xFFFF), dt)
    return xp.reshape(out, shape)


def bits(key: Array, shape: Shape = (), dtype: Any = "uint32") -> Array:
    """Random unsigned integers of ``shape``, as ``jax.random.bits``: uint32
    ``w0 ^ w1``, uint8/uint16 its low bits, uint64 ``w0 << 32 | w1``."""
    shape = _shape(key, shape)
    dt = _dtype(key, dtype, ("uint8", "uint16", "uint32", "uint64"))
    return _compiled(_bits, key, static_argnums=(1, 2))(key, shape, dt)


def _f32(x: float) -> float:
    """``x`` rounded to float32 (host-side, exact Python arithmetic); +-inf where
    IEEE rounding overflows (``struct`` raises ``OverflowError`` there)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _below(x: float, is32: bool) -> float:
    """The largest float32/float64 strictly below ``x`` (a value of that dtype)."""
    if not is32:
        return math.nextafter(x, -math.inf)
    (b,) = struct.unpack("<I", struct.pack("<f", x))
    if x > 0:
        b -= 1
    elif x == 0:
        b = 0x80000001  # the negative float32 nearest 0
    else:
        b += 1
    return struct.unpack("<f", struct.pack("<I", b))[0]


def _uniform(key: Array, shape: tuple[int, ...], dt: Any, low: float, high: float) -> Array:
    """:func:`uniform` after validation: ``low < high`` already rounded to ``dt``."""
    xp, w0, w1 = _words(key, shape)
    f64, is32 = xp.float64, dt == xp.float32
    unit = (low, high) == (0.0, 1.0)
    span = _f32(high - low) if is32 else high - low
    # Masks and exact products by powers of two instead of shifts (PyTorch
    # has no unsigned shifts): (w >> 9) * 2**-23 == (w & ~0x1FF) * 2**-32.
    if is32:
        u = xp.astype((w0 ^ w1) & 0xFFFFFE00, f64) * 2.0**-32  # the top 23 bits
        out = xp.astype(u if unit else u * span + low, dt)
    else:
        # k = kh * 2**26 + kl: the top 52 bits of the 64-bit word (w0 << 32 | w1);
        # uh = kh * 2**-26 (w0's top 26 bits), ul = kl * 2**-52 (w0's low 6 bits
        # and w1's top 20), each sum of disjoint bits exact in float64
        uh = xp.astype(w0 & 0xFFFFFFC0, f64) * 2.0**-32
        ul = xp.astype(w0 & 0x3F, f64) * 2.0**-32 + xp.astype(w1 & 0xFFFFF000, f64) * 2.0**-64
        if unit:
            out = uh + ul
        else:
            m, e = math.frexp(span)
            sh = math.ldexp(math.floor(m * 2.0**26), e - 26)  # top 26 bits of span
            sl = span - sh  # the other 27 bits, exact
            out = (uh * sh + low) + ((ul * sl + ul * sh) + uh * sl)
    if not unit:
        out = xp.clip(out, low, _below(high, is32))  # rounding must not reach high
    return xp.reshape(out, shape)


def uniform(
    key: Array, shape: Shape = (), dtype: Any = "float32", low: float = 0.0, high: float = 1.0
) -> Array:
    """Floats in ``[low, high)`` of ``shape``, bit-identical on every backend.

    On [0, 1) exactly ``jax.random.uniform``: the top 23 (float32) or 52
    (float64) bits of a draw.  ``low < high`` are Python numbers rounded to
    ``dtype``; ``u * span + low`` uses only exact products (no fused
    multiply-add can change it) and is clipped into ``[low, high)``.
    """
    shape = _shape(key, shape)
    dt = _dtype(key, dtype, ("float32", "float64"))
    if not (isinstance(low, numbers.Real) and isinstance(high, numbers.Real)):
        raise TypeError(f"low and high must be Python numbers, got {low!r}, {high!r}")
    is32 = dt == backends.namespace(key).float32
    low, high = float(low), float(high)
    if is32:
        low, high = _f32(low), _f32(high)
    if not low < high:
        raise ValueError(f"uniform needs low < high in {dtype}, got low={low}, high={high}")
    if not math.isfinite(_f32(high - low) if is32 else high - low):
        raise ValueError(f"high - low overflows {dtype}: low={low}, high={high}")
    return _compiled(_uniform, key, static_argnums=(1, 2, 3, 4))(key, shape, dt, low, high)


def bernoulli(key: Array, p: float | Array = 0.5, shape: Shape | None = None) -> Array:
    """Booleans, True with probability ``p``: ``uniform(key, shape) < p``, the
    uniform float32 for a number ``p``, else ``p.dtype``; ``shape`` defaults to ``p``'s."""
    is_num = isinstance(p, (int, float))
    if shape is None:
        shape = () if is_num else tuple(p.shape)
    shape = _shape(key, shape)
    u = uniform(key, shape if shape else (1,), "float32" if is_num else p.dtype)
    return backends.namespace(key, p).reshape(u < p, shape)


def _permutation(key: Array, n: int) -> Array:
    xp = backends.namespace(key)
    draws = _bits(key, (n,), xp.uint64)  # w0 << 32 | w1
    # The index packed into the low b bits: one sort of distinct uint64 values
    # instead of an argsort, several times faster on XLA's CPU sort and NumPy.
    b = max(1, (n - 1).bit_length())
    low = (1 << b) - 1
    index = xp.arange(n, dtype=xp.uint64, device=_device(key))
    packed = (draws & xp.asarray(~low & 0xFFFF_FFFF_FFFF_FFFF, dtype=xp.uint64)) | index
    return xp.astype(xp.sort(packed) & xp.asarray(low, dtype=xp.uint64), xp.int64)


def permutation(key: Array, n: int) -> Array:
    """A random permutation of ``range(n)`` (int64): the rows sorted by their
    64-bit draws (:func:`bits`) but for the low ``bit_length(n - 1)`` bits."""
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"permutation needs n >= 0, got {n}")
    _shape(key, (n,))
    return _compiled(_permutation, key, static_argnums=1)(key, n)


def _normal(key: Array, shape: tuple[int, ...], dt: Any) -> Array:
    xp = backends.namespace(key)
    keys = _split(key, (2,))
    work = shape if shape else (1,)  # NumPy would make scalars of 0-d results
    u1 = _uniform(keys[0, :], work, dt, 0.0, 1.0)
    u2 = _uniform(keys[1, :], work, dt, 0.0, 1.0)
    radius = xp.sqrt(-2.0 * xp.log1p(-u1))
    return xp.reshape(radius * xp.cos((2.0 * math.pi) * u2), shape)


def normal(key: Array, shape: Shape = (), dtype: Any = "float32") -> Array:
    """Standard normal draws by Box--Muller, ``sqrt(-2 log1p(-u1)) * cos(2 pi u2)``
    with ``u1, u2`` uniform on ``split(key)`` (tails end near 5.6 / 8.5 sigma)."""
    shape = _shape(key, shape)
    dt = _dtype(key, dtype, ("float32", "float64"))
    return _compiled(_normal, key, static_argnums=(1, 2))(key, shape, dt)
