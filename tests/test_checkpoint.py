"""Checkpoints: bit-exact round trips on every backend, resumed training, and
every way a file can be damaged, foreign or hostile (always CheckpointError)."""

from __future__ import annotations

import json
import os
import pathlib
import pickle

import numpy as np
import pytest
import safetensors.numpy as stn

import tinynet
from tinynet import checkpoint
from tinynet.checkpoint import CheckpointError
from tinynet.tree import tree_leaves

LOSS = "sparse_categorical_crossentropy"


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.integers(0, 2, n)


def _model(dtype="float32", dropout=False, backend="numpy"):
    layers = [tinynet.Dense(3, 5), tinynet.ReLU()]
    if dropout:
        layers.append(tinynet.Dropout(0.3))
    layers += [tinynet.Dense(5, 2), tinynet.Softmax()]
    return tinynet.Sequential(layers, dtype=dtype, seed=7, backend=backend)


def _trained(optimizer="adam", **kwargs):
    model = _model(**kwargs)
    x, y = _data()
    model.fit(x, y, loss=LOSS, optimizer=optimizer, epochs=1, batch_size=4, seed=5, verbose=0)
    return model


def _values(model) -> dict:
    """Every saved value as host bytes (bitwise comparisons), plus counters."""
    out = {"epoch": model.epoch, "step": model.step, "fit_seed": model.fit_seed,
           "optimizer": model.optimizer.get_config() if model.optimizer else None}
    tree = {"params": model.params, "opt": model.opt_state}
    for name, leaf in tree_leaves(tree):
        arr = tinynet.to_numpy(leaf)
        out[name] = (arr.dtype.name, arr.shape, arr.tobytes())
    return out


def _rewrite(path, edit_header=None, edit_tensors=None):
    """Re-encode the checkpoint at ``path`` after editing its metadata or
    tensors, with a valid checksum (so the deeper checks are what must fail)."""
    blob = pathlib.Path(path).read_bytes()
    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(blob[8 : 8 + n])["__metadata__"]
    meta.pop("checksum")
    tensors = stn.load_file(str(path))
    if edit_header:
        edit_header(meta)
    if edit_tensors:
        edit_tensors(tensors)
    pathlib.Path(path).write_bytes(checkpoint._serialize(meta, tensors))


def _assert_refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        tinynet.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- round trips


def test_round_trip_from_numpy_to_each_backend(backend, tmp_path):
    model = _trained(backend="numpy")
    path = tmp_path / "model.safetensors"
    model.save(str(path))
    loaded = tinynet.load(path, backend=backend.name)
    assert loaded.backend is backend
    assert _values(loaded) == _values(model)
    assert loaded.get_config() == model.get_config()
    x, _ = _data()
    model.to_backend(backend.name)
    out, expected = (tinynet.to_numpy(m.predict(x)) for m in (loaded, model))
    assert out.tobytes() == expected.tobytes()


def test_round_trip_from_each_backend_to_numpy(backend, tmp_path):
    sgd = tinynet.optimizers.SGD(0.1, momentum=0.9)
    model = _trained(optimizer=sgd, dtype="float64", backend="numpy").to_backend(backend.name)
    path = tmp_path / "model.safetensors"
    checkpoint.save(model, path)
    loaded = tinynet.load(path, backend="numpy")
    assert loaded.backend.name == "numpy" and loaded.dtype == "float64"
    assert _values(loaded) == _values(model)
    assert tinynet.load(path).backend is backend  # default: the current backend


def test_resumed_training_matches_uninterrupted(tmp_path):
    x, y = _data()
    model = _trained(dropout=True)
    path = tmp_path / "resume.safetensors"
    model.save(str(path))
    model.fit(x, y, loss=LOSS, epochs=1, batch_size=4, verbose=0)
    resumed = tinynet.load(path, backend="numpy")
    resumed.fit(x, y, loss=LOSS, epochs=1, batch_size=4, verbose=0)
    assert resumed.epoch == 2 and resumed.fit_seed == 5
    assert _values(resumed) == _values(model)


def test_model_without_optimizer_and_load_into(tmp_path):
    model = _model(backend="numpy")
    path = tmp_path / "fresh.safetensors"
    checkpoint.save(model, path)
    loaded = tinynet.load(path)
    assert loaded.optimizer is None and loaded.opt_state is None
    assert _values(loaded) == _values(model)

    trained = _trained()
    trained.epoch, trained.step, trained.fit_seed = 3, 12, 99
    checkpoint.save(trained, path)
    target = _model()
    target.params, target.state = target.initial_params(1)
    assert checkpoint.load_into(target, path) is target
    assert _values(target) == _values(trained)
    assert checkpoint.restore is checkpoint.load_into


