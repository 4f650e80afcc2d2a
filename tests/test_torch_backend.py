"""The PyTorch backend beyond the shared matrix: device choice, float64 on
MPS, the GPU code paths (run on the CPU), PyTorch autograd as an oracle for
every backend, checkpoints across backends, Threefry bits on many counters.

Skipped, with the reason, when torch is not installed or when
``TINYNET_BACKEND`` restricts the run to another backend."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TOL, assert_close, to_numpy

import tinynet as tn
from tinynet import backends
from tinynet import random as tnrandom
from tinynet.backends.ops import Ops
from tinynet.tree import tree_leaves

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

SCCE = "sparse_categorical_crossentropy"


@pytest.fixture
def torch_ops():
    """The torch backend on the CPU, current for the test."""
    chosen = os.environ.get(backends.ENV_VAR)
    if chosen and chosen.strip().lower() != "torch":
        pytest.skip(f"{backends.ENV_VAR}={chosen} restricts the run to another backend")
    ops, why = backends.probe("torch", "cpu")
    if ops is None:
        pytest.skip(why)
    with backends.use_backend("torch", "cpu"):
        yield ops


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in (backends.ENV_VAR, "TINYNET_DEVICE")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300
    )


def _bits(a) -> np.ndarray:
    a = np.ascontiguousarray(to_numpy(a))
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


# ---------------------------------------------------------------- devices


def test_one_ops_object_per_device_whatever_the_spelling(torch_ops):
    assert torch_ops.device == torch.device("cpu") and torch_ops.host_memory
    assert backends.load("torch", " CPU ") is torch_ops
    assert backends.load("torch", torch.device("cpu")) is torch_ops
    assert backends.backend_of(torch.ones(2)) is torch_ops
    assert backends.get_backend() is torch_ops  # use_backend("torch", "cpu") in the fixture
    with backends.use_backend("numpy"):
        assert backends.get_backend("torch") is torch_ops  # the device chosen for torch
    t = torch_ops.asarray(np.arange(3.0))
    assert t.dtype == torch.float64 and t.device.type == "cpu"  # NumPy's dtype rules


def test_device_from_the_environment_and_set_backend():
    out = _run(
        "import tinynet as tn\n"
        "b = tn.get_backend(); print(b.name, b.device)\n"
        "print(tn.get_backend('numpy').device)\n"  # CPU only: TINYNET_DEVICE does not apply
        "b = tn.set_backend('torch', device='cpu'); print(b.device, tn.get_backend().device)\n"
        "with tn.use_backend('numpy'): print(tn.get_backend().name)\n",
        TINYNET_BACKEND="torch",
        TINYNET_DEVICE="cpu",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "cpu", "cpu", "cpu", "cpu", "numpy"]


def test_unknown_device_is_a_one_line_error():
    out = _run(
        "import tinynet; tinynet.get_backend()", TINYNET_BACKEND="torch", TINYNET_DEVICE="tpu"
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "ValueError" in last and "unknown torch device 'tpu'" in last and "cuda:N" in last
    with pytest.raises(ValueError, match="CPU only.*device='cuda'.*torch"):
        tn.set_backend("numpy", device="cuda")


def test_missing_devices_say_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error for a missing CUDA device cannot happen")
    with pytest.raises(backends.BackendUnavailableError, match="'cuda:1'.*sees no CUDA device"):
        backends.load("torch", "cuda:1")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(backends.BackendUnavailableError, match="'mps'.*not available"):
            backends.load("torch", "mps")


def _fake_device_ops(device) -> Ops:
    """A torch ops object for ``device`` that never allocates there (only
    what happens before any transfer can be tested)."""
    import array_api_compat.torch as xp

    from tinynet.backends._torch import TorchOps

    return TorchOps(torch, xp, device, "fake")


def test_float64_on_mps_names_the_dtype_and_the_device():
    mps = _fake_device_ops(torch.device("mps", 0))
    assert not mps.host_memory
    for attempt in (
        lambda: mps.dtype("float64"),
        lambda: mps.asarray(np.zeros(3)),  # float64 host data
        lambda: mps.asarray(np.zeros(3, np.float32), "float64"),
        lambda: mps.asarray(torch.zeros(3, dtype=torch.float64)),  # a CPU tensor
    ):
        with pytest.raises(ValueError, match=r"float64 is not available on the torch device mps"):
            attempt()
    assert mps.dtype("float32") == torch.float32
    assert mps.default_float_dtype() == torch.float32


def test_data_parallelism_points_at_jax(torch_ops):
    model = tn.Sequential([tn.Dense(2, 3), tn.Softmax()], backend="torch")
    x, y = np.ones((8, 2)), np.zeros(8, dtype=int)
    with pytest.raises(ValueError, match="data parallelism needs the JAX backend.*torch"):
        model.fit(x, y, loss=SCCE, devices=2, verbose=0)


def test_mixing_two_devices_names_both(torch_ops, monkeypatch):
    other = _fake_device_ops(torch.device("cpu"))  # a second ops object, as a GPU's would be
    other.device = torch.device("meta")
    monkeypatch.setitem(backends._by_device, ("torch", "meta"), other)
    with pytest.raises(TypeError, match="two torch devices were mixed: cpu and meta"):
        backends.namespace(torch.ones(2), torch.ones(2, device="meta"))


# ---------------------------------------------------------------- the GPU code paths


@pytest.fixture
def device_path(torch_ops, monkeypatch):
    """The torch CPU ops with ``host_memory`` off: everything runs as on a
    GPU (device-side batch starts and NaN guard, array fold_in), on the CPU."""
    ops = copy.copy(torch_ops)
    ops.host_memory = False
    monkeypatch.setitem(backends._by_device, ("torch", "cpu"), ops)
    for key in ("torch", "torch@cpu"):
        monkeypatch.setitem(backends._loaded, key, ops)
    return ops


def test_device_path_rows_and_run_block_equal_the_portable_ones(device_path):
    ops = device_path
    x = ops.asarray(np.arange(40.0).reshape(10, 4))
    for start in (0, 3, 7):
        got = ops.rows(x, ops.asarray(start, "int32"), 3)
        np.testing.assert_array_equal(to_numpy(got), to_numpy(Ops.rows(ops, x, start, 3)))
    values = ops.asarray([1.0, 2.0, -10.0, 4.0, 5.0], "float64")

    def step(carry, data):
        total, i = carry
        return total + data[0][i], i + 1

    def guard(carry):
        return ops.xp.astype(carry[0] < 0, ops.xp.int32)

    for n in (1, 2, 5):
        start = (ops.asarray(0.0, "float64"), ops.asarray(0, "int32"))
        got, status = ops.run_block(step, n, start, (values,), guard)
        want, want_status = Ops.run_block(ops, step, n, start, (values,), guard)
        assert [float(a) for a in got] == [float(a) for a in want]
        assert int(status) == want_status


def _host_reads(monkeypatch, ops) -> dict:
    """Count every read of a tensor's value by the host (item, int, float,
    bool, index, to_numpy) while ``ops.run_block`` runs a block of steps."""
    counts = {"reads": 0, "blocks": 0, "active": False}

    def counted(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if counts["active"]:
                counts["reads"] += 1
            return real(self, *args, **kwargs)

        return read

    for name in ("item", "__int__", "__float__", "__bool__", "__index__", "numpy", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    run_block = ops.run_block

    def block(*args, **kwargs):
        counts["active"], counts["blocks"] = True, counts["blocks"] + 1
        try:
            return run_block(*args, **kwargs)
        finally:
            counts["active"] = False

    monkeypatch.setattr(ops, "run_block", block)
    return counts


def _guarded_run(name: str) -> tuple[tn.Sequential, dict]:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    model = tn.Sequential(
        [tn.Dense(16), tn.Tanh(), tn.Dropout(0.3), tn.Dense(3), tn.Softmax()],
        input_shape=(5,), dtype="float64", seed=2, backend=name,
    )  # fmt: skip
    history = model.fit(
        x, y, loss=SCCE, epochs=2, batch_size=16, verbose=0, nan_guard=True, seed=4
    )  # fmt: skip
    return model, history.history


def test_fit_on_the_device_path_reads_nothing_per_step_and_equals_the_cpu_path(
    torch_ops, monkeypatch
):
    """With dropout, shuffling and the NaN guard: no host read inside any
    block of steps (on a GPU each would wait for the queue), and the CPU
    path's numbers (Adam's bias corrections are then 0-d tensor maths instead
    of Python floats: the parameters agree to rounding)."""
    cpu_model, cpu_history = _guarded_run("torch")
    ops = copy.copy(torch_ops)
    ops.host_memory = False
    monkeypatch.setitem(backends._by_device, ("torch", "cpu"), ops)
    for key in ("torch", "torch@cpu"):
        monkeypatch.setitem(backends._loaded, key, ops)
    counts = _host_reads(monkeypatch, ops)
    model, history = _guarded_run("torch")
    assert model.backend is ops and model.step == 26  # 13 steps per epoch
    assert counts["blocks"] == 4 and counts["reads"] == 0, counts  # full batches + ragged, x2
    for k in cpu_history:
        np.testing.assert_allclose(history[k], cpu_history[k], rtol=1e-12, err_msg=k)
    for (path, a), (_, b) in zip(tree_leaves(model.params), tree_leaves(cpu_model.params)):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-12, atol=1e-15, err_msg=path)


def test_the_nan_guard_on_the_device_path_keeps_the_last_good_step(device_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)), rng.integers(0, 3, 64)
    model = tn.Sequential(
        [tn.Dense(8), tn.ReLU(), tn.Dense(3), tn.Softmax()],
        input_shape=(4,), dtype="float64", seed=0, backend="torch",
    )  # fmt: skip
    assert model.backend is device_path
    model.fit(
        x, y, loss=SCCE, optimizer=tn.optimizers.SGD(1e300), epochs=3, batch_size=16,
        shuffle=False, verbose=0, callbacks=[tn.TerminateOnNaN()], steps_per_execution=4,
    )  # fmt: skip
    assert model.step == 1 and "epoch 1, step 2 " in model.stop_reason
    assert all(bool(torch.isfinite(p).all()) for _, p in tree_leaves(model.params))


# ---------------------------------------------------------------- PyTorch autograd as an oracle

HEADS = {
    "softmax-scce": (lambda: [tn.Softmax()], SCCE),
    "sigmoid-bce": (lambda: [tn.Sigmoid()], "binary_crossentropy"),
    "linear-mse": (lambda: [], "mse"),
}


def _torch_loss(head: str, out, y):
    F = torch.nn.functional
    if head == "softmax-scce":
        return F.cross_entropy(out, y)  # Softmax + sparse CE is CE on the logits
    if head == "sigmoid-bce":  # Sigmoid + BCE is fused too: BCE on the logits
        return F.binary_cross_entropy_with_logits(out, y)
    return ((out - y) ** 2).mean()


@pytest.mark.parametrize("head", sorted(HEADS))
def test_loss_and_grads_equal_pytorch_autograd(backend, head):
    """An MLP's loss and every parameter gradient (float64) against the same
    model written in torch and differentiated by ``torch.autograd``."""
    extra, loss = HEADS[head]
    k = 1 if head == "sigmoid-bce" else 3
    model = tn.Sequential(
        [tn.Dense(6), tn.Tanh(), tn.Dense(5), tn.ELU(), tn.Dense(k, weight_l2=0.01), *extra()],
        input_shape=(4,), dtype="float64", seed=1,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4))
    y = rng.integers(0, 3, 12) if head == "softmax-scce" else rng.uniform(size=(12, k))
    if head == "sigmoid-bce":
        y = np.round(y)
    value, grads = model.loss_and_grads(x, y, loss)

    dense = [(i, p) for i, p in enumerate(model.params) if p]
    weights = {
        (i, n): torch.tensor(to_numpy(a), dtype=torch.float64, requires_grad=True)
        for i, p in dense
        for n, a in p.items()
    }
    with torch.enable_grad():  # the torch backend's fixture runs in its no_grad scope
        h = torch.tensor(x)
        h = torch.tanh(h @ weights[0, "W"] + weights[0, "b"])
        h = torch.nn.functional.elu(h @ weights[2, "W"] + weights[2, "b"])
        out = h @ weights[4, "W"] + weights[4, "b"]
        target = torch.tensor(y)
        ref = _torch_loss(head, out, target) + 0.01 * (weights[4, "W"] ** 2).sum()
        ref.backward()
    assert_close(value, ref.item(), "float64", f"{head} loss")
    for (i, n), w in weights.items():
        assert_close(grads[i][n], w.grad.numpy(), "float64", f"{head} d{n}{i}")


# ---------------------------------------------------------------- checkpoints, bits


def test_checkpoint_torch_to_numpy_and_back_is_bit_identical(torch_ops, tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    for dtype in ("float32", "float64"):
        model = tn.Sequential(
            [tn.Dense(5), tn.ReLU(), tn.Dropout(0.2), tn.Dense(2), tn.Softmax()],
            input_shape=(3,), dtype=dtype, seed=3, backend="torch",
        )  # fmt: skip
        model.fit(x, y, loss=SCCE, optimizer="adam", epochs=2, batch_size=8, verbose=0)
        first = tmp_path / f"torch-{dtype}.safetensors"
        model.save(str(first))
        on_numpy = tn.load(first, backend="numpy")
        second = tmp_path / f"numpy-{dtype}.safetensors"
        on_numpy.save(str(second))
        back = tn.load(second, backend="torch")
        assert back.backend is torch_ops and (back.epoch, back.step) == (model.epoch, model.step)
        for other in (on_numpy, back):
            tree = {"params": other.params, "opt": other.opt_state}
            want = dict(tree_leaves({"params": model.params, "opt": model.opt_state}))
            for path, leaf in tree_leaves(tree):
                np.testing.assert_array_equal(_bits(leaf), _bits(want[path]), err_msg=path)
        # and training goes on the same way from either copy
        a = back.fit(x, y, loss=SCCE, epochs=1, batch_size=8, verbose=0).history["loss"]
        b = on_numpy.fit(x, y, loss=SCCE, epochs=1, batch_size=8, verbose=0).history["loss"]
        np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == "float64" else 1e-5)


def test_threefry_on_many_counters_equals_jax_random(torch_ops):
    """The int64 form of the block against ``jax.random`` on 2**16 counters
    with every carry case, and the draws built on it (uint64 bits, floats,
    permutation)."""
    jax = pytest.importorskip("jax")
    from jax.extend.random import threefry_2x32

    rng = np.random.default_rng(5)
    key = np.array([0xFFFFFFFF, 0x80000001], dtype=np.uint32)
    count = rng.integers(0, 2**32, 2**16, dtype=np.uint32)
    count[:4] = [0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000]
    ours = tnrandom.threefry_2x32(torch_ops.asarray(key), torch_ops.asarray(count))
    want = threefry_2x32(jax.numpy.asarray(key), jax.numpy.asarray(count))
    np.testing.assert_array_equal(to_numpy(ours), np.asarray(want))
    with jax.enable_x64(True):
        jk, tk = jax.random.PRNGKey(-7), tnrandom.key(-7, torch_ops)
        pairs = [
            (tnrandom.bits(tk, (999,), "uint64"), jax.random.bits(jk, (999,), "uint64")),
            (tnrandom.uniform(tk, (999,)), jax.random.uniform(jk, (999,), "float32")),
            (tnrandom.uniform(tk, (999,), "float64"), jax.random.uniform(jk, (999,), "float64")),
        ]
    for got, want in pairs:
        np.testing.assert_array_equal(_bits(got), _bits(np.asarray(want)))
    numpy_perm = tnrandom.permutation(tnrandom.key(-7, "numpy"), 5000)
    np.testing.assert_array_equal(to_numpy(tnrandom.permutation(tk, 5000)), numpy_perm)


def test_float32_training_stays_float32_and_tolerances_hold(torch_ops):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    runs = {}
    for name in ("numpy", "torch"):
        model = tn.Sequential(
            [tn.Dense(8), tn.GELU(), tn.Dense(3), tn.Softmax()],
            input_shape=(4,), seed=0, backend=name,
        )  # fmt: skip
        model.fit(x, y, loss=SCCE, epochs=2, batch_size=16, verbose=0)
        runs[name] = [to_numpy(p["W"]) for p in model.params if p]
        assert all(w.dtype == np.float32 for w in runs[name])
    for a, b in zip(runs["torch"], runs["numpy"], strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL["float32"]["rtol"] * 50, atol=1e-5)


# ---------------------------------------------------------------- torch.compile

COMPILED_RUN = """
import os, sys, warnings
import numpy as np
import tinynet as tn

