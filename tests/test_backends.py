"""The array shim: selection, errors, namespace inference, import hygiene."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import tinynet as tn
from tinynet import backends


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_import_does_not_load_jax_or_cupy():
    out = _run(
        "import sys, tinynet; print(sorted(m for m in ('jax', 'cupy', 'jaxlib', "
        "'array_api_strict', 'torch', 'sklearn', 'tqdm', 'safetensors') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_unknown_backend_in_code_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown tinynet backend 'bogus'.*numpy, jax, cupy, strict"
    ):
        tn.set_backend("bogus")
    with pytest.raises(ValueError, match="valid names"):
        with tn.use_backend("tensorflow"):
            pass


def test_unknown_backend_in_env_var_is_one_line_error():
    out = _run("import tinynet; tinynet.get_backend()", TINYNET_BACKEND="bogus")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "ValueError" in last and "TINYNET_BACKEND" in last and "numpy, jax, cupy, strict" in last


def test_env_var_selects_backend_and_set_backend_switches_after_import():
    code = (
        "import tinynet, sys\n"
        "print(tinynet.get_backend().name)\n"
        "tinynet.set_backend('numpy'); print(tinynet.get_backend().name)\n"
        "with tinynet.use_backend('strict'): print(tinynet.get_backend().name)\n"
        "print(tinynet.get_backend().name)\n"
    )
    out = _run(code, TINYNET_BACKEND="strict")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["strict", "numpy", "strict", "numpy"]


def test_default_is_numpy():
    out = _run("import tinynet; b = tinynet.get_backend(); print(b.name, b.device)")
    assert out.stdout.split() == ["numpy", "cpu"]


def test_missing_package_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    import importlib.util

    real_find_spec = importlib.util.find_spec  # cupy absent also where it is installed
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real_find_spec(n, *a)
    )
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(backends._loaded, "cupy", raising=False)
    with pytest.raises(backends.BackendUnavailableError, match=r"pip install 'tinynet\[cupy\]'"):
        backends.load("cupy")


def test_broken_install_is_not_called_missing(monkeypatch):
    """torch is installed here: an import failing inside its loading is named, not
    reported as a missing package."""
    import builtins
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "array_api_compat.torch":
            raise ImportError("cannot import name 'x' from partially initialized module")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(backends, "_loaded", {})
    monkeypatch.setattr(backends, "_by_device", {})
    with pytest.raises(backends.BackendUnavailableError) as info:
        backends.load("torch", "cpu")
    message = str(info.value)
    assert "is installed but does not import (cannot import name 'x'" in message
    assert "not installed" not in message


def test_cupy_without_device_says_so(monkeypatch):
    """A cupy whose runtime reports no device gives a clear error, not CUDARuntimeError."""
    import types

    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(backends._loaded, "cupy", raising=False)
    with pytest.raises(backends.BackendUnavailableError, match="no CUDA device was found"):
        backends.load("cupy")


def test_backend_fixture_round_trip(backend, dtype):
    data = np.array([[1.5, -2.25], [3.0, 0.125]])
    a = backend.asarray(data, dtype=dtype)
    assert backends.backend_of(a) is backend
    assert backend.to_numpy(a).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(backend.to_numpy(a), data)
    ints = backend.asarray([1, 2, 3])
    assert "int" in str(ints.dtype)


def test_float64_is_real_float64(backend):
    a = backend.asarray([1.0], dtype="float64")
    b = a + backend.asarray([1e-12], dtype="float64")
    assert backend.to_numpy(b - a)[0] == pytest.approx(1e-12, rel=1e-3)


def test_mixing_libraries_raises_type_error(backend):
    if backend.name == "numpy":
        pytest.skip("needs a second backend")
    a = backend.asarray([1.0, 2.0], dtype="float32")
    with pytest.raises(TypeError, match=rf"mixed: {backend.name} and numpy.*asarray"):
        backends.namespace(a, np.zeros(2, dtype=np.float32))
    model = tn.Sequential([tn.Dense(2, 2)], backend="numpy")
    with pytest.raises(TypeError, match=f"{backend.name} array.*numpy backend"):
        model.predict(a[None, :])


def test_non_array_gets_type_error():
    with pytest.raises(TypeError, match="tinynet backend"):
        backends.namespace("not an array")


def test_jit_compiles_only_on_jax(backend):
    calls = []

    def f(a):
        calls.append(1)
        return a * 2

    fn = backend.jit(f)
    x = backend.asarray([1.0, 2.0], dtype="float32")
    for _ in range(3):
        np.testing.assert_array_equal(backend.to_numpy(fn(x)), [2.0, 4.0])
    assert len(calls) == (1 if backend.name == "jax" else 3)
    backend.synchronize()


def test_rows_is_a_slice_with_a_computed_start(backend):
    """``backend.rows(x, start, size)`` is ``x[start:start + size]`` where
    ``start`` is a 0-d array (made inside a compiled function on JAX)."""
    host = np.arange(40, dtype="float32").reshape(10, 4)
    x = backend.asarray(host)
    labels = backend.asarray(np.arange(10, dtype="int64"))
    for start, size in [(0, 3), (4, 3), (7, 3), (9, 1)]:
        s = backend.asarray(start, dtype="int32")
        got = backend.to_numpy(backend.rows(x, s, size))
        np.testing.assert_array_equal(got, host[start : start + size])
        np.testing.assert_array_equal(
            backend.to_numpy(backend.rows(labels, s, size)), np.arange(start, start + size)
        )
    fn = backend.jit(lambda x, s: backend.rows(x, s * 2, 3))
    for start in (0, 1, 3):
        got = fn(x, backend.asarray(start, dtype="int32"))
        np.testing.assert_array_equal(backend.to_numpy(got), host[2 * start : 2 * start + 3])
