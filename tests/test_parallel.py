"""Data parallelism (``fit(..., devices=N)``): the same numbers as on one device.

JAX fixes its device count when it starts, so every multi-device run is a
SUBPROCESS with fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``)
running the self-check worker ``python -m tinynet.parallel``: it trains a
small MLP (dropout, validation split, a ragged last batch) once on one device
and then data-parallel, and prints histories and final parameters as JSON.
The two-process run talks over loopback (127.0.0.1) only.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, fake_devices_env

import tinynet as tn
from tinynet import backends

HAS_JAX = importlib.util.find_spec("jax") is not None
NO_JAX = "data parallelism needs jax: pip install 'tinynet[jax]'"
needs_jax = pytest.mark.skipif(not HAS_JAX, reason=NO_JAX)
# The bar: relative agreement with the single-device run.
REL = {"float32": 1e-5, "float64": 1e-12}
TIMEOUT = 150  # seconds per subprocess; the whole file takes well under a minute idle


def _worker(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinynet.parallel", "--json", *args]


def _json_out(proc_out: str) -> dict:
    return json.loads(proc_out.strip().splitlines()[-1])


def _assert_same(run: dict, ref: dict, what: str) -> None:
    rel = REL[ref["dtype"]]

    def close(a, b, name):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        scale = max(float(np.max(np.abs(b))), 1e-30)
        np.testing.assert_allclose(a, b, rtol=rel, atol=rel * scale, err_msg=f"{what}: {name}")

    assert sorted(run["history"]) == sorted(ref["history"])
    for key, values in ref["history"].items():
        close(run["history"][key], values, f"history[{key!r}]")
    for i, (p, q) in enumerate(zip(run["params"], ref["params"], strict=True)):
        assert sorted(p) == sorted(q)
        for name in q:
            close(p[name], q[name], f"params[{i}][{name!r}]")
    for key, value in ref["evaluate"].items():
        close(run["evaluate"][key], value, f"evaluate after fit [{key!r}]")


# ------------------------------------------------------------------ no JAX needed


@pytest.mark.parametrize("name", ["numpy", "strict"])
def test_devices_above_one_need_the_jax_backend(name):
    backend, why = backends.probe(name)
    if backend is None:
        pytest.skip(why)
    x = np.zeros((8, 2), "float32")
    y = np.zeros(8, "int64")
    model = tn.Sequential([tn.Dense(2, 3), tn.Softmax()], backend=name)
    match = rf"devices=2.*needs the JAX backend.*{name} backend.*TINYNET_BACKEND=jax"
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, loss="sparse_categorical_crossentropy", batch_size=4, verbose=0, devices=2)


def test_devices_one_off_jax_is_plain_training():
    x, y = tn.datasets.spiral(samples_per_class=10, seed=1)

    def train(**kw):
        model = tn.Sequential(
            [tn.Dense(2, 8), tn.ReLU(), tn.Dense(8, 3), tn.Softmax()], backend="numpy", seed=3
        )
        history = model.fit(
            x, y, loss="sparse_categorical_crossentropy", epochs=2, batch_size=8, verbose=0, **kw
        )
        return history.history["loss"], [tn.to_numpy(p["W"]) for p in model.params if p]

    loss_a, params_a = train()
    loss_b, params_b = train(devices=1)
    assert loss_a == loss_b
    for a, b in zip(params_a, params_b, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("devices", [0, -2, True, 1.5, "2"])
def test_devices_must_be_a_positive_integer(devices):
    model = tn.Sequential([tn.Dense(2, 3), tn.Softmax()], backend="numpy")
    with pytest.raises(ValueError, match="devices must be an integer >= 1"):
        model.fit(
            np.zeros((4, 2)),
            np.zeros(4, "int64"),
            loss="sparse_categorical_crossentropy",
            verbose=0,
            devices=devices,
        )


@pytest.mark.parametrize(
    "coordinator, num, pid, match",
    [
        ("127.0.0.1", 2, 0, "HOST:PORT"),
        ("127.0.0.1:0", 2, 0, "port in 1..65535"),
        (":1234", 2, 0, "HOST:PORT"),
        ("127.0.0.1:1234", 0, 0, "num_processes must be an integer >= 1"),
        ("127.0.0.1:1234", 2, 2, r"process_id must be in 0\.\.1"),
        ("127.0.0.1:1234", 2, -1, "process_id must be an integer >= 0"),
    ],
)
def test_initialize_checks_its_arguments_before_touching_jax(coordinator, num, pid, match):
    from tinynet import parallel

    with pytest.raises(ValueError, match=match):
        parallel.initialize(coordinator, num, pid)


# ------------------------------------------------------------------ JAX, this process


@needs_jax
def test_more_devices_than_jax_has_names_both_numbers_and_the_fake_device_flag():
    import jax

    have = len(jax.devices())
    want = have + 3
    model = tn.Sequential([tn.Dense(2, 3), tn.Softmax()], backend="jax")
    with pytest.raises(ValueError) as err:
        model.fit(
            np.zeros((8, 2)),
            np.zeros(8, "int64"),
            loss="sparse_categorical_crossentropy",
            batch_size=4,
            verbose=0,
            devices=want,
        )
    text = str(err.value)
    assert f"devices={want}" in text and f"only {have} JAX device(s)" in text
    if jax.devices()[0].platform == "cpu":
        assert f"XLA_FLAGS=--xla_force_host_platform_device_count={want}" in text
        assert "before JAX starts" in text


# ------------------------------------------------------------------ JAX, fake devices


CHECKS = r"""
import json, re
import numpy as np
import tinynet as tn
from tinynet import fit_loop, parallel
from tinynet.backends import _jax_parallel

