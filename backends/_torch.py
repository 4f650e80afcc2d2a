"""PyTorch backend (CPU, CUDA/ROCm, Apple MPS) through ``array_api_compat.torch``, eager
under ``torch.no_grad()`` (``TINYNET_TORCH_COMPILE=1``: see docs/DESIGN.md, section 1)."""

from __future__ import annotations

import os
import types
import warnings
import weakref
from typing import Any

import numpy as np

from . import BackendUnavailableError
from ._numpy import tune_allocator
from .ops import THREEFRY_PARITY, THREEFRY_ROTATIONS, Ops

_M32 = 0xFFFFFFFF
COMPILE_ENV = "TINYNET_TORCH_COMPILE"


class TorchOps(Ops):
    name = "torch"

    def __init__(self, torch: Any, xp: Any, device: Any, description: str) -> None:
        super().__init__(xp, device, torch.__version__, description)
        self._torch = torch
        self.host_memory = device.type == "cpu"
        self.compile_steps = os.environ.get(COMPILE_ENV, "0") not in ("", "0")
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._conv_fn = {n: getattr(torch.nn.functional, f"conv{n}d") for n in (1, 2, 3)}

    def _reads_free(self) -> bool:
        """Reading a value costs nothing: host memory, not inside torch.compile."""
        return self.host_memory and not self._torch.compiler.is_compiling()

    def dtype(self, dtype):
        found = super().dtype(dtype)
        if found == self._torch.float64 and self.device.type == "mps":
            raise ValueError(
                f"dtype float64 is not available on the torch device {self.device} (Apple "
                "MPS has no float64); use dtype='float32', or device='cpu' for float64"
            )
        return found

    def default_float_dtype(self):
        """float64 as on NumPy, whose dtype rules :meth:`asarray` follows; float32 on MPS."""
        return self._torch.float32 if self.device.type == "mps" else self._torch.float64

    def asarray(self, data, dtype=None):
        torch = self._torch
        dtype = None if dtype is None else self.dtype(dtype)
        if isinstance(data, torch.Tensor):
            if data.device == self.device and (dtype is None or data.dtype == dtype):
                return data
            tensor = data
        else:
            # NumPy's dtype rules; on the CPU a writable native array is shared
            host = np.asarray(data)
            if dtype is not None:
                host = host.astype(str(dtype).removeprefix("torch."), copy=False)
            if not host.flags.writeable or not host.dtype.isnative or host.dtype.hasobject:
                host = np.array(host, dtype=host.dtype.newbyteorder("="))
            tensor = torch.from_numpy(host)
        if dtype is None and tensor.dtype == torch.float64:
            self.dtype("float64")  # on MPS: the error naming dtype and device
        return tensor.to(device=self.device, dtype=dtype)

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def device_of(self, a):
        return a.device  # compat's lookup is lru_cached, which torch.compile warns about

    def host_value(self, a):
        return a.item() if self._reads_free() else None  # compiling: a read splits the graph

    def scope(self):
        return self._torch.no_grad()

    def jit(self, fn, **kwargs):
        """``fn`` under ``torch.no_grad()``, not compiled (``jax.jit``'s keywords ignored)."""
        return self._torch.no_grad()(fn)

    def synchronize(self):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self._torch.mps.synchronize()

    def rows(self, x, start, size):
        if self._reads_free() or isinstance(start, int):
            return super().rows(x, start, size)
        # a gather at a device-side start: slicing would read the start to the host
        index = start + self._torch.arange(size, device=x.device, dtype=start.dtype)
        return self._torch.index_select(x, 0, index)

    def run_block(self, step, n, carry, data, guard=None, stop=None):
        """The portable loop; off host memory the guard's status stays on the device."""
        if self.compile_steps:
            if step not in self._compiled:
                self._compiled[step] = self._compiled_step(step)
            step = self._compiled[step]
        if guard is None or self.host_memory:
            return super().run_block(step, n, carry, data, guard, stop)
        torch = self._torch
        status = torch.zeros((), dtype=torch.int32, device=self.device)
        for _ in range(n):
            if stop is not None and stop():
                break
            new = step(carry, data)
            status = torch.where(status == 0, guard(new), status)
            carry = _select(torch, status == 0, new, carry)
        return carry, status

    def _compiled_step(self, step):
        """``step`` compiled by ``torch.compile``; if that fails, one warning, then eager."""
        compiled = self._torch.compile(step, dynamic=False)

        def run(carry, data):
            if not self.compile_steps:
                return step(carry, data)
            try:
                return compiled(carry, data)
            except Exception as err:  # no C++ compiler, an unsupported construct
                # torch.compile's own failure, not an error the step raises eagerly too
                module = type(err).__module__ or ""
                compiling = module.startswith(("torch._dynamo", "torch._inductor"))
                if not compiling and not isinstance(err, (OSError, NotImplementedError)):
                    raise
                self.compile_steps = False
                first = (str(err).strip().splitlines() or [""])[0]
                warnings.warn(
                    f"tinynet: torch.compile failed ({type(err).__name__}: {first}); "
                    f"training continues eagerly (unset {COMPILE_ENV} to skip compiling)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return step(carry, data)

        return run

    # torch's kernels on channels-first views (no copy); 1-D pooling as 2-D of height 1.

    def conv(self, x, W, strides, dilation):
        kernel = W.movedim((-1, -2), (0, 1))
        y = self._conv_fn[W.ndim - 2](
            x.movedim(-1, 1), kernel, stride=tuple(strides), dilation=tuple(dilation)
        )
        return y.movedim(1, -1), x

    def conv_backward(self, dy, saved, x_shape, W, strides, dilation, need_dx=True):
        rank = W.ndim - 2
        dx, dW, _ = self._torch.ops.aten.convolution_backward(
            dy.movedim(-1, 1),
            saved.movedim(-1, 1),
            W.movedim((-1, -2), (0, 1)),
            None,  # no bias
            list(strides),
            [0] * rank,  # padding
            list(dilation),
            False,  # not transposed
            [0] * rank,
            1,  # groups
            [need_dx, True, False],  # dx only when asked, dW, no bias gradient
        )
        dW = dW.permute(*range(2, rank + 2), 1, 0).contiguous()  # -> (*window, channels, filters)
        return (dx.movedim(1, -1) if need_dx else None), dW

    def max_pool(self, x, window, strides):
        """``which``: torch's indices into the flattened spatial axes, as its backward takes."""
        if len(window) > 2:
            return super().max_pool(x, window, strides)
        torch = self._torch
        x2 = x if x.ndim == 4 else x[:, None]  # 1-D as 2-D of height 1
        s = _pair(strides)
        y, which = torch.nn.functional.max_pool2d(
            x2.movedim(-1, 1), _pair(window), s, return_indices=True
        )
        # a NaN maximum's gradient to the window's first element; amax (cheap) finds any NaN
        if y.is_floating_point() and y.numel():
            if not self._reads_free() or torch.isnan(y.amax()):
                rows = torch.arange(y.shape[2], device=y.device) * (s[0] * x2.shape[2])
                cols = torch.arange(y.shape[3], device=y.device) * s[1]
                which = torch.where(torch.isnan(y), rows[:, None] + cols[None, :], which)
        y = y.movedim(1, -1)
        return (y if x.ndim == 4 else y[:, 0]), which

    def max_pool_backward(self, dy, which, x_shape, window, strides):
        if len(window) > 2:
            return super().max_pool_backward(dy, which, x_shape, window, strides)
        x2_shape = tuple(x_shape) if len(x_shape) == 4 else (x_shape[0], 1, *x_shape[1:])
        dx = self._torch.ops.aten.max_pool2d_with_indices_backward(
            (dy if dy.ndim == 4 else dy[:, None]).movedim(-1, 1),
            dy.new_empty(x2_shape).movedim(-1, 1),  # only its shape and layout are read
            list(_pair(window)),
            list(_pair(strides)),
            [0, 0],  # padding
            [1, 1],  # dilation
            False,  # ceil_mode
            which,
        )
        dx = dx.movedim(1, -1)
        return dx if len(x_shape) == 4 else dx[:, 0]

    def threefry2x32(self, k0, k1, x0, x1):
        """In int64, masked after every add and shift (exact; torch's uint32 cannot)."""
        torch = self._torch
        i64 = torch.int64
        k0, k1 = k0.to(i64), k1.to(i64)
        x0, x1 = torch.broadcast_tensors(x0, x1)
        ks = (k0, k1, k0 ^ k1 ^ THREEFRY_PARITY)
        x0 = (x0.to(i64) + ks[0]).bitwise_and_(_M32)
        x1 = (x1.to(i64) + ks[1]).bitwise_and_(_M32)
        for i in range(5):
            for r in THREEFRY_ROTATIONS[i % 2]:
                x0.add_(x1).bitwise_and_(_M32)
                high = (x1 << r).bitwise_and_(_M32)
                x1 = high.bitwise_or_(x1 >> (32 - r)).bitwise_xor_(x0)
            x0.add_(ks[(i + 1) % 3]).bitwise_and_(_M32)
            x1.add_(ks[(i + 2) % 3] + (i + 1)).bitwise_and_(_M32)
        return x0.to(torch.uint32), x1.to(torch.uint32)


def _pair(window: tuple) -> tuple:
    """A 1-D window or stride as 2-D (height 1)."""
    return tuple(window) if len(window) == 2 else (1, *window)


def _namespace(torch: Any, compat: Any) -> Any:
    """``array_api_compat.torch``, ``maximum``/``minimum`` with a number as ``clamp_min``/``_max``
    on float tensors (same results; compat makes a tensor of the number on every call)."""
    xp = types.ModuleType(compat.__name__, compat.__doc__)
    xp.__dict__.update(vars(compat))

    def with_number(portable, clamp):
        def op(x1, x2, /):
            if type(x2) in (int, float) and isinstance(x1, torch.Tensor) and x1.is_floating_point():
                return clamp(x1, x2)
            return portable(x1, x2)

        return op

    xp.maximum = with_number(compat.maximum, torch.clamp_min)
    xp.minimum = with_number(compat.minimum, torch.clamp_max)
    return xp


def _select(torch: Any, good: Any, new: Any, old: Any) -> Any:
    """``new`` where ``good`` (0-d bool) else ``old``, leaf by leaf over the carry."""
    if isinstance(new, torch.Tensor):
        return torch.where(good, new, old)
    if isinstance(new, dict):
        return {k: _select(torch, good, v, old[k]) for k, v in new.items()}
    if isinstance(new, (tuple, list)):
        return type(new)(_select(torch, good, a, b) for a, b in zip(new, old, strict=True))
    return new


def _device(torch: Any, spec: str | None) -> Any:
    """The ``torch.device`` for ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or the default."""
    has_mps = torch.backends.mps.is_available()
    if spec is None:
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps", 0) if has_mps else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown torch device {spec!r} for tinynet; use cpu, cuda, cuda:N (N from 0) or mps"
        )
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackendUnavailableError(
                f"tinynet backend 'torch': device {spec!r} was asked for but this torch "
                f"({torch.__version__}) sees no CUDA device; use device='cpu' (or 'mps' on "
                "Apple silicon), or install a CUDA build of torch on a machine with a GPU"
            )
        index = torch.cuda.current_device() if device.index is None else device.index
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"tinynet backend 'torch': device {spec!r} does not exist; this machine has "
                f"{count} CUDA device(s): cuda:0 .. cuda:{count - 1}"
            )
        return torch.device("cuda", index)
    if device.type == "cpu":
        return torch.device("cpu")
    if not has_mps:
        raise BackendUnavailableError(
            f"tinynet backend 'torch': device {spec!r} (Apple GPU) is not available here; "
            "use device='cpu'"
        )
    return torch.device("mps", 0)


def load(device: str | None = None) -> TorchOps:
    import array_api_compat.torch as compat
    import torch

    device = _device(torch, device)
    if device.type == "cuda":
        description = f"GPU {device} ({torch.cuda.get_device_name(device)})"
    elif device.type == "mps":
        description = f"Apple GPU {device} (MPS)"
    else:
        description = "CPU"
        tune_allocator()  # torch's CPU tensors come from glibc's malloc too
    return TorchOps(torch, _namespace(torch, compat), device, description)
