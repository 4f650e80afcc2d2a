"""What each ``tinynet`` subcommand does (parsing lives in :mod:`tinynet.cli`).

Every user mistake raises :class:`~tinynet.cli.CLIError` (or ``ValueError``)
naming the input and the fix, before any training starts where it can.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, datasets, random
from .callbacks import Callback
from .model import build_mlp
from .options import BATCH_SIZE, HIDDEN, CLIError, default_lr

DEFAULT_EPOCHS = {"digits": 40, "spiral": 300}
VALIDATION_SPLIT = 0.1


def _select_backend(args: Any) -> backends.Backend:
    """``--backend`` (else the current backend) on ``--device`` (else its chosen one)."""
    name, device = args.backend, getattr(args, "device", None)
    if name is not None or device is not None:
        return backends.set_backend(name or backends.current_name()[0], device)
    return backends.get_backend()


# ------------------------------------------------------------------ checks


def _check_output(path: str, flag: str) -> None:
    """Fail now, naming ``path`` as the user gave it, if it cannot be written."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a folder; give a file name inside it")
    if not os.path.isdir(folder):
        raise CLIError(
            f"{flag} {path}: the folder {folder} does not exist; create it or choose another path"
        )
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{flag} {path}: the folder {folder} is not writable; choose another path")


def _check_devices(args: Any, backend: backends.Backend) -> None:
    if args.devices is None:
        return
    if args.batch_size % args.devices:
        raise CLIError(
            f"--batch-size {args.batch_size} does not split over --devices {args.devices}; "
            f"choose a multiple of {args.devices}"
        )
    from .data_parallel import DataParallel

    try:  # the JAX backend, that many devices?
        DataParallel(backend, args.devices, where=f"--devices {args.devices}")
    except ValueError as err:
        raise CLIError(str(err)) from None


def _start_processes(args: Any) -> None:
    """``--coordinator``: join the multi-process run before JAX starts."""
    if args.coordinator is None:
        if args.num_processes != 1 or args.process_id != 0:
            raise CLIError("--num-processes and --process-id need --coordinator HOST:PORT")
        return
    name = args.backend or backends.current_name()[0]
    if name != "jax":
        raise CLIError(f"--coordinator needs the JAX backend (got {name}); add --backend jax")
    from . import parallel

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.devices is None:
        args.devices = parallel.device_count()


def _optimizer(name: str, lr: float | None) -> Any:
    from . import optimizers

    return type(optimizers.get(name))(lr=lr or default_lr(name))


# ------------------------------------------------------------------ train


class EpochLines(Callback):
    """The lines ``fit(verbose=1)`` prints after each epoch, without its
    progress bar: a bar redrawn with carriage returns leaves fragments in a
    log file."""

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> None:
        parts = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        print(f"epoch {epoch + 1}: {parts}", flush=True)