out = {}
x, y = np.zeros((64, 2), "float32"), np.zeros(64, "int64")
model = tn.Sequential([tn.Dense(2, 16), tn.ReLU(), tn.Dense(16, 3), tn.Softmax()], backend="jax")
for devices, bs in ((4, 30), (8, 16)):
    try:
        model.fit(x, y, loss="sparse_categorical_crossentropy", batch_size=bs, verbose=0,
                  devices=devices)
        out[f"{devices},{bs}"] = None
    except ValueError as err:
        out[f"{devices},{bs}"] = str(err)

# What XLA made of the step on 1 and 4 devices: all-reduce + per-device rows.
loss = tn.losses.get("sparse_categorical_crossentropy")
opt = tn.optimizers.Adam(lr=0.01)
b = model.backend
for n in (1, 4):
    dp = parallel.DataParallel(b, n)
    model.optimizer = opt
    loop = fit_loop.FitLoop(model, loss, 16, "auto", False, 0, True, dp)
    step, _ = loop._step(16, True)
    zero = b.asarray(0.0, "float32")
    carry = dp.replicate((model.params, model.state, opt.init(model.params),
                          (zero, b.asarray(0.0, "float32")), b.asarray(0, "int32")))
    data = (dp.put_data(b.asarray(x)), dp.put_data(b.asarray(y)),
            dp.replicate(b.xp.arange(64)), None)
    with b.scope():
        hlo = _jax_parallel.batch_split_in_hlo(step, carry, data)
    out[f"hlo{n}"] = {"all_reduce": hlo["all_reduce"],
                      "rows": sorted(set(re.findall(r"f32\[(\d+),16\]", hlo["hlo"])))}
