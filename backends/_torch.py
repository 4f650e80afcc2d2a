"""PyTorch backend (CPU, CUDA/ROCm, Apple MPS) through ``array_api_compat.torch``.

Eager, like NumPy: tinynet computes its own backward, so its calls run under
``torch.no_grad()`` (:meth:`TorchOps.scope` around tinynet's entry points and
every :meth:`TorchOps.jit` function; nothing process-wide is changed: no
thread count, default dtype or grad mode).  On the CPU, first use asks glibc
to keep freed memory (as the NumPy backend does; ``TINYNET_MALLOC_TUNE=0``
turns it off): torch's CPU tensors come from the same malloc.

``TINYNET_TORCH_COMPILE=1``: ``fit`` runs each training step compiled by
``torch.compile`` (the first steps of each batch size take seconds to
compile; it pays on small models, where Python's per-operation cost is most
of a step).  If compilation fails (the CPU compiler needs a C++ compiler),
tinynet says so once and runs eagerly.

Devices: ``cpu``, ``cuda``, ``cuda:N``, ``mps``; the default is CUDA if
present, else MPS, else the CPU.  MPS has no float64: asking for it there is
a ``ValueError`` naming the dtype and the device.

Convolution and max pooling run on torch's own kernels (oneDNN on the
CPU): tinynet's channels-last arrays permuted to channels-first are
``channels_last`` views, which those kernels take without a copy.

What PyTorch does differently, and where it is handled:

* unsigned 32-bit integers lack addition and shifts: :meth:`threefry2x32`
  computes the block in int64 with masks (exact), ``tinynet.random`` turns
  words into draws without unsigned shifts;
* Python floats become float32 tensors under ``asarray``: host data goes
  through NumPy first, so dtypes are NumPy's (float64 stays float64);
* on a GPU, reading a value waits for the queue: :meth:`rows` takes a batch
  by a gather at a device-side start, and the NaN guard of :meth:`run_block`
  keeps its status on the device (on the CPU both read host memory).
"""

from __future__ import annotations

import os
import types
import warnings
import weakref
from typing import Any

import numpy as np

from . import BackendUnavailableError, missing_package
from .ops import THREEFRY_PARITY, THREEFRY_ROTATIONS, Ops

_M32 = 0xFFFFFFFF
COMPILE_ENV = "TINYNET_TORCH_COMPILE"