def train(args: Any) -> int:
    import tinynet as tn

    from .checkpoint import save

    _start_processes(args)
    backend = _select_backend(args)
    data = datasets.by_name(args.dataset)
    (x_train, y_train), test = data.train, data.test
    if args.save:
        _check_output(args.save, "--save")
    if args.plot:
        from .plot import check_path

        _check_output(args.plot, "--plot")
        check_path(args.plot)
    _check_devices(args, backend)
    if int(len(x_train) * VALIDATION_SPLIT) == 0:
        raise CLIError(
            f"{data.name} has only {len(x_train)} training samples; tinynet train needs "
            f"at least {round(1 / VALIDATION_SPLIT)} ({VALIDATION_SPLIT:.0%} are held out "
            "for validation)"
        )
    classes = int(max(y_train.max(), test[1].max())) + 1
    model = build_mlp(
        x_train.shape[1], classes, args.hidden, args.activation, args.dropout, args.dtype, args.seed
    )
    lr = args.lr or default_lr(args.optimizer)
    epochs = args.epochs or DEFAULT_EPOCHS.get(data.name, 10)
    print(
        f"tinynet {tn.__version__}: training {model.num_params} parameters on {data.name} "
        f"({len(x_train)} train, {VALIDATION_SPLIT:.0%} of them for validation / "
        f"{len(test[0])} test samples) with the "
        f"{backend.name} backend ({backend.description}), {args.dtype}, "
        f"{args.optimizer} lr={lr}, {epochs} epochs of batch {args.batch_size}"
        + (f", data-parallel on {args.devices} device(s)" if args.devices else ""),
        flush=True,
    )
    if data.note:
        print(data.note)
    bars = not args.quiet and sys.stderr.isatty()
    callbacks = [tn.TerminateOnNaN()]
    if not args.quiet and not bars:  # fit(verbose=0) prints no epoch lines: we do
        callbacks.insert(0, EpochLines())
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        loss="sparse_categorical_crossentropy",
        optimizer=_optimizer(args.optimizer, lr),
        epochs=epochs,
        batch_size=args.batch_size,
        validation_split=VALIDATION_SPLIT,
        seed=args.seed,
        verbose=1 if bars else 0,
        callbacks=callbacks,
        devices=args.devices,
    )
    seconds = time.perf_counter() - start
    if history.interrupted:  # the user wants out: more Ctrl-C must not cut the save short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if history.stopped_early and not bars:  # fit(verbose=1) has printed it
        print(history.stopped_early)
    print(f"trained {len(history.epoch)} epochs in {seconds:.1f} s")
    if args.save and args.process_id == 0:  # one writer in a multi-process run
        record = {"name": data.spec, "input_shape": list(x_train.shape[1:])}
        try:
            save(model, args.save, dataset=record)
        except OSError as err:
            raise CLIError(f"--save {args.save}: cannot write it: {err.strerror or err}") from None
        print(f"saved model to {args.save}")
    if history.interrupted:  # Unix: 128 + SIGINT, also when the model was saved
        kept = f"saved to {args.save}; fit continues it" if args.save else "not saved (no --save)"
        print(f"interrupted: {model.stop_reason}; the model so far is {kept}")
        return 130
    if args.plot:
        from .plot import plot_training

        plot_training(history, args.plot, model=model, data=(x_train, y_train))
        print(f"wrote plot to {args.plot}")
    result = model.evaluate(*test, loss="sparse_categorical_crossentropy")
    print(f"test loss: {result['loss']:.4f}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return 0


# ------------------------------------------------------------------ evaluate / predict


def _trained_on(path: str) -> str | None:
    """The ``--dataset`` the checkpoint at ``path`` records (None: not recorded)."""
    from .checkpoint import saved_dataset

    record = saved_dataset(path)
    name = record.get("name") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def evaluate(args: Any) -> int:
    import tinynet as tn

    _select_backend(args)
    model = tn.load(args.model)
    trained_on = _trained_on(args.model)
    recorded_file = trained_on not in (None, "spiral", "digits")
    if args.dataset is None and recorded_file and not os.path.exists(trained_on):
        raise CLIError(
            f"{args.model} was trained on {trained_on}, which is not found here; "
            "pass --dataset with its path"
        )
    data = datasets.by_name(args.dataset or trained_on)
    x, y = data.test
    why = f"it was trained on {trained_on}" if trained_on else "its dataset is not recorded"
    fix = f"pass --dataset {trained_on}" if trained_on else "pass the --dataset it was trained on"
    if x.shape[1] != model.input_features:
        raise CLIError(
            f"{args.model} takes {model.input_features} input features ({why}), but "
            f"{data.name} has {x.shape[1]}; {fix}"
        )
    if y.max() >= model.output_features:
        raise CLIError(
            f"{args.model} predicts {model.output_features} classes ({why}), but "
            f"{data.name} has labels up to {int(y.max())}; {fix}"
        )
    result = model.evaluate(x, y, loss="sparse_categorical_crossentropy")
    if data.note:
        print(data.note)
    print(f"{data.name}: {len(x)} samples")
    print(f"loss: {result['loss']:.4f}")
    print(f"accuracy: {result['accuracy']:.4f}")
    return 0


_NPY_MAGIC = b"\x93NUMPY"
_UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def _read_inputs(path: str, key: str | None) -> tuple[np.ndarray, str]:
    """The raw array to predict from a .npy file or an .npz archive, and its name."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except FileNotFoundError:
        raise CLIError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"{path} is a folder; give a .npy or .npz file") from None
    if magic != _NPY_MAGIC and not magic.startswith(b"PK"):
        raise CLIError(
            f"{path} is not a .npy or .npz file; save the inputs with np.save(path, x) "
            "or np.savez(path, x=x)"
        )
    if magic == _NPY_MAGIC and key is not None:
        raise CLIError(f"--key picks an array of an .npz file, but {path} is a .npy file")
    try:
        if magic == _NPY_MAGIC:
            return np.load(path, allow_pickle=False), path
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            key = key or next((k for k in ("x", "x_test") if k in names), None)
            if key not in names:
                raise CLIError(
                    f"{path} has no array {key or 'x or x_test'} (it has "
                    f"{', '.join(names) or 'none'}); choose one with --key NAME"
                )
            return npz[key], f"{path}: {key!r}"
    except _UNREADABLE as err:
        if "pickle" in str(err):
            raise CLIError(
                f"{path} holds Python objects (pickled data), which tinynet never "
                "loads; save a numeric array with np.save"
            ) from None
        raise CLIError(f"cannot read {path}: {err}") from None


def predict(args: Any) -> int:
    import tinynet as tn

    from .datasets import _features  # the conversion training data gets

    _select_backend(args)
    output = args.output
    if output is not None:
        output = output if output.endswith(".npy") else output + ".npy"  # as np.save does
        _check_output(output, "--output")
    model = tn.load(args.model)
    raw, where = _read_inputs(args.input, args.key)
    if raw.size == 0:
        raise CLIError(f"{where} is empty (shape {raw.shape}): nothing to predict")
    if raw.ndim < 2:
        raise CLIError(
            f"{where} has shape {raw.shape}; predict takes rows of features, shape "
            f"(n, {model.input_features}) (one sample: x.reshape(1, -1))"
        )
    x = _features(raw, where)
    if x.shape[1] != model.input_features:
        trained_on = _trained_on(args.model)
        raise CLIError(
            f"{where} has {x.shape[1]} features per row, but {args.model} takes "
            f"{model.input_features}"
            + (f" (it was trained on {trained_on})" if trained_on else "")
            + "; give inputs shaped like its training data"
        )
    out = tn.to_numpy(model.predict(x))
    if output is not None:
        np.save(output, out)
        print(f"wrote outputs of shape {out.shape} to {output}", file=sys.stderr)
    if out.shape[1] > 1:
        classes = out.argmax(axis=1)
        chosen = out[np.arange(len(out)), classes]
    else:
        classes = (out[:, 0] > 0.5).astype(int)
        chosen = np.where(classes == 1, out[:, 0], 1 - out[:, 0])
    head = type(model.layers[-1]).__name__
    print(f"index\tclass\t{'probability' if head in ('Softmax', 'Sigmoid') else 'score'}")
    for i, (c, p) in enumerate(zip(classes, chosen, strict=True)):
        print(f"{i}\t{int(c)}\t{float(p):.4f}")
    return 0


# ------------------------------------------------------------------ info


def _extras() -> list[str]:
    """One line per extra of tinynet's package metadata: installed or what is missing."""
    try:
        requires = metadata.requires("tinynet") or []
    except metadata.PackageNotFoundError:
        return ["  unknown: tinynet is not installed as a package (pip install -e .)"]
    extras: dict[str, list[str]] = {}
    for requirement in requires:
        found = re.match(r"\s*([\w.-]+)[^;]*;.*extra\s*==\s*['\"]([\w.-]+)['\"]", requirement)
        if found:
            extras.setdefault(found[2], []).append(found[1])
    lines = []
    for extra, packages in extras.items():
        versions, missing = [], []
        for package in packages:
            try:
                versions.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                missing.append(package)
        status = f"missing {', '.join(missing)}" if missing else "installed"
        lines.append(f"  {extra:7s} {status}" + ("" if missing else f" ({', '.join(versions)})"))
    return lines


def info(args: Any) -> int:
    import tinynet as tn

    print(f"tinynet {tn.__version__} (python {sys.version.split()[0]})")
    try:
        name, why = backends.current_name()
        print(f"default backend: {name} (chosen by {why})")
    except ValueError as err:
        print(f"default backend: invalid: {err}")
    device = os.environ.get(backends.DEVICE_ENV_VAR, "").strip()
    if device:
        print(
            f"device: {device} (chosen by {backends.DEVICE_ENV_VAR}; for the backends with "
            f"devices: {', '.join(backends.WITH_DEVICES)})"
        )
    print("backends:")
    for candidate in backends.BACKEND_NAMES:
        try:
            backend, problem = backends.probe(candidate)
        except ValueError as err:  # a TINYNET_DEVICE this backend does not know
            backend, problem = None, str(err)
        if backend is None:
            print(f"  {candidate:7s} unavailable: {problem}")
        else:
            print(
                f"  {candidate:7s} {backend.version:10s} {backend.description}, "
                f"computes on {backend.device}"
            )
    print("extras (pip install 'tinynet[EXTRA]'):")
    for line in _extras():
        print(line)
    return 0


# ------------------------------------------------------------------ compare, bench


def compare_backends(args: Any) -> int:
    from .compare import format_report, verdict

    report = main_compare(
        args.dataset,
        hidden=args.hidden,
        activation=args.activation,
        dtype=args.dtype,
        seed=args.seed,
        batch_size=args.batch_size,
        backends=args.backends,
        dropout=args.dropout,
        optimizer=_optimizer(args.optimizer, args.lr),
    )
    print(format_report(report))
    passed, line = verdict(report)
    print(line)
    return 0 if passed else 1


def bench(args: Any) -> int:
    script = Path(__file__).resolve().parent.parent / "bench" / "train_step.py"
    if not script.exists():
        raise CLIError("tinynet bench needs a source checkout (bench/train_step.py was not found)")
    return subprocess.call([sys.executable, str(script), *args.args])


def main_compare(
    dataset: str | tuple[Any, Any] | None = None,
    hidden: Sequence[int] = HIDDEN,
    activation: str = "relu",
    dtype: str = "float32",
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    *,
    backends: Sequence[str] | None = None,
    dropout: float = 0.0,
    optimizer: Any = "adam",
) -> Any:
    """A :class:`tinynet.compare.CompareReport`: build the ``tinynet train``
    MLP for ``dataset`` (``spiral``, ``digits``, a ``PATH.npz``, an ``(x, y)``
    pair of features and integer labels, or ``None`` for train's default) and
    compare its first training step (the batch and Dropout masks ``fit`` with
    ``seed`` starts with) across ``backends``.  Defaults are ``tinynet
    train``'s; an optimizer given by name gets train's learning rate.  The
    CLI's ``tinynet compare-backends`` prints the report and its verdict."""
    import tinynet as tn

    if isinstance(optimizer, str):
        from . import optimizers

        optimizer = type(optimizers.get(optimizer))(lr=default_lr(optimizer))
    if dataset is None or isinstance(dataset, str):
        x, y = datasets.by_name(dataset).train
    else:
        x, y = dataset
    x, y = tn.to_numpy(x), tn.to_numpy(y)  # host NumPy arrays pass through
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError("main_compare: y must be 1-D integer class labels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, received {batch_size!r}")
    classes = int(y.max()) + 1
    model = build_mlp(
        x.shape[1], classes, hidden, activation, dropout, dtype, seed, backend="numpy"
    )
    epoch_key = random.fold_in(random.key(seed, "numpy"), 0)
    order = random.permutation(random.fold_in(epoch_key, 0x5EED), x.shape[0])
    rows = order[: min(batch_size, x.shape[0])]
    from .compare import compare_backends

    return compare_backends(
        model,
        x[rows],
        y[rows],
        "sparse_categorical_crossentropy",
        backends=backends,
        optimizer=optimizer,
        dtype=dtype,
        seed=seed,
    )