print(json.dumps(out))
"""


@needs_jax
def test_fake_devices_errors_and_the_compiled_split():
    proc = subprocess.run(
        [sys.executable, "-c", CHECKS],
        capture_output=True,
        text=True,
        env=fake_devices_env(4),
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _json_out(proc.stdout)
    # batch size not divisible by the device count
    msg = out["4,30"]
    assert msg and "batch_size=30" in msg and "devices=4" in msg and "multiple of 4" in msg
    assert "28 or 32" in msg and "n=64" in msg
    # more devices than the 4 fake ones
    msg = out["8,16"]
    assert msg and "devices=8" in msg and "only 4 JAX device(s)" in msg
    assert "--xla_force_host_platform_device_count=8" in msg
    # one device: no collective, the whole batch of 16 rows; four devices: the
    # gradients are all-reduced and every device computes 16 / 4 = 4 rows.
    assert out["hlo1"]["all_reduce"] == 0 and "16" in out["hlo1"]["rows"]
    assert out["hlo4"]["all_reduce"] >= 1
    assert "4" in out["hlo4"]["rows"] and "16" not in out["hlo4"]["rows"], out["hlo4"]


@pytest.fixture(scope="module")
def fake_device_runs() -> dict:
    """One device vs 2 and 4 fake CPU devices, float32 and float64 (one process)."""
    if not HAS_JAX:
        pytest.skip(NO_JAX)
    proc = subprocess.run(
        _worker("--devices", "2,4", "--dtype", "float32,float64"),
        capture_output=True,
        text=True,
        env=fake_devices_env(4),
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _json_out(proc.stdout)
    assert out["info"]["global_devices"] == 4 and out["info"]["process_count"] == 1
    return out


def _reference(out: dict, dtype: str) -> dict:
    return next(r for r in out["runs"] if r["devices"] is None and r["dtype"] == dtype)


@needs_jax
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("devices", [2, 4])
def test_fake_devices_train_like_one_device(fake_device_runs, dtype, devices):
    # 90 training rows in batches of 16: the ragged last batch of 10 rows is
    # split on 2 devices and computed replicated on 4.
    ref = _reference(fake_device_runs, dtype)
    run = next(
        r for r in fake_device_runs["runs"] if r["devices"] == devices and r["dtype"] == dtype
    )
    assert len(ref["history"]["loss"]) == 3
    _assert_same(run, ref, f"{devices} devices, {dtype}")
    assert run["max_rel_diff"] < REL[dtype]


@needs_jax
def test_fake_devices_with_a_host_made_shuffle_train_like_one_device():
    # 4,140 training rows: from 4096 rows fit makes each epoch's order on the
    # host and places it on the mesh (below that, a compiled call does).
    proc = subprocess.run(
        _worker(
            "--devices",
            "2",
            "--dtype",
            "float64",
            "--samples",
            "4600",
            "--batch-size",
            "256",
            "--epochs",
            "2",
        ),
        capture_output=True,
        text=True,
        env=fake_devices_env(2),
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _json_out(proc.stdout)
    ref = _reference(out, "float64")
    run = next(r for r in out["runs"] if r["devices"] == 2)
    assert len(ref["history"]["loss"]) == 2
    _assert_same(run, ref, "2 devices, host shuffle")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_jax
def test_two_processes_on_loopback_train_like_one_device(fake_device_runs):
    """2 processes x 2 fake CPU devices = a 4-device mesh, gloo collectives
    over 127.0.0.1; each step runs 2 steps per dispatch (a compiled loop)."""
    port = _free_port()
    common = (
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--no-reference",
        "--dtype",
        "float32,float64",
        "--steps-per-execution",
        "2",
    )
    procs = [
        subprocess.Popen(
            _worker(*common, "--process-id", str(i)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=fake_devices_env(2),
            cwd=ROOT,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, stderr[-3000:]
            outs.append(_json_out(stdout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for i, out in enumerate(outs):
        assert out["info"] == {
            "platform": "cpu",
            "global_devices": 4,
            "local_devices": 2,
            "process_index": i,
            "process_count": 2,
        }
        for run in out["runs"]:
            assert run["devices"] == 4
            _assert_same(
                run, _reference(fake_device_runs, run["dtype"]), f"process {i} of 2, {run['dtype']}"
            )
    # both processes end with the same parameters
    for a, b in zip(outs[0]["runs"], outs[1]["runs"], strict=True):
        assert a["params"] == b["params"] and a["history"] == b["history"]


def test_worker_help_does_not_need_devices():
    proc = subprocess.run(
        [sys.executable, "-m", "tinynet.parallel", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=fake_devices_env(1),
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"--coordinator HOST:PORT", proc.stdout)
