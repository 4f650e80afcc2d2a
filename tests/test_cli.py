"""The ``tinynet`` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tinynet import backends


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


def test_info_lists_extras_and_the_device_of_each_backend():
    import re
    from importlib import metadata
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    out = tinynet("info")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    listed = lines[lines.index("extras (pip install 'tinynet[EXTRA]'):") + 1 :]
    assert [line.split()[0] for line in listed] == list(extras)
    for line, requirements in zip(listed, extras.values()):
        missing = []
        for package in (re.match(r"[\w.-]+", r)[0] for r in requirements):
            try:
                assert f"{package} {metadata.version(package)}" in line
            except metadata.PackageNotFoundError:
                missing.append(package)
        assert ("missing " + ", ".join(missing) if missing else "installed") in line
    for name in backends.BACKEND_NAMES:
        backend, _ = backends.probe(name)
        if backend is not None:
            assert f"  {name:7s} {backend.version:10s} " in out.stdout
            assert f"computes on {backend.device}" in out.stdout


def test_backend_flag_and_env_var_agree():
    pytest.importorskip("jax")
    args = ("train", "--dataset", "spiral", "--epochs", "2", "--quiet", "--hidden", "8")
    by_flag = tinynet(*args, "--backend", "jax")
    by_env = tinynet(*args, env={"TINYNET_BACKEND": "jax"})
    assert by_flag.returncode == 0 and by_env.returncode == 0, by_flag.stderr + by_env.stderr
    assert "with the jax backend" in by_flag.stdout and "with the jax backend" in by_env.stdout
    assert by_flag.stdout.splitlines()[-1] == by_env.stdout.splitlines()[-1]


# ------------------------------------------------------------------ issue 17

QUICK = ("--epochs", "3", "--hidden", "8")


@pytest.fixture(scope="module")
def spiral_model(tmp_path_factory):
    """A model trained by ``tinynet train --dataset spiral --save``."""
    path = tmp_path_factory.mktemp("spiral") / "m.safetensors"
    out = tinynet("train", "--dataset", "spiral", *QUICK, "--quiet", "--save", str(path))
    assert out.returncode == 0, out.stderr
    return path


def test_predict_reads_npz_like_train_and_evaluate(spiral_model, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(4) % 3)
    np.savez(tmp_path / "split.npz", x_train=x[:2], x_test=x)
    from_npy = tinynet("predict", str(spiral_model), str(tmp_path / "x.npy"))
    from_npz = tinynet("predict", str(spiral_model), str(tmp_path / "xy.npz"))  # its "x"
    from_test = tinynet("predict", str(spiral_model), str(tmp_path / "split.npz"))  # "x_test"
    by_key = tinynet("predict", str(spiral_model), str(tmp_path / "split.npz"), "--key", "x_train")
    for out in (from_npy, from_npz, from_test, by_key):
        assert out.returncode == 0, out.stderr
    assert from_npz.stdout == from_npy.stdout == from_test.stdout
    assert by_key.stdout.splitlines() == from_npy.stdout.splitlines()[:3]
    missing = tinynet("predict", str(spiral_model), str(tmp_path / "split.npz"), "--key", "nope")
    assert missing.returncode == 2
    assert "x_train, x_test" in missing.stderr and "--key" in missing.stderr


def test_predict_prints_a_documented_header(spiral_model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), dtype=np.float32))
    out = tinynet(
        "predict", str(spiral_model), str(tmp_path / "x.npy"), "--output", str(tmp_path / "probs")
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "index\tclass\tprobability"
    assert [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2"]
    probs = np.load(tmp_path / "probs.npy")  # np.save's suffix, and the message says so
    assert f"to {tmp_path / 'probs.npy'}" in out.stderr
    assert [float(line.split("\t")[2]) for line in lines[1:]] == pytest.approx(
        probs.max(axis=1), abs=1e-4
    )
    help_text = tinynet("predict", "--help").stdout
    for column in ("index", "class", "probability"):
        assert f"  {column} " in help_text


def test_predict_empty_input_is_an_error(spiral_model, tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 2), dtype=np.float32))
    out = tinynet("predict", str(spiral_model), str(tmp_path / "empty.npy"))
    assert out.returncode == 2 and out.stdout == ""
    assert "empty.npy is empty" in out.stderr


def test_evaluate_uses_the_dataset_recorded_at_save(spiral_model):
    out = tinynet("evaluate", str(spiral_model))  # no --dataset: spiral, not digits
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "spiral: 180 samples"
    from tinynet.checkpoint import saved_dataset

    assert saved_dataset(spiral_model) == {"name": "spiral", "input_shape": [2]}
    pytest.importorskip("sklearn")
    wrong = tinynet("evaluate", str(spiral_model), "--dataset", "digits")
    assert wrong.returncode == 2
    assert "trained on spiral" in wrong.stderr and "--dataset spiral" in wrong.stderr
    assert wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr


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


def test_npz_with_only_x_y_holds_out_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = (rng.normal(size=(300, 2)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    model = tmp_path / "m.safetensors"
    out = tinynet(
        "train", "--dataset", str(tmp_path / "xy.npz"), *QUICK, "--quiet", "--save", str(model)
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "/ 60 test samples" in lines[0]
    assert lines[1] == (
        "xy.npz has no x_test/y_test: 60 of its samples (20%, seed 0) are held out as the "
        "test split"
    )
    assert lines[-1].startswith("test accuracy: ")
    evaluated = tinynet("evaluate", str(model))  # the recorded file, the same split
    assert evaluated.returncode == 0, evaluated.stderr
    assert "xy.npz: 60 samples" in evaluated.stdout
    assert evaluated.stdout.splitlines()[-1] == lines[-1].replace("test ", "")


EPOCH_LINE = (
    r"epoch \d+: loss: \d+\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d+\.\d{4} - "
    r"val_accuracy: \d\.\d{4}"
)


def _epoch_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("epoch ")]


def test_log_file_gets_epoch_lines_and_no_progress_bar_fragments():
    import re

    out = tinynet("train", "--dataset", "spiral", *QUICK)  # stderr is a pipe, not a terminal
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = _epoch_lines(out.stdout)
    assert len(lines) == 3 and all(re.fullmatch(EPOCH_LINE, line) for line in lines)
    quiet = tinynet("train", "--dataset", "spiral", *QUICK, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and _epoch_lines(quiet.stdout) == []
    assert quiet.stdout.splitlines()[1:] == out.stdout.splitlines()[4:]  # less, not different
    help_text = " ".join(tinynet("train", "--help").stdout.split())
    assert "--quiet no progress bars and no epoch lines" in help_text


def test_terminal_gets_progress_bars_and_the_same_epoch_lines():
    import threading

    try:
        import fcntl
        import struct
        import termios

        master, slave = os.openpty()
    except (ImportError, OSError) as err:
        pytest.skip(f"no pseudo-terminal here: {err}")
    # a fresh terminal is 0 columns wide, and tqdm would draw an empty bar
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinynet", "train", "--dataset", "spiral", *QUICK],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert "epoch 1" in b"".join(chunks).decode(errors="replace")  # the bar, on the terminal
    piped = tinynet("train", "--dataset", "spiral", *QUICK)
    assert _epoch_lines(stdout) == _epoch_lines(piped.stdout)
    assert len(_epoch_lines(stdout)) == 3
