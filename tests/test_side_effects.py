"""What importing and using tinynet leaves alone in the user's process: JAX's
x64 flag, torch's threads, default dtype and grad mode, the module name
``backends``, the allocator at import time.

Each check runs in a fresh interpreter (a flag set by an earlier test, or a
module imported by one, would hide a leak)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str, cwd) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_nothing_named_backends_is_installed_and_a_local_folder_cannot_shadow_it(tmp_path):
    folder = tmp_path / "backends"
    folder.mkdir()
    (folder / "__init__.py").write_text("raise ImportError('the user backends package')\n")
    out = _run(
        """
        import importlib.util, sys
        cwd = sys.path.pop(0)  # first: what is installed, without the user's folder
        print(importlib.util.find_spec("backends") is None)
        sys.path.insert(0, cwd)
        import numpy as np
        import tinynet as tn
        m = tn.Sequential([tn.Dense(3), tn.Softmax()], input_shape=(2,))
        print(tn.backends.__name__, tuple(m.predict(np.ones((4, 2))).shape))
        """,
        tmp_path,
    )
    assert out.split() == ["True", "tinynet.backends", "(4,", "3)"]


def test_import_loads_no_backend_and_no_array_library_but_numpy(tmp_path):
    out = _run(
        """
        import sys
        import tinynet
        print(sorted(tinynet.backends._loaded), "jax" in sys.modules, "torch" in sys.modules)
        """,
        tmp_path,
    )
    assert out.split() == ["[]", "False", "False"]


def test_malloc_tuning_happens_when_numpy_is_first_used_and_can_be_turned_off(tmp_path):
    out = _run(
        """
        import os
        from unittest import mock
        import tinynet
        from tinynet.backends import _numpy
        with mock.patch.object(_numpy, "tune_allocator", wraps=_numpy.tune_allocator) as tune:
            import tinynet.backends
            calls_at_import = tune.call_count
            tinynet.get_backend("numpy")
            calls_after_use = tune.call_count
        os.environ[_numpy.MALLOC_ENV] = "0"
        print(calls_at_import, calls_after_use, _numpy.tune_allocator())
        """,
        tmp_path,
    )
    assert out.split() == ["0", "1", "False"]


JAX_RUN = """
import numpy as np
import jax, jax.numpy as jnp
import tinynet as tn

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 5))
y = rng.integers(0, 3, size=96)
results = {}
for backend in ("numpy", "jax"):
    for dtype in ("float32", "float64"):
        model = tn.Sequential(
            [tn.Dense(8), tn.Tanh(), tn.Dropout(0.2), tn.Dense(3), tn.Softmax()],
            input_shape=(5,), dtype=dtype, seed=3, backend=backend,
        )
        hist = model.fit(x, y, loss="sparse_categorical_crossentropy", epochs=2,
                         batch_size=32, verbose=0, nan_guard=True)
        value, grads = model.loss_and_grads(x[:10], y[:10], "sparse_categorical_crossentropy")
        model.save(f"{backend}-{dtype}.safetensors")
        loaded = tn.load(f"{backend}-{dtype}.safetensors", backend=backend)
        results[backend, dtype] = (
            hist.history["loss"],
            tn.to_numpy(model.predict(x)),
            float(tn.to_numpy(value)),
            model.evaluate(x, y, loss="sparse_categorical_crossentropy")["loss"],
            tn.to_numpy(loaded.predict(x)),
            str(model.params[0]["W"].dtype),
        )
print(jax.config.jax_enable_x64, jnp.ones(2).dtype, jnp.asarray(np.ones(2)).dtype)
for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
    a, b = results["numpy", dtype], results["jax", dtype]
    np.testing.assert_allclose(a[0], b[0], rtol=tol)
    np.testing.assert_allclose(a[1], b[1], rtol=tol, atol=tol)
    np.testing.assert_allclose(a[2], b[2], rtol=tol)
    np.testing.assert_allclose(a[3], b[3], rtol=tol)
    np.testing.assert_array_equal(b[1], b[4])
    print(dtype, b[5], b[1].dtype)
"""


def test_jax_float64_models_train_without_switching_x64_on_for_the_process(tmp_path):
    """A float32 and a float64 model trained, evaluated, saved and loaded on
    JAX leave ``jax_enable_x64`` off and the user's arrays float32, while
    the float64 model really is float64 and matches NumPy to 1e-12."""
    pytest.importorskip("jax")
    out = _run(JAX_RUN, tmp_path).split("\n")
    assert out[0] == "False float32 float32"
    assert out[1] == "float32 float32 float32"
    assert out[2] == "float64 float64 float64"


TORCH_RUN = """
import numpy as np
import torch
before = (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),
          torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())
import tinynet as tn

rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 5)), rng.integers(0, 3, size=64)
model = tn.Sequential([tn.Dense(8), tn.Tanh(), tn.Dropout(0.2), tn.Dense(3), tn.Softmax()],
                      input_shape=(5,), dtype="float64", seed=3, backend="torch")
model.fit(x, y, loss="sparse_categorical_crossentropy", epochs=2, batch_size=16, verbose=0,
          nan_guard=True)
model.evaluate(x, y, loss="sparse_categorical_crossentropy")
model.predict(x)
model.save("torch.safetensors")
tn.load("torch.safetensors", backend="torch")
after = (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),
         torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())
w = torch.ones(2, requires_grad=True)
(w * 3).sum().backward()  # the user's autograd works as before
print(before == after, after[2], after[3], w.grad.tolist(), model.params[0]["W"].dtype)
"""


def test_torch_threads_default_dtype_and_grad_mode_are_left_alone(tmp_path):
    """Loading the torch backend and training a float64 model on it changes
    no process-wide torch setting (threads, default dtype, grad mode), and the
    user's own autograd keeps working."""
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    out = _run(TORCH_RUN, tmp_path).split()
    assert out == ["True", "torch.float32", "True", "[3.0,", "3.0]", "torch.float64"]
