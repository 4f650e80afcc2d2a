"""Checkpoints: a model, its optimizer state and its training position in one
safetensors file (no code; ``safetensors.numpy.load_file`` reads its arrays):
tensors ``params.<layer>.<name>``, ``state.<layer>.<name>``, ``opt.<path>``, string
metadata (JSON where not text) ending in a SHA-256 ``checksum``; docs/DESIGN.md §6."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
from typing import Any, NamedTuple

import numpy as np

from . import backends
from .atomic import write_atomic
from .tree import tree_leaves
from .version import __version__

FORMAT = "tinynet"
FORMAT_VERSION = 1
_DTYPES = {  # safetensors dtype code -> little-endian NumPy dtype
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_COUNTERS = ("epoch", "step", "fit_seed")  # restore the counter-based RNG
_TEXT_KEYS = ("format", "format_version", "tinynet_version", "backend", "dtype")
_JSON_KEYS = ("config", "optimizer", "opt_state", *_COUNTERS)
_META_KEYS = (*_TEXT_KEYS, *_JSON_KEYS, "checksum")  # all required
_PROGRESS = {  # where an interrupted epoch stopped, as ``fit`` records it
    "step": (int,), "n": (int,), "batch_size": (int,), "seed": (int,), "shuffle": (bool,),
    "loss_sum": (float, int), "metric_sum": (float, int),
}  # fmt: skip


class CheckpointError(Exception):
    """A checkpoint file is missing, damaged, foreign or does not fit the model."""


class _Bad(Exception):
    """What is wrong with a checkpoint; :func:`problem` adds the file's path."""


class _Checkpoint(NamedTuple):
    meta: dict[str, Any]  # decoded metadata values
    tensors: dict[str, np.ndarray]


def save(model: Any, path: str | os.PathLike, dataset: dict | None = None) -> None:
    """Write ``model`` and its training position to ``path`` atomically (the old or the
    complete new file, never a mix); ``dataset``: a JSON-able description of the data."""
    structure = _structure(model.opt_state)  # first: it refuses non-string keys
    tensors: dict[str, np.ndarray] = {}
    tree = {"params": model.params, "state": model.state, "opt": model.opt_state}
    for name, leaf in tree_leaves(tree):
        if name in tensors:
            raise ValueError(f"save: optimizer state has two leaves named {name!r}")
        tensors[name] = _host(leaf)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "tinynet_version": __version__,
        "backend": model.backend.name,
        "dtype": model.dtype,
        "config": _json(model.get_config()),
        "optimizer": _json(model.optimizer.get_config() if model.optimizer else None),
        "opt_state": _json(structure),
        **{key: str(int(getattr(model, key))) for key in _COUNTERS},
    }
    for key, value in (("dataset", dataset), ("epoch_progress", model.epoch_progress)):
        if value is not None:
            meta[key] = _json(value)
    write_atomic(os.fspath(path), _serialize(meta, tensors))


def _host(a: Any) -> np.ndarray:
    """An array of any backend -> contiguous little-endian NumPy array."""
    arr = np.asarray(backends.backend_of(a).to_numpy(a))
    dtype = arr.dtype.newbyteorder("<")
    if dtype not in _CODES:
        raise TypeError(f"save: arrays of dtype {arr.dtype} cannot be stored in a checkpoint")
    return np.asarray(arr, dtype=dtype, order="C")


