"""Ctrl-C in ``tinynet train``: exit status 130 (128 + SIGINT) with the
partial model saved and a last line that says so; a burst of Ctrl-C never
ends in a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import tinynet as tn

ARGS = ["train", "--dataset", "spiral", "--epochs", "100000", "--hidden", "16", "--quiet"]


def _start(tmp_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinynet", *ARGS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.stdout.readline().startswith("tinynet ")  # the run header: training starts
    time.sleep(1.0)
    return proc


@pytest.mark.parametrize("presses", [1, 12])
def test_ctrl_c_exits_130_after_saving_and_says_so(tmp_path, presses):
    proc = _start(tmp_path, "--save", "m.safetensors")
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = (out.strip().splitlines() or [""])[-1]  # nothing printed: the 2nd press ended fit
    if presses == 1 or last.startswith("interrupted: "):  # the first press ended fit
        assert last.startswith("interrupted: interrupted by the user in epoch "), out
        assert last.endswith("the model so far is saved to m.safetensors; fit continues it")
        assert tn.load(tmp_path / "m.safetensors").step > 0
    else:  # a second press inside fit: fit raised, one line on stderr
        assert err.strip().splitlines() == ["tinynet train: interrupted"], err
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
