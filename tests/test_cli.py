"""The ``tinynet`` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import backends


def tinynet(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tinynet", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def test_help_lists_commands_without_importing_jax():
    out = tinynet("--help")
    assert out.returncode == 0
    for command in ("train", "evaluate", "predict", "info", "compare-backends", "bench"):
        assert command in out.stdout
    code = (
        "import sys, tinynet.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('jax' in sys.modules)"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert probe.stdout.strip().splitlines()[-1] == "False"


def test_train_save_evaluate_predict(tmp_path):
    model_path = tmp_path / "spiral.safetensors"
    plot_path = tmp_path / "curves.png"
    out = tinynet(
        "train",
        "--dataset",
        "spiral",
        "--hidden",
        "64,64",
        "--epochs",
        "60",
        "--lr",
        "0.01",
        "--quiet",
        "--save",
        str(model_path),
        "--plot",
        str(plot_path),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ")
    accuracy = float(lines[-1].split(": ")[1])
    assert 0.75 < accuracy <= 1.0
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    evaluated = tinynet("evaluate", str(model_path), "--dataset", "spiral")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"accuracy: {accuracy:.4f}" in evaluated.stdout  # the same test split

    inputs = np.array([[0.0, 0.5], [-0.5, 0.0]], dtype=np.float32)
    np.save(tmp_path / "x.npy", inputs)
    predicted = tinynet(
        "predict", str(model_path), str(tmp_path / "x.npy"), "--output", str(tmp_path / "out.npy")
    )
    assert predicted.returncode == 0, predicted.stderr
    probs = np.load(tmp_path / "out.npy")
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    rows = [line.split("\t") for line in predicted.stdout.strip().splitlines()[-2:]]
    assert [int(r[1]) for r in rows] == list(probs.argmax(axis=1))


def test_bad_values_get_one_line_errors(tmp_path):
    bad_flag = tinynet("train", "--backend", "bogus")
    assert bad_flag.returncode == 2
    assert "invalid choice: 'bogus'" in bad_flag.stderr and "numpy" in bad_flag.stderr
    bad_env = tinynet("train", env={"TINYNET_BACKEND": "bogus"})
    assert bad_env.returncode == 2
    assert bad_env.stderr.strip().count("\n") == 0
    assert "TINYNET_BACKEND" in bad_env.stderr and "numpy, jax, cupy, strict" in bad_env.stderr
    missing = tinynet("evaluate", str(tmp_path / "nope.safetensors"))
    assert missing.returncode == 2 and "nope.safetensors" in missing.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    junk = tinynet("evaluate", str(tmp_path / "junk.safetensors"), "--dataset", "spiral")
    assert junk.returncode == 2 and "junk.safetensors" in junk.stderr
    assert "Traceback" not in junk.stderr


def test_info_reports_every_backend():
    out = tinynet("info", env={"TINYNET_BACKEND": "strict"})
    assert out.returncode == 0, out.stderr
    assert "default backend: strict (chosen by TINYNET_BACKEND=strict)" in out.stdout
    for name in backends.BACKEND_NAMES:
        assert f"  {name}" in out.stdout
    if backends.probe("cupy")[0] is None:
        assert "cupy    unavailable:" in out.stdout


def test_backend_flag_and_env_var_agree():
    pytest.importorskip("jax")
    args = ("train", "--dataset", "spiral", "--epochs", "2", "--quiet", "--hidden", "8")
    by_flag = tinynet(*args, "--backend", "jax")
    by_env = tinynet(*args, env={"TINYNET_BACKEND": "jax"})
    assert by_flag.returncode == 0 and by_env.returncode == 0, by_flag.stderr + by_env.stderr
    assert "with the jax backend" in by_flag.stdout and "with the jax backend" in by_env.stdout
    assert by_flag.stdout.splitlines()[-1] == by_env.stdout.splitlines()[-1]


def test_checkpoints_without_a_dataset_record_still_load(tmp_path):
    import tinynet as tn
    from tinynet.checkpoint import CheckpointError, saved_dataset

    model = tn.Sequential([tn.Dense(2, 3), tn.Softmax()])
    model.save(tmp_path / "old.safetensors")  # the library's save records no dataset
    assert saved_dataset(tmp_path / "old.safetensors") is None
    assert tn.load(tmp_path / "old.safetensors").input_features == 2
    out = tinynet("evaluate", str(tmp_path / "old.safetensors"), "--dataset", "spiral")
    assert out.returncode == 0, out.stderr
    # the record is covered by the checksum like all metadata
    from tinynet.checkpoint import save

    save(model, tmp_path / "new.safetensors", dataset={"name": "spiral", "input_shape": [2]})
    blob = (tmp_path / "new.safetensors").read_bytes()
    assert blob.count(b"spiral") == 1
    (tmp_path / "new.safetensors").write_bytes(blob.replace(b"spiral", b"spiraL"))
    with pytest.raises(CheckpointError, match="checksum"):
        tn.load(tmp_path / "new.safetensors")