rng = np.random.default_rng(0)
x, y = rng.normal(size=(70, 3)), rng.integers(0, 3, 70)  # 4 full batches of 16 and 6 rows

def run():
    model = tn.Sequential([tn.Dense(8), tn.Tanh(), tn.Dropout(0.25), tn.Dense(3), tn.Softmax()],
                          input_shape=(3,), dtype="float64", seed=1, backend="torch")
    history = model.fit(x, y, loss="sparse_categorical_crossentropy", epochs=2, batch_size=16,
                        verbose=0, nan_guard=True)
    return history.history["loss"], tn.to_numpy(model.params[0]["W"])

ops = tn.get_backend("torch")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", RuntimeWarning)
    compiled = run()
notices = [str(w.message) for w in caught if "tinynet: torch.compile" in str(w.message)]
still_compiling = ops.compile_steps
ops.compile_steps = False
eager = run()
np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-12)
np.testing.assert_allclose(compiled[1], eager[1], rtol=1e-12, atol=1e-15)
print(still_compiling, len(notices), notices[0].split(";")[0] if notices else "")
"""


def test_compiled_steps_train_like_eager_ones(torch_ops, tmp_path):
    """``TINYNET_TORCH_COMPILE=1``: fit's steps (dropout, shuffling, NaN
    guard) run through torch.compile and give the eager numbers."""
    out = _run(
        COMPILED_RUN,
        TINYNET_TORCH_COMPILE="1",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "0"], out.stdout


def test_a_failing_compiler_means_one_notice_and_eager_training(torch_ops, tmp_path):
    out = _run(
        COMPILED_RUN,
        TINYNET_TORCH_COMPILE="1",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
        CXX=str(tmp_path / "no-such-c++"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    assert words[:2] == ["False", "1"], out.stdout
    assert "tinynet: torch.compile failed" in out.stdout and "InvalidCxxCompiler" in out.stdout


def test_namespace_maximum_and_minimum_with_numbers_equal_array_api_compat(torch_ops):
    """The torch namespace's ``maximum``/``minimum`` with a Python number
    (``clamp_min``/``clamp_max``) against array-api-compat's: values, NaN,
    signed zeros, dtypes; integer tensors and tensor pairs go to compat."""
    import array_api_compat.torch as compat

    xp = torch_ops.xp
    values = [float("nan"), -0.0, 0.0, -1.5, 2.0, float("inf"), -float("inf")]
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(values, dtype=dtype)
        for fn in ("maximum", "minimum"):
            for number in (0.0, 0, -1, 1.25):
                for got, want in (
                    (getattr(xp, fn)(x, number), getattr(compat, fn)(x, number)),
                    (getattr(xp, fn)(number, x), getattr(compat, fn)(number, x)),
                ):
                    assert got.dtype == want.dtype == dtype
                    np.testing.assert_array_equal(_bits(got), _bits(want))
    ints = torch.tensor([-3, 4])
    np.testing.assert_array_equal(to_numpy(xp.maximum(ints, 0)), [0, 4])
    pair = xp.minimum(torch.tensor([1.0, 5.0]), torch.tensor([3.0, 2.0]))
    np.testing.assert_array_equal(to_numpy(pair), [1.0, 2.0])