def test_file_is_plain_safetensors_with_tinynet_metadata(tmp_path):
    model = _trained()
    path = tmp_path / "model.safetensors"
    model.save(str(path))
    tensors = stn.load_file(str(path))
    assert set(tensors) == {name for name, _ in tree_leaves(
        {"params": model.params, "opt": model.opt_state})}
    assert tensors["opt.step"].shape == () and tensors["opt.step"].dtype == np.int32
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    assert (8 + n) % 8 == 0
    meta = json.loads(blob[8 : 8 + n])["__metadata__"]
    assert meta["format"] == "tinynet" and meta["format_version"] == "1"
    assert meta["backend"] == "numpy" and meta["checksum"].startswith("sha256:")
    assert json.loads(meta["config"]) == model.get_config()
    assert (meta["epoch"], meta["step"], meta["fit_seed"]) == ("1", "4", "5")


# ---------------------------------------------------------------- damaged files


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A small trained checkpoint: (bytes, values it holds)."""
    model = tinynet.Sequential([tinynet.Dense(2, 2), tinynet.Softmax()], backend="numpy")
    x, y = _data(8)
    model.fit(x[:, :2], y, loss=LOSS, optimizer="adam", epochs=1, batch_size=4, verbose=0)
    path = tmp_path_factory.mktemp("small") / "small.safetensors"
    model.save(str(path))
    return path.read_bytes(), _values(model)


def test_every_truncation_is_refused(small_checkpoint, tmp_path):
    blob, _ = small_checkpoint
    path = tmp_path / "cut.safetensors"
    for size in range(len(blob)):
        path.write_bytes(blob[:size])
        with pytest.raises(CheckpointError, match="cut.safetensors"):
            tinynet.load(path)


def test_random_byte_flips_are_refused_or_harmless(small_checkpoint, tmp_path):
    blob, expected = small_checkpoint
    path = tmp_path / "flip.safetensors"
    rng = np.random.default_rng(1234)
    refused = 0
    for _ in range(1200):
        damaged = bytearray(blob)
        i = int(rng.integers(len(blob)))
        damaged[i] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        try:
            model = tinynet.load(path, backend="numpy")
        except CheckpointError as err:
            assert "flip.safetensors" in str(err)
            refused += 1
        else:  # only whitespace in the header can change harmlessly
            assert _values(model) == expected, f"flip at byte {i} loaded different values"
    assert refused > 1000


def test_flipped_tensor_byte_fails_the_checksum(small_checkpoint, tmp_path):
    blob, _ = small_checkpoint
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    _assert_refused(path, "checksum mismatch")


def test_edited_metadata_fails_the_checksum(small_checkpoint, tmp_path):
    blob, _ = small_checkpoint
    assert blob.count(b'"epoch":"1"') == 1
    path = tmp_path / "edited.safetensors"
    path.write_bytes(blob.replace(b'"epoch":"1"', b'"epoch":"9"'))
    _assert_refused(path, "checksum mismatch")


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_payload_is_never_unpickled(tmp_path, protocol):
    class Payload:
        def __init__(self, marker):
            self.marker = marker

        def __reduce__(self):
            return pathlib.Path.touch, (self.marker,)

    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))
    assert proof.exists()  # the payload really runs code when unpickled
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    _assert_refused(path, "pickle" if protocol >= 2 else "not a safetensors file")
    with pytest.raises(CheckpointError):
        checkpoint.load_into(_model(), path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00" * 64, b"PK\x03\x04" + b"\x00" * 40,
                                     (5).to_bytes(8, "little") + b"[1,2]",
                                     (2).to_bytes(8, "little") + b"{}"])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    _assert_refused(path)


def test_missing_file_and_directory(tmp_path):
    _assert_refused(tmp_path / "nope.safetensors", "no such checkpoint file")
    _assert_refused(tmp_path, "cannot read")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    stn.save_file({"weight": np.ones((2, 2), np.float32)}, str(path))
    _assert_refused(path, "not a tinynet checkpoint")
    stn.save_file({"weight": np.ones(2, np.float32)}, str(path), metadata={"format": "pt"})
    _assert_refused(path, "not a tinynet checkpoint")


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.safetensors"
    _trained().save(str(path))
    _rewrite(path, lambda meta: meta.update(format_version="7"))
    _assert_refused(path, "was written by format version 7; this tinynet reads format "
                          "version 1; upgrade tinynet")


@pytest.mark.parametrize("edit, fragments", [
    (lambda t: t.pop("params.2.b"), ["missing parameter params.2.b"]),
    (lambda t: t.pop("opt.v.0.W"), ["missing optimizer state tensor opt.v.0.W"]),
    (lambda t: t.update(extra=np.zeros(1, np.float32)), ["unexpected tensors: extra"]),
    (lambda t: t.update({"params.0.W": np.zeros((4, 5), np.float32)}),
     ["params.0.W", "(4, 5)", "(3, 5)"]),
    (lambda t: t.update({"params.0.b": np.zeros(5, np.float64)}), ["params.0.b", "float64"]),
    (lambda t: t.update({"opt.step": np.zeros(2, np.int32)}), ["opt.step"]),
])
def test_tensors_that_do_not_fit_the_architecture(tmp_path, edit, fragments):
    path = tmp_path / "edited.safetensors"
    _trained().save(str(path))
    _rewrite(path, edit_tensors=edit)
    _assert_refused(path, *fragments)


@pytest.mark.parametrize("key, value", [("config", '{"layers": [{"type": "Nope"}]}'),
                                        ("config", "[1]"), ("optimizer", '{"class_name": 3}'),
                                        ("opt_state", '{"type": "set"}'), ("epoch", '"one"'),
                                        ("step", "{"), ("backend", "cupy")])
def test_bad_metadata_with_valid_checksum(tmp_path, key, value):
    path = tmp_path / "meta.safetensors"
    _trained().save(str(path))
    _rewrite(path, lambda meta: meta.update({key: value}))
    if key == "backend":  # information only: still loads
        tinynet.load(path)
    else:
        _assert_refused(path)


# ---------------------------------------------------------------- load_into


def test_load_into_mismatch_names_parameter_and_shapes_and_changes_nothing(tmp_path):
    path = tmp_path / "model.safetensors"
    _trained().save(str(path))
    other = tinynet.Sequential(
        [tinynet.Dense(4, 5), tinynet.ReLU(), tinynet.Dense(5, 2), tinynet.Softmax()],
        backend="numpy")
    before = _values(other)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_into(other, path)
    message = str(info.value)
    assert str(path) in message and "params.0.W" in message
    assert "(3, 5)" in message and "(4, 5)" in message
    assert _values(other) == before

    wider = tinynet.Sequential(
        [tinynet.Dense(3, 5), tinynet.ReLU(), tinynet.Dense(5, 3), tinynet.Softmax()],
        backend="numpy")
    with pytest.raises(CheckpointError, match=r"params\.2\.W.*\(5, 2\).*\(5, 3\)"):
        checkpoint.load_into(wider, path)


def test_failed_load_into_after_parameters_were_read_changes_nothing(tmp_path):
    path = tmp_path / "model.safetensors"
    _trained().save(str(path))
    _rewrite(path, edit_tensors=lambda t: t.pop("opt.m.2.b"))  # params fine, opt state broken
    model = _trained(optimizer="sgd")
    before = _values(model)
    optimizer, opt_state = model.optimizer, model.opt_state
    with pytest.raises(CheckpointError, match="opt.m.2.b"):
        checkpoint.load_into(model, path)
    assert _values(model) == before
    assert model.optimizer is optimizer and model.opt_state is opt_state


# ---------------------------------------------------------------- atomic saves


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    _model().save(str(path))
    old = path.read_bytes()
    trained = _trained()

    real_write = os.write

    def half_write(fd, data):  # writes half of the bytes, then the "disk" fails
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError("disk full")

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(trained, path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert _leftovers(tmp_path, {"model.safetensors"}) == []

    for error in (OSError("rename failed"), KeyboardInterrupt()):
        def fail(*args, error=error):
            raise error

        monkeypatch.setattr(os, "replace", fail)
        with pytest.raises(type(error)):
            checkpoint.save(trained, path)
        monkeypatch.undo()
        assert path.read_bytes() == old
        assert _leftovers(tmp_path, {"model.safetensors"}) == []


def test_unsaveable_model_leaves_previous_file(tmp_path):
    path = tmp_path / "model.safetensors"
    _model().save(str(path))
    old = path.read_bytes()
    model = _trained(optimizer=tinynet.optimizers.SGD(lr=lambda step: 0.1))
    with pytest.raises(TypeError, match="cannot be serialised"):
        model.save(str(path))
    assert path.read_bytes() == old
    assert _leftovers(tmp_path, {"model.safetensors"}) == []


def test_saving_over_an_existing_file(tmp_path):
    path = tmp_path / "model.safetensors"
    _model().save(str(path))
    if os.name == "posix":
        path.chmod(0o600)
    trained = _trained()
    trained.save(str(path))
    if os.name == "posix":  # the replaced file's permissions are kept
        assert path.stat().st_mode & 0o777 == 0o600
    assert _values(tinynet.load(path)) == _values(trained)
    assert _leftovers(tmp_path, {"model.safetensors"}) == []
