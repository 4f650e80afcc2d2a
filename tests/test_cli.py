"""The ``tinynet`` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tinynet import backends, datasets, models


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
    # less, not different (the wall-clock time of each run aside)
    untimed = [re.sub(r" in [0-9.]+ s\b", " in <t> s", t.stdout) for t in (quiet, out)]
    assert untimed[0].splitlines()[1:] == untimed[1].splitlines()[4:]
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


# ------------------------------------------------- issue 18: --model, fashion-mnist



def test_fit_to_reshapes_only_when_unambiguous():
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    flat = x.reshape(2, 784)
    for given in (x, flat, x[..., 0], x.reshape(2, 1, 28, 28)):
        np.testing.assert_array_equal(models.fit_to(given, (28, 28, 1)), x)  # an image model
        np.testing.assert_array_equal(models.fit_to(given, (784,)), flat)  # an mlp
    assert models.fit_to(x.reshape(2, 14, 56), (28, 28, 1)) is None  # same size, other layout
    assert models.fit_to(np.zeros((2, 3, 8, 8)), (8, 8, 3)) is None  # channels-first
    assert models.fit_to(flat[:, :783], (28, 28, 1)) is None
    assert models.fit_to(flat[:, :783], (784,)) is None


def test_cnn_padding_fits_the_image():
    # valid: side -> side-2 -> //2 -> -2 -> //2 must stay >= 1
    assert [models.cnn_padding(s, s) for s in (28, 10, 9, 8, 4)] == [
        "valid",
        "valid",
        "same",
        "same",
        "same",
    ]
    assert models.cnn_padding(28, 8) == "same"  # the smaller side decides


def test_mlp_on_images_takes_the_flattened_sample():
    model = models.build("mlp", (28, 28, 1), 10, hidden=(256, 128))
    assert model.input_shape == (784,)
    assert models.describe(model) == "mlp 784-256-128-10"
    assert model.num_params == (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)


def test_cnn_refuses_what_is_not_an_image():
    with pytest.raises(
        ValueError, match=r"\(height, width, channels\).*received samples of shape \(64,\)"
    ):
        models.build_cnn((64,), 10)
    with pytest.raises(ValueError, match="at least 4x4 pixels.*received 3x8"):
        models.build_cnn((3, 8, 1), 10)


CNN_LAYERS = [
    "Conv2D",
    "BatchNorm",
    "ReLU",
    "MaxPool2D",
    "Conv2D",
    "BatchNorm",
    "ReLU",
    "MaxPool2D",
    "Flatten",
    "Dense",
    "ReLU",
    "Dropout",
    "Dense",
    "Softmax",
]


@pytest.mark.parametrize(
    ("image", "padding", "shapes"),
    [
        (
            (28, 28, 1),
            "valid",
            [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (1600,)],
        ),
        ((8, 8, 1), "same", [(8, 8, 32), (4, 4, 32), (4, 4, 64), (2, 2, 64), (256,)]),
    ],
)
def test_cnn_layers_shapes_and_parameters(image, padding, shapes):
    import tinynet as tn

    model = models.build_cnn(image, 10)
    assert [type(layer).__name__ for layer in model.layers] == CNN_LAYERS
    assert [model.shapes[i] for i in (0, 3, 4, 7, 8)] == shapes
    assert model.output_shape == (10,)
    assert {model.layers[i].get_config()["padding"] for i in (0, 4)} == {padding}
    assert not any(model.layers[i].get_config()["use_bias"] for i in (0, 4))
    assert model.layers[11].get_config()["rate"] == 0.25
    flat = shapes[-1][0]
    conv = 3 * 3 * image[2] * 32 + 3 * 3 * 32 * 64  # no bias: BatchNorm's beta shifts
    norm = 2 * 32 + 2 * 64  # gamma and beta
    assert model.num_params == conv + norm + (flat * 128 + 128) + (128 * 10 + 10)
    assert sum(v.size for s in model.state for v in s.values()) == norm  # moving mean, var
    assert models.describe(model) == f"cnn on {image[0]}x{image[1]}x1 images"
    rebuilt = tn.Sequential.from_config(model.get_config())  # what a checkpoint holds
    assert rebuilt.shapes == model.shapes


def test_model_flag_errors():
    spiral_cnn = tinynet("train", "--dataset", "spiral", "--model", "cnn")
    assert spiral_cnn.returncode == 2 and spiral_cnn.stdout == ""
    assert "--model cnn on spiral" in spiral_cnn.stderr and "--model mlp" in spiral_cnn.stderr
    hidden = tinynet("train", "--dataset", "spiral", "--model", "cnn", "--hidden", "8")
    assert hidden.returncode == 2 and "--hidden shapes the mlp" in hidden.stderr
    dropout = tinynet("train", "--dataset", "spiral", "--model", "cnn", "--dropout", "0.5")
    assert dropout.returncode == 2 and "--dropout shapes the mlp" in dropout.stderr
    unknown = tinynet("train", "--model", "rnn")
    assert unknown.returncode == 2 and "invalid choice: 'rnn'" in unknown.stderr
    for out in (spiral_cnn, hidden, dropout, unknown):
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_missing_fashion_mnist_is_one_line_and_exit_2(tmp_path, spiral_model):
    env = {"TINYNET_DATA": str(tmp_path)}  # set: the only place looked
    runs = [
        tinynet("train", "--dataset", "fashion-mnist", env=env),
        tinynet("evaluate", str(spiral_model), "--dataset", "fashion-mnist", env=env),
        tinynet("compare-backends", "--dataset", "fashion-mnist", env=env),
    ]
    for out, command in zip(runs, ("train", "evaluate", "compare-backends")):
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith(f"tinynet {command}: error: Fashion-MNIST not found: ")
        assert f"looked in {tmp_path} and {tmp_path / 'fashion-mnist'}" in out.stderr
        assert "apt-get install dataset-fashion-mnist" in out.stderr
        assert "set TINYNET_DATA to it" in out.stderr


def _predict_all(model: str, arrays: dict, tmp_path) -> dict:
    """``tinynet predict`` on each array (saved as .npy): its stdout."""
    outputs = {}
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        out = tinynet("predict", model, str(tmp_path / f"{name}.npy"))
        assert out.returncode == 0, out.stderr
        outputs[name] = out.stdout
    return outputs


def test_digits_are_images_the_mlp_flattens(tmp_path):
    pytest.importorskip("sklearn")
    from tinynet.checkpoint import saved_dataset
    from tinynet.datasets import digits

    model = str(tmp_path / "m.safetensors")
    out = tinynet(
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--quiet",
        "--save",
        model,
    )
    assert out.returncode == 0, out.stderr
    assert "training mlp 64-16-10 (1210 parameters) on digits" in out.stdout.splitlines()[0]
    assert saved_dataset(model) == {"name": "digits", "input_shape": [64]}
    evaluated = tinynet("evaluate", model)
    assert evaluated.stdout.splitlines()[-1] == out.stdout.splitlines()[-1].replace("test ", "")
    x = digits(images=True)[1][0][:5]
    np.testing.assert_array_equal(x.reshape(5, 64), digits()[1][0][:5])
    shapes = {"nhwc": x, "flat": x.reshape(5, 64), "hw": x[..., 0]}
    outputs = _predict_all(model, shapes, tmp_path)
    assert outputs["nhwc"] == outputs["flat"] == outputs["hw"]


def test_cnn_on_digits_trains_saves_evaluates_and_predicts(tmp_path):
    pytest.importorskip("sklearn")
    from tinynet.checkpoint import saved_dataset
    from tinynet.datasets import digits

    model = str(tmp_path / "cnn.safetensors")
    out = tinynet(
        "train",
        "--dataset",
        "digits",
        "--model",
        "cnn",
        "--epochs",
        "3",
        "--quiet",
        "--save",
        model,
    )
    assert out.returncode == 0, out.stderr
    assert "training cnn on 8x8x1 images (53098 parameters) on digits" in out.stdout
    accuracy = float(out.stdout.splitlines()[-1].split(": ")[1])
    assert accuracy > 0.8  # 3 epochs: the MLP reaches about 0.9
    assert saved_dataset(model) == {"name": "digits", "input_shape": [8, 8, 1]}
    evaluated = tinynet("evaluate", model)  # rebuilt from the checkpoint's layer configs
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.splitlines()[-1] == f"accuracy: {accuracy:.4f}"
    x = digits(images=True)[1][0][:5]
    outputs = _predict_all(model, {"nhwc": x, "flat": x.reshape(5, 64), "hw": x[..., 0]}, tmp_path)
    assert outputs["nhwc"] == outputs["flat"] == outputs["hw"]
    np.save(tmp_path / "wrong.npy", np.zeros((5, 63), dtype=np.float32))
    wrong = tinynet("predict", model, str(tmp_path / "wrong.npy"))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "63 features per row" in wrong.stderr and "images of shape (8, 8, 1)" in wrong.stderr


@pytest.mark.slow
def test_fashion_mnist_mlp_end_to_end(tmp_path):
    """Three epochs (about 15 s on two cores): the full 10-epoch default run,
    which reaches the issue's 0.885, is too long for CI."""
    from tinynet.datasets import fashion

    if not fashion.found():
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)")
    model = str(tmp_path / "mlp.safetensors")
    out = tinynet(
        "train", "--dataset", "fashion-mnist", "--epochs", "3", "--quiet", "--save", model
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(
        "training mlp 784-256-128-10 (235146 parameters) on fashion-mnist (60000 train, 10% of "
        "them for validation / 10000 test samples) with the numpy backend (CPU), float32, adam "
        "lr=0.001 cosine-decayed to 0 over 1266 steps, 3 epochs of batch 128"
    )
    accuracy = float(lines[-1].split(": ")[1])
    assert accuracy >= 0.865  # 0.8736 here; 0.89 after the default 10 epochs
    evaluated = tinynet("evaluate", model)
    assert evaluated.stdout.splitlines() == [
        "fashion-mnist: 10000 samples",
        lines[-2].replace("test ", ""),
        lines[-1].replace("test ", ""),
    ]
    pixels = datasets.load_idx(fashion.find_folder()["t10k-images-idx3-ubyte"])[:20]
    outputs = _predict_all(
        model,
        {"nhwc": pixels[..., None].astype(np.float32) / np.float32(255), "uint8": pixels},
        tmp_path,
    )
    assert outputs["nhwc"] == outputs["uint8"]
    compare = tinynet("compare-backends", "--dataset", "fashion-mnist", "--backends", "numpy")
    assert compare.returncode == 0, compare.stderr
    assert compare.stdout.startswith("one training step, batch 128, float32")
