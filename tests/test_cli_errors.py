"""Bad inputs to the ``tinynet`` command line: one line on stderr naming the
input and the fix, exit status 2, nothing started; and closed pipes."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from test_cli import QUICK, tinynet

from tinynet import backends, checkpoint
from tinynet.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    model = folder / "m.safetensors"
    out = tinynet("train", "--dataset", "spiral", *QUICK, "--quiet", "--save", str(model))
    assert out.returncode == 0, out.stderr
    (folder / "notes.txt").write_text("1 2\n3 4\n")
    (folder / "list.pkl").write_bytes(pickle.dumps([[1.0, 2.0]]))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(folder / "wide.npy", np.zeros((3, 5), dtype=np.float32))
    np.save(folder / "row.npy", np.zeros(2, dtype=np.float32))
    np.save(folder / "nan.npy", np.full((2, 2), np.nan, dtype=np.float32))
    (folder / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(folder / "tiny.npz", x=np.zeros((5, 2), dtype=np.float32), y=np.arange(5) % 2)
    return folder


# (arguments, what stderr must contain, what it must not); {d} is the folder
BAD = [
    (["predict", "{d}/m.safetensors", "{d}/notes.txt"], ["notes.txt", "np.save"], ["pickle"]),
    (["predict", "{d}/m.safetensors", "{d}/list.pkl"], ["list.pkl", "not a .npy"], ["allow_"]),
    (["predict", "{d}/m.safetensors", "{d}/objects.npy"], ["objects.npy", "never"], ["allow_"]),
    (
        ["predict", "{d}/m.safetensors", "{d}/missing.npy"],
        ["not found: ", "missing.npy"],
        ["Errno"],
    ),
    (["predict", "{d}/m.safetensors", "{d}/wide.npy"], ["wide.npy", "5 features", "takes 2"], []),
    (["predict", "{d}/m.safetensors", "{d}/row.npy"], ["row.npy", "reshape(1, -1)"], []),
    (["predict", "{d}/m.safetensors", "{d}/nan.npy"], ["nan.npy", "NaN"], []),
    (["predict", "{d}/m.safetensors", "{d}/broken.npz"], ["broken.npz"], []),
    (["predict", "{d}/m.safetensors", "{d}"], ["is a folder"], []),
    (
        ["predict", "{d}/m.safetensors", "{d}/wide.npy", "--output", "{d}/no/out.npy"],
        ["--output", "no/out.npy", "does not exist"],
        [],
    ),
    (["predict", "{d}/missing.safetensors", "{d}/wide.npy"], ["missing.safetensors"], ["Errno"]),
    (
        ["evaluate", "{d}/m.safetensors", "--dataset", "{d}/nope.npz"],
        ["nope.npz", "not found"],
        ["Errno"],
    ),
    (["train", "--hidden", ","], ["--hidden", "128,64", "','"], []),
    (["train", "--hidden", "64,,64"], ["--hidden", "'64,,64'"], []),
    (["train", "--epochs", "x"], ["--epochs", "an integer", "'x'"], ["a int"]),
    (["train", "--batch-size", "1.5"], ["--batch-size", "an integer"], ["a int"]),
    (["train", "--lr", "nan"], ["--lr", "finite number > 0"], []),
    (["train", "--seed", "1e3"], ["--seed", "an integer"], []),
    (["train", "--dataset", "nope"], ["'nope'", "spiral, digits"], []),
    (["train", "--dataset", "{d}/list.pkl"], ["list.pkl"], ["allow_"]),
    (["train", "--dataset", "{d}/tiny.npz"], ["tiny.npz", "at least 10"], []),
    (["train", "--dataset", "spiral", "--devices", "2"], ["--devices 2", "--backend jax"], []),
    (
        ["train", "--dataset", "spiral", "--save", "{d}/no/m.safetensors"],
        ["--save", "no/m.safetensors", "does not exist"],
        [".tmp"],
    ),
    (["train", "--dataset", "spiral", "--save", "{d}"], ["--save", "is a folder"], []),
    (["train", "--dataset", "spiral", "--plot", "{d}/no/c.png"], ["--plot", "no/c.png"], []),
    (["train", "--dataset", "spiral", "--plot", "{d}/curves.xyz"], ["curves.xyz", ".png"], []),
    (["compare-backends", "--backends", "numpy,bogus"], ["--backends", "bogus"], []),
]


@pytest.mark.parametrize(("argv", "says", "never"), BAD, ids=[" ".join(a[0]) for a in BAD])
def test_bad_input_is_one_line_and_exit_2(files, argv, says, never):
    out = tinynet(*[a.format(d=files) for a in argv])
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""  # nothing was started, no run header
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"tinynet {argv[0]}: error: ")
    for text in says:
        assert text in out.stderr
    for text in never + ["Traceback"]:
        assert text not in out.stderr


def test_devices_errors_come_before_the_run_header():
    pytest.importorskip("jax")
    out = tinynet(
        "train", "--dataset", "spiral", "--backend", "jax", "--devices", "2", "--batch-size", "33"
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "--batch-size 33" in out.stderr and "multiple of 2" in out.stderr
    out = tinynet("train", "--dataset", "spiral", "--backend", "jax", "--devices", "64")
    assert out.returncode == 2 and out.stdout == ""
    assert "--devices 64" in out.stderr and out.stderr.count("\n") == 1


def test_missing_matplotlib_is_found_before_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    status = main(["train", "--dataset", "spiral", *QUICK, "--plot", str(tmp_path / "c.png")])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert "pip install 'tinynet[plot]'" in captured.err


def test_a_failed_save_names_the_path_given(monkeypatch, capsys, tmp_path):
    def refuse(path, blob):
        raise PermissionError(13, "Permission denied", path + ".x1y2.tmp")

    monkeypatch.setattr(checkpoint, "write_atomic", refuse)
    target = str(tmp_path / "m.safetensors")
    status = main(["train", "--dataset", "spiral", *QUICK, "--quiet", "--save", target])
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"tinynet train: error: --save {target}: cannot write it: Permission denied\n"


def _stop_reading_after(lines: int, *args: str) -> subprocess.CompletedProcess:
    """Run tinynet with stdout into a pipe that is closed after ``lines`` lines."""
    env = {k: v for k, v in os.environ.items() if k != backends.ENV_VAR}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinynet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    for _ in range(lines):
        proc.stdout.readline()
    proc.stdout.close()  # as `head -n LINES` does
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, "", stderr)


def test_a_closed_pipe_ends_quietly(files):
    # 50000 rows (~600 kB) fill any pipe buffer: the writes must hit the closed pipe
    np.save(files / "many.npy", np.zeros((50_000, 2), dtype=np.float32))
    out = _stop_reading_after(2, "predict", str(files / "m.safetensors"), str(files / "many.npy"))
    assert out.stderr == ""
    assert out.returncode == 141  # 128 + SIGPIPE, as a shell reports `yes | head -1`
    # 2000 epoch lines (~170 kB) do not fit in a pipe buffer either
    train = ("train", "--dataset", "spiral", "--hidden", "4", "--epochs", "2000")
    out = _stop_reading_after(1, *train)
    assert out.stderr == "" and out.returncode == 141