class TorchOps(Ops):
    name = "torch"

    def __init__(self, torch: Any, xp: Any, device: Any, description: str) -> None:
        super().__init__(xp, device, torch.__version__, description)
        self._torch = torch
        # CPU tensors live in host memory: reading a 0-d value costs nothing
        self.host_memory = device.type == "cpu"
        #: fit's steps compiled by torch.compile (TINYNET_TORCH_COMPILE=1)
        self.compile_steps = os.environ.get(COMPILE_ENV, "0") not in ("", "0")
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        functional = torch.nn.functional
        self._conv_fn = {1: functional.conv1d, 2: functional.conv2d, 3: functional.conv3d}

    # ------------------------------------------------------------ arrays

    def dtype(self, dtype):
        found = super().dtype(dtype)
        if found == self._torch.float64 and self.device.type == "mps":
            raise ValueError(
                f"dtype float64 is not available on the torch device {self.device} (Apple "
                "MPS has no float64); use dtype='float32', or device='cpu' for float64"
            )
        return found

    def default_float_dtype(self):
        """float64 as on NumPy, whose dtype rules :meth:`asarray` follows
        (torch's own default is float32); float32 on MPS."""
        return self._torch.float32 if self.device.type == "mps" else self._torch.float64

    def asarray(self, data, dtype=None):
        torch = self._torch
        if dtype is not None:
            dtype = self.dtype(dtype)
        if isinstance(data, torch.Tensor):
            if data.device == self.device and (dtype is None or data.dtype == dtype):
                return data
            if dtype is None and data.dtype == torch.float64:
                self.dtype("float64")  # on MPS: the error naming dtype and device
            return data.to(device=self.device, dtype=dtype)
        # Host data: NumPy's dtype rules (Python floats -> float64), then one copy
        # to the device.  On the CPU a writable native array is shared, as NumPy's
        # own backend does.
        host = np.asarray(data)
        if dtype is not None:
            host = host.astype(_numpy_dtype(dtype), copy=False)
        if not host.flags.writeable or not host.dtype.isnative or host.dtype.hasobject:
            host = np.array(host, dtype=host.dtype.newbyteorder("="))
        tensor = torch.from_numpy(host)
        if tensor.dtype == torch.float64 and self.device.type == "mps":
            self.dtype("float64")  # the error naming dtype and device
        return tensor.to(self.device) if self.device.type != "cpu" else tensor

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def device_of(self, a):
        return a.device  # compat's lookup is lru_cached, which torch.compile warns about

    def host_value(self, a):
        if self._torch.compiler.is_compiling():
            return None  # a read would split the compiled graph
        return super().host_value(a)

    # ------------------------------------------------------------ running

    def scope(self):
        return self._torch.no_grad()

    def jit(self, fn, **kwargs):
        """``fn`` run under ``torch.no_grad()`` (not compiled: ``jax.jit``'s
        keyword arguments are accepted and ignored)."""
        no_grad = self._torch.no_grad

        def call(*args, **kw):
            with no_grad():
                return fn(*args, **kw)

        return call

    def synchronize(self):
        kind = self.device.type
        if kind == "cuda":
            self._torch.cuda.synchronize(self.device)
        elif kind == "mps":
            self._torch.mps.synchronize()

    def rows(self, x, start, size):
        on_host = self.host_memory and not self._torch.compiler.is_compiling()
        if on_host or isinstance(start, int):
            return super().rows(x, start, size)
        # a gather at a device-side start: slicing would read the start to the host
        index = start + self._torch.arange(size, device=x.device, dtype=start.dtype)
        return self._torch.index_select(x, 0, index)

    def run_block(self, step, n, carry, data, guard=None, stop=None):
        """The portable loop on the CPU; on a GPU the NaN guard's status stays
        on the device (no read per step): a bad step and every step after it
        keep their inputs, as on JAX, and the status is read once per block.
        With :attr:`compile_steps`, ``step`` runs compiled by ``torch.compile``."""
        if self.compile_steps:
            step = self._compiled_step(step)
        if guard is None or self.host_memory:
            return super().run_block(step, n, carry, data, guard, stop)
        torch = self._torch
        status = torch.zeros((), dtype=torch.int32, device=self.device)
        for _ in range(n):
            if stop is not None and stop():
                break
            new = step(carry, data)
            status = torch.where(status == 0, guard(new), status)
            good = status == 0
            carry = _select(torch, good, new, carry)
        return carry, status

    def _compiled_step(self, step):
        """``step`` compiled by ``torch.compile`` (once per step function); on
        a compilation failure one warning, then ``step`` itself from now on."""
        found = self._compiled.get(step)
        if found is not None:
            return found
        torch, ops = self._torch, self
        compiled = torch.compile(step, dynamic=False)

        def run(carry, data):
            if not ops.compile_steps:
                return step(carry, data)
            try:
                return compiled(carry, data)
            except Exception as err:  # no C++ compiler, an unsupported construct
                if not _is_compile_error(torch, err):
                    raise
                ops.compile_steps = False
                warnings.warn(
                    f"tinynet: torch.compile failed ({type(err).__name__}: "
                    f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                    f"training continues eagerly (unset {COMPILE_ENV} to skip compiling)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return step(carry, data)

        self._compiled[step] = run
        return run

    # ------------------------------------------------------------ convolution
    #
    # torch's own convolution kernels (oneDNN on the CPU) instead of the
    # portable im2col + matmul.  tinynet's data is channels-last: permuted to
    # (batch, channels, *spatial) it is a channels_last view, which oneDNN
    # takes without a copy.  The layers pad before calling, so torch pads
    # nothing.  The input is saved for the backward.

    def conv(self, x, W, strides, dilation):
        rank = W.ndim - 2
        y = self._conv_fn[rank](
            _channels_first(x), _torch_kernel(W), stride=tuple(strides), dilation=tuple(dilation)
        )
        return _channels_last(y), x

    def conv_backward(self, dy, saved, x_shape, W, strides, dilation, need_dx=True):
        rank = W.ndim - 2
        dx, dW, _ = self._torch.ops.aten.convolution_backward(
            _channels_first(dy),
            _channels_first(saved),
            _torch_kernel(W),
            None,  # no bias
            list(strides),
            [0] * rank,  # padding: the layer padded already
            list(dilation),
            False,  # not transposed
            [0] * rank,
            1,  # groups
            [need_dx, True, False],  # dx only when asked, dW, no bias gradient
        )
        dW = dW.permute(*range(2, rank + 2), 1, 0).contiguous()  # -> (*window, channels, filters)
        return (_channels_last(dx) if need_dx else None), dW

    # Max pooling by torch's own kernels.  ``which`` is torch's form: the
    # index of each window's maximum in the flattened spatial axes of the
    # input, which torch's backward takes as it is.  1-D data is pooled as
    # 2-D with a height of 1.

    def max_pool(self, x, window, strides):
        if len(window) > 2:
            return super().max_pool(x, window, strides)
        torch = self._torch
        x2 = _two_d(x)
        k, s = _pair(window), _pair(strides)
        y, which = torch.nn.functional.max_pool2d(_channels_first(x2), k, s, return_indices=True)
        # A NaN maximum sends the gradient to the window's first element, as
        # the portable op does (torch's index is a NaN's).  Where reading a
        # value is free (host memory, not compiling) a test comes first: one
        # maximum over y is much cheaper than isnan.
        if y.is_floating_point() and y.numel():
            read_free = self.host_memory and not torch.compiler.is_compiling()
            if not read_free or torch.isnan(y.amax()):
                nan = torch.isnan(y)
                which = torch.where(nan, _window_starts(torch, x2.shape, y, s), which)
        y = _channels_last(y)
        return (y if x.ndim == 4 else y[:, 0]), which

    def max_pool_backward(self, dy, which, x_shape, window, strides):
        if len(window) > 2:
            return super().max_pool_backward(dy, which, x_shape, window, strides)
        x2_shape = tuple(x_shape) if len(x_shape) == 4 else (x_shape[0], 1, *x_shape[1:])
        # torch's backward reads only the shape and memory layout of its input
        like = _channels_first(dy.new_empty(x2_shape))
        dx = self._torch.ops.aten.max_pool2d_with_indices_backward(
            _channels_first(_two_d(dy)),
            like,
            list(_pair(window)),
            list(_pair(strides)),
            [0, 0],  # padding: the layer padded already
            [1, 1],  # dilation
            False,  # ceil_mode
            which,
        )
        dx = _channels_last(dx)
        return dx if len(x_shape) == 4 else dx[:, 0]

    # (ReLU's backward by aten.threshold_backward was tried: below the 10% bar
    # on the CNN and MLP steps, so relu_grad stays portable.)

    # ------------------------------------------------------------ maths

    def threefry2x32(self, k0, k1, x0, x1):
        """The block in int64 with a mask after every add and shift: exact
        (values stay below 2**33 before masking), where PyTorch's uint32 has no
        addition or shifts."""
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


def _channels_first(x: Any) -> Any:
    """``(batch, *spatial, channels)`` viewed as ``(batch, channels, *spatial)``."""
    return x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))