def _structure(tree: Any) -> Any:
    """The nesting of an optimizer state as JSON, each leaf as dtype + shape."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise TypeError("save: optimizer state dicts must have string keys")
        return {"type": "dict", "items": {k: _structure(v) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        return {"type": type(tree).__name__, "items": [_structure(v) for v in tree]}
    arr = _host(tree)
    return {"type": "array", "dtype": arr.dtype.name, "shape": list(arr.shape)}


def _serialize(meta: dict[str, str], tensors: dict[str, np.ndarray]) -> bytes:
    header: dict[str, Any] = {"__metadata__": meta}
    chunks, offset = [], 0
    # Widest dtypes first (as safetensors does) keeps every tensor aligned.
    for name in sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n)):
        arr = tensors[name]
        data = arr.tobytes()
        header[name] = {
            "dtype": _CODES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    data = b"".join(chunks)
    meta["checksum"] = _checksum(header, data)
    text = _json(header).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text + data


def _json(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, separators=(",", ":"), **kwargs)


def _checksum(header: dict[str, Any], data: bytes | memoryview) -> str:
    """sha256 of the canonical header (without the checksum) and the data."""
    meta = {k: v for k, v in header["__metadata__"].items() if k != "checksum"}
    digest = hashlib.sha256(_json({**header, "__metadata__": meta}, sort_keys=True).encode())
    digest.update(data)
    return "sha256:" + digest.hexdigest()


def load_into(model: Any, path: str | os.PathLike) -> Any:
    """Load the checkpoint into ``model`` (same architecture); ``model`` is unchanged on failure."""
    path = os.fspath(path)
    restore_from(model, read(path), path, "the checkpoint does not fit the model")
    return model


restore = load_into


def saved_dataset(path: str | os.PathLike) -> dict | None:
    """The ``dataset`` given to :func:`save` for the checkpoint at ``path``, or ``None``."""
    return read(os.fspath(path)).meta.get("dataset")


@contextlib.contextmanager
def problem(path: str, what: str):
    """Any exception in the block -> CheckpointError for ``path`` (``what`` heads all but _Bad)."""
    try:
        yield
    except CheckpointError:
        raise
    except _Bad as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:
        raise CheckpointError(f"{path}: {what}: {type(err).__name__}: {err}") from err


def read(path: str) -> _Checkpoint:
    """The checkpoint at ``path``, parsed and verified (checksum, format)."""
    try:
        blob = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {err}") from err
    with problem(path, "not a valid tinynet checkpoint"):
        return _parse(blob)


def _parse(blob: bytes) -> _Checkpoint:
    n = int.from_bytes(blob[:8], "little")
    framed = blob[8:9] == b"{" and n <= len(blob) - 8  # a JSON header of length n follows
    if blob[:1] == b"\x80" and not framed:
        raise _Bad(
            "is a Python pickle, not a safetensors checkpoint; refusing to "
            "unpickle it (pickles can run arbitrary code)"
        )
    if len(blob) < 8:
        raise _Bad(f"truncated or not a safetensors file ({len(blob)} bytes)")
    if not framed:
        raise _Bad("truncated or not a safetensors file (bad header length)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError as err:  # UnicodeDecodeError is one too
        raise _Bad(f"corrupted safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise _Bad("corrupted safetensors header (not a JSON object)")
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _Bad(
            "is a safetensors file but not a tinynet checkpoint (no tinynet "
            "metadata); use safetensors.numpy.load_file to read its arrays"
        )
    version = raw.get("format_version")
    if not (isinstance(version, str) and version.isdigit()):
        raise _Bad(f"corrupted metadata: format_version={version!r}")
    if int(version) != FORMAT_VERSION:
        newer = "; upgrade tinynet" if int(version) > FORMAT_VERSION else ""
        raise _Bad(
            f"was written by format version {int(version)}; this tinynet reads "
            f"format version {FORMAT_VERSION}{newer}"
        )
    missing = [k for k in _META_KEYS if not isinstance(raw.get(k), str)]
    if missing:
        raise _Bad(f"corrupted metadata: missing {', '.join(missing)}")
    data = memoryview(blob)[8 + n :]  # no copy
    tensors = _tensors(header, data)
    if raw["checksum"] != _checksum(header, data):
        raise _Bad(
            "checksum mismatch: the file is corrupted (a changed byte in "
            "the tensor data or metadata)"
        )
    meta = {k: raw[k] for k in _META_KEYS}
    for key in (*_JSON_KEYS, "epoch_progress", "dataset"):  # the last two are optional
        if key in raw:
            meta[key] = json.loads(raw[key])
    if meta.get("epoch_progress") is not None and not _valid_progress(meta["epoch_progress"]):
        raise _Bad(f"corrupted metadata: epoch_progress={raw['epoch_progress']!r}")
    for key in _COUNTERS:
        if type(meta[key]) is not int:  # not a bool either
            raise _Bad(f"corrupted metadata: {key}={raw[key]!r} is not an integer")
    return _Checkpoint(meta, tensors)


def _valid_progress(progress: Any) -> bool:
    if not (isinstance(progress, dict) and set(progress) == set(_PROGRESS)):
        return False
    return all(type(progress[k]) in t for k, t in _PROGRESS.items()) and progress["step"] > 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return out


def _tensors(header: dict[str, Any], data: memoryview) -> dict[str, np.ndarray]:
    """The tensors, checking every entry and that they tile the data exactly."""
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}
        ok = ok and info["dtype"] in _DTYPES and isinstance(info["shape"], list)
        ok = ok and all(type(d) is int and d >= 0 for d in info["shape"] + info["data_offsets"])
        ok = ok and len(info["data_offsets"]) == 2
        if not ok:
            raise _Bad(f"corrupted header entry for tensor {name!r}: {info!r}")
        dtype, (begin, end) = np.dtype(_DTYPES[info["dtype"]]), info["data_offsets"]
        if end - begin != dtype.itemsize * int(np.prod(info["shape"], dtype=object)):
            raise _Bad(f"corrupted header: tensor {name!r} size does not match its shape")
        spans.append((begin, end, name, dtype, info["shape"]))
    tensors, position = {}, 0
    for begin, end, name, dtype, shape in sorted(spans):
        if end > len(data):
            raise _Bad(
                f"truncated: tensor {name!r} needs bytes {begin}..{end} of the "
                f"data section, which has only {len(data)}"
            )
        if begin != position:
            raise _Bad(f"corrupted header: tensor {name!r} overlaps or leaves a gap")
        position = end
        arr = np.frombuffer(data[begin:end], dtype=dtype)
        tensors[name] = arr.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    if position != len(data):
        raise _Bad(f"corrupted: {len(data) - position} bytes after the last tensor")
    return tensors


def restore_from(model: Any, ckpt: _Checkpoint, path: str, what: str) -> None:
    """Assign ``ckpt`` (read from ``path``) to ``model`` on its backend once all of it
    is checked; ``model`` is unchanged on failure.  ``what`` heads unexpected errors."""
    meta, tensors = ckpt.meta, dict(ckpt.tensors)
    with problem(path, what):
        if len(model.params) != len(meta["config"]["layers"]):
            raise _Bad(
                f"the checkpoint has {len(meta['config']['layers'])} layers, "
                f"the model has {len(model.params)}"
            )
        params = _layer_arrays(model, "params", "parameter", tensors)
        state = _layer_arrays(model, "state", "state entry", tensors)
        optimizer = opt_state = None
        if meta["optimizer"] is not None:
            from . import optimizers

            with problem(path, "the optimizer config is invalid"):
                optimizer = optimizers.get(meta["optimizer"])
                init = optimizer.init(params)
                expected = {n: tuple(a.shape) for n, a in tree_leaves(init, "opt.")}
            opt_state = _rebuild(meta["opt_state"], "opt.", tensors, model)
            found = {n: tuple(a.shape) for n, a in tree_leaves(opt_state, "opt.")}
            if found != expected:
                raise _Bad(
                    f"the optimizer state does not fit {type(optimizer).__name__} "
                    f"for this model: expected {expected}, found {found}"
                )
        if tensors:
            raise _Bad(f"unexpected tensors: {', '.join(sorted(tensors))}")
    model.params = params
    model.state = state
    model.optimizer = optimizer
    model.opt_state = opt_state
    for key in _COUNTERS:
        setattr(model, key, meta[key])
    model.epoch_progress = meta.get("epoch_progress")


def _take(tensors: dict, name: str, what: str, shape: Any, dtype: str, model: Any) -> Any:
    """``tensors.pop(name)`` on ``model``'s backend, checked against ``shape`` and ``dtype``."""
    arr = tensors.pop(name, None)
    if arr is None:
        raise _Bad(f"missing {what} {name}")
    shape = tuple(shape)
    if arr.shape != shape:
        raise _Bad(f"{what} {name} has shape {arr.shape} in the checkpoint, expected {shape}")
    if arr.dtype.name != dtype:
        raise _Bad(f"{what} {name} is {arr.dtype.name} in the checkpoint, expected {dtype}")
    return model.backend.asarray(arr, dtype=dtype)


def _layer_arrays(model: Any, kind: str, what: str, tensors: dict) -> list[dict[str, Any]]:
    """The model's ``params`` or ``state`` (``kind``), each array taken from ``tensors``."""
    return [
        {
            n: _take(tensors, f"{kind}.{i}.{n}", what, a.shape, model.dtype, model)
            for n, a in layer.items()
        }
        for i, layer in enumerate(getattr(model, kind))
    ]


def _rebuild(spec: Any, prefix: str, tensors: dict[str, np.ndarray], model: Any) -> Any:
    """The optimizer state from its structure, taking its leaves from ``tensors``."""
    if spec is None:
        return None
    kind = spec["type"]
    if kind == "dict":
        return {k: _rebuild(v, f"{prefix}{k}.", tensors, model) for k, v in spec["items"].items()}
    if kind in ("list", "tuple"):
        items = [_rebuild(v, f"{prefix}{i}.", tensors, model) for i, v in enumerate(spec["items"])]
        return items if kind == "list" else tuple(items)
    if kind != "array":
        raise _Bad(f"corrupted optimizer state structure: {spec!r}")
    what = "optimizer state tensor"
    return _take(tensors, prefix[:-1], what, spec["shape"], spec["dtype"], model)
