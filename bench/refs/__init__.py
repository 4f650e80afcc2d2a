"""The implementations the training-step benchmark times.

Each module has ``available(device) -> (ok, why)`` and
``Runner(config, opt, x, y, params, device)`` whose ``run(n)`` does ``n``
training steps on the same batch, waits for the device, and returns the last
loss (a float) -- or None for the GEMM floor -- and, except Keras, whose
``reset()`` goes back to the initial parameters and a fresh optimizer state
(called before every timed block).  Modules are imported only when
their implementation is selected, so a missing optional package costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Impl:
    name: str
    module: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    per_optimizer: bool = True  # False: timed once per config (GEMM floor)
    tinynet_backend: str | None = None


IMPLS: dict[str, Impl] = {
    i.name: i
    for i in (
        Impl(
            "tinynet-numpy",
            "tinynet_impl",
            "tinynet, NumPy backend",
            {"backend_name": "numpy"},
            tinynet_backend="numpy",
        ),
        Impl(
            "tinynet-jax",
            "tinynet_impl",
            "tinynet, JAX backend (step under jax.jit)",
            {"backend_name": "jax"},
            tinynet_backend="jax",
        ),
        Impl(
            "tinynet-strict",
            "tinynet_impl",
            "tinynet, array-api-strict backend",
            {"backend_name": "strict"},
            tinynet_backend="strict",
        ),
        Impl(
            "tinynet-cupy",
            "tinynet_impl",
            "tinynet, CuPy backend",
            {"backend_name": "cupy"},
            tinynet_backend="cupy",
        ),
        Impl(
            "tinynet-torch",
            "tinynet_impl",
            "tinynet, PyTorch backend (eager, under no_grad)",
            {"backend_name": "torch"},
            tinynet_backend="torch",
        ),
        Impl(
            "tinynet-jax-fit",
            "tinynet_fit",
            "tinynet fit on JAX (per-step time of one fit call, as keras-fit)",
            {"backend_name": "jax"},
            tinynet_backend="jax",
        ),
        Impl(
            "tinynet-torch-fit-compiled",
            "tinynet_fit",
            "tinynet fit on torch, steps compiled by torch.compile (per step, as keras-fit)",
            {"backend_name": "torch", "compile_steps": True},
            tinynet_backend="torch",
        ),
        Impl("numpy-raw", "numpy_raw", "hand-written raw NumPy (in-place updates)"),
        Impl("jax-hand-jit", "jax_handwritten", "hand-written backprop in jax.numpy under jax.jit"),
        Impl("jax-grad-jit", "jax_grad", "jax.value_and_grad + jax.jit"),
        Impl("torch-eager", "torch_eager", "PyTorch eager, nn.Linear + torch.optim"),
        Impl("keras-fit", "keras_fit", "Keras 3 fit on JAX (per-step time of one fit call)"),
        Impl(
            "gemm-floor",
            "gemm_floor",
            "only the step's matmuls (np.matmul, out=)",
            per_optimizer=False,
        ),
    )
}


def module(impl: Impl):
    return importlib.import_module(f"{__name__}.{impl.module}")


def probe(impl: Impl, device: str) -> tuple[bool, str]:
    """Can ``impl`` run here?  Never raises."""
    try:
        if impl.tinynet_backend is not None:
            mod = module(impl)
            backend, why = mod.backend_for(impl.tinynet_backend, device)
            return backend is not None, why
        return module(impl).available(device)
    except Exception as err:  # an optional package that fails to import
        return False, f"{type(err).__name__}: {err}"


def build(impl: Impl, config, opt, x, y, params, device: str):
    return module(impl).Runner(config, opt, x, y, params, device, **impl.kwargs)