def _channels_last(x: Any) -> Any:
    """``(batch, channels, *spatial)`` viewed as ``(batch, *spatial, channels)``."""
    return x.permute(0, *range(2, x.ndim), 1)


def _torch_kernel(W: Any) -> Any:
    """tinynet's kernel ``(*window, channels, filters)`` viewed as torch's
    ``(filters, channels, *window)``."""
    return W.permute(W.ndim - 1, W.ndim - 2, *range(W.ndim - 2))


def _two_d(x: Any) -> Any:
    """1-D channels-last data ``(batch, steps, channels)`` as 2-D ``(batch, 1,
    steps, channels)``; 2-D data unchanged."""
    return x if x.ndim == 4 else x[:, None]


def _pair(window: tuple) -> tuple:
    """A 1-D window, stride or dilation as 2-D (height 1)."""
    return tuple(window) if len(window) == 2 else (1, *window)


def _window_starts(torch: Any, x_shape: tuple, y: Any, strides: tuple) -> Any:
    """In torch's index form, the first element of every window of the pooled
    ``y`` ``(batch, channels, out_h, out_w)``: ``(out_h, out_w)`` indices into
    the flattened ``(height, width)`` of the 2-D channels-last input ``x_shape``."""
    rows = torch.arange(y.shape[2], device=y.device) * (strides[0] * x_shape[2])
    cols = torch.arange(y.shape[3], device=y.device) * strides[1]
    return rows[:, None] + cols[None, :]


def _is_compile_error(torch: Any, err: Exception) -> bool:
    """True for a failure of torch.compile itself (dynamo, inductor, the C++
    compiler), not for an error the step would raise eagerly too."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
        err, (OSError, NotImplementedError)
    )


def _namespace(torch: Any, compat: Any) -> Any:
    """``array_api_compat.torch`` with ``maximum(x, number)`` and ``minimum(x,
    number)`` as ``clamp_min``/``clamp_max`` (the same NaN and signed-zero
    results): compat makes a new tensor of it on every call, through
    ``torch.result_type``, which also splits a ``torch.compile`` graph.  ReLU
    is ``maximum(x, 0.0)``."""
    xp = types.ModuleType(compat.__name__, compat.__doc__)
    xp.__dict__.update(vars(compat))
    number = (int, float)

    def maximum(x1, x2, /):
        if type(x2) in number and isinstance(x1, torch.Tensor) and x1.is_floating_point():
            return torch.clamp_min(x1, x2)
        return compat.maximum(x1, x2)

    def minimum(x1, x2, /):
        if type(x2) in number and isinstance(x1, torch.Tensor) and x1.is_floating_point():
            return torch.clamp_max(x1, x2)
        return compat.minimum(x1, x2)

    xp.maximum, xp.minimum = maximum, minimum
    return xp


def _select(torch: Any, good: Any, new: Any, old: Any) -> Any:
    """``new`` where ``good`` (a 0-d bool tensor) else ``old``, leaf by leaf
    over the carry's nested tuples, lists and dicts."""
    if isinstance(new, torch.Tensor):
        return torch.where(good, new, old)
    if isinstance(new, dict):
        return {k: _select(torch, good, v, old[k]) for k, v in new.items()}
    if isinstance(new, (tuple, list)):
        return type(new)(_select(torch, good, a, b) for a, b in zip(new, old, strict=True))
    return new


def _numpy_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of a torch dtype (``torch.float32`` -> ``float32``)."""
    return np.dtype(str(dtype).rsplit(".", 1)[-1])


def _default_device(torch: Any) -> Any:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps", 0)
    return torch.device("cpu")


def _device(torch: Any, spec: str) -> Any:
    """A canonical ``torch.device`` for ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown torch device {spec!r} for tinynet; use cpu, cuda, cuda:N (N from 0) or mps"
        )
    if device.type == "cpu":
        return torch.device("cpu")
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
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise BackendUnavailableError(
            f"tinynet backend 'torch': device {spec!r} (Apple GPU) is not available here; "
            "use device='cpu'"
        )
    return torch.device("mps", 0)


def _describe(torch: Any, device: Any) -> str:
    if device.type == "cuda":
        return f"GPU {device} ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"Apple GPU {device} (MPS)"
    return "CPU"


def load(device: str | None = None) -> TorchOps:
    try:
        import torch
    except ImportError:
        raise missing_package("torch", "torch") from None
    import array_api_compat.torch as compat

    device = _default_device(torch) if device is None else _device(torch, device)
    if device.type == "cpu":
        from ._numpy import tune_allocator

        tune_allocator()  # torch's CPU tensors come from glibc's malloc too
    return TorchOps(torch, _namespace(torch, compat), device, _describe(torch, device))
