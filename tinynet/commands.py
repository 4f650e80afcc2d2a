"""What each ``tinynet`` subcommand does; a user mistake raises ``CLIError`` (or
``ValueError``) naming the input and the fix, before any training where it can."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import arguments, backends, datasets, models, random
from .callbacks import Callback
from .options import CLIError, default_batch_size, default_hidden, default_lr, default_schedule

LOSS = "sparse_categorical_crossentropy"  # integer class labels, as every dataset has
DEFAULT_EPOCHS = {"digits": 40, "spiral": 300, "fashion-mnist": 10}
VALIDATION_SPLIT = 0.1


def _select_backend(args: Any) -> backends.Backend:
    """``--backend`` (else the current backend) on ``--device`` (else its chosen one)."""
    name, device = args.backend, getattr(args, "device", None)
    if name is not None or device is not None:
        return backends.set_backend(name or backends.current_name()[0], device)
    return backends.get_backend()


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


def _optimizer(name: str, lr: float | None, dataset: str | None = None) -> Any:
    from . import optimizers

    return type(optimizers.get(name))(lr=lr or default_lr(name, dataset))


def _check_model_flags(args: Any) -> None:
    """``--hidden`` and ``--dropout`` shape the mlp only."""
    if args.model == "cnn" and (args.hidden is not None or args.dropout):
        given = "--hidden" if args.hidden is not None else "--dropout"
        raise CLIError(f"{given} shapes the mlp; --model cnn has fixed layers, drop {given}")


def _build_model(kind: str, x: np.ndarray, classes: int, where: str, **options: Any) -> Any:
    """:func:`tinynet.models.build` for samples like ``x``; a refusal names ``where``."""
    try:
        return models.build(kind, x.shape[1:], classes, **options)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


class EpochLines(Callback):
    """``fit(verbose=1)``'s epoch lines without its bar (whose carriage returns
    leave fragments in a log file)."""

    def on_epoch_end(self, model: Any, epoch: int, logs: dict[str, float]) -> None:
        parts = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        print(f"epoch {epoch + 1}: {parts}", flush=True)


def train(args: Any) -> int:
    import tinynet as tn

    from .checkpoint import save

    _start_processes(args)
    backend = _select_backend(args)
    data = datasets.by_name(args.dataset)
    args.batch_size = args.batch_size or default_batch_size(data.name)
    if args.save:
        _check_output(args.save, "--save")
    if args.plot:
        from .plot import check_path

        _check_output(args.plot, "--plot")
        check_path(args.plot)
    _check_devices(args, backend)
    if int(len(data.train[0]) * VALIDATION_SPLIT) == 0:
        raise CLIError(
            f"{data.name} has only {len(data.train[0])} training samples; tinynet train needs "
            f"at least {round(1 / VALIDATION_SPLIT)} ({VALIDATION_SPLIT:.0%} are held out "
            "for validation)"
        )
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    classes = int(max(y_train.max(), y_test.max())) + 1
    _check_model_flags(args)
    hidden = args.hidden or default_hidden(data.name)
    options = {k: getattr(args, k) for k in ("activation", "dropout", "dtype", "seed")}
    where = f"--model {args.model} on {data.name}"
    model = _build_model(args.model, x_train, classes, where, hidden=hidden, **options)
    x_train = models.fit_to(x_train, model.input_shape)  # flat rows for an mlp
    test = models.fit_to(x_test, model.input_shape), y_test
    lr = args.lr or default_lr(args.optimizer, data.name)
    epochs = args.epochs or DEFAULT_EPOCHS.get(data.name, 10)
    rate, decay = lr, ""
    if (args.schedule or default_schedule(data.name)) == "cosine":
        from .schedules import CosineDecay

        n_fit = len(x_train) - int(len(x_train) * VALIDATION_SPLIT)
        steps = epochs * math.ceil(n_fit / args.batch_size)
        rate, decay = CosineDecay(lr, steps), f" cosine-decayed to 0 over {steps} steps"
    print(
        f"tinynet {tn.__version__}: training {models.describe(model)} "
        f"({model.num_params} parameters) on {data.name} "
        f"({len(x_train)} train, {VALIDATION_SPLIT:.0%} of them for validation / "
        f"{len(test[0])} test samples) with the "
        f"{backend.name} backend ({backend.description}), {args.dtype}, "
        f"{args.optimizer} lr={lr}{decay}, {epochs} epochs of batch {args.batch_size}"
        + (f", data-parallel on {args.devices} device(s)" if args.devices else ""),
        flush=True,
    )
    if data.note:
        print(data.note)
    bars = not args.quiet and sys.stderr.isatty()
    lines = [] if args.quiet or bars else [EpochLines()]  # fit(verbose=0) prints none
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        loss=LOSS,
        optimizer=_optimizer(args.optimizer, rate),
        epochs=epochs,
        batch_size=args.batch_size,
        validation_split=VALIDATION_SPLIT,
        seed=args.seed,
        verbose=1 if bars else 0,
        callbacks=[*lines, tn.TerminateOnNaN()],
        devices=args.devices,
    )
    seconds = time.perf_counter() - start
    if history.interrupted:  # the user wants out: more Ctrl-C must not cut the save short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if history.stopped_early and not bars:  # fit(verbose=1) has printed it
        print(history.stopped_early)
    print(f"trained {len(history.epoch)} epochs in {seconds:.1f} s")
    if args.save and args.process_id == 0:  # one writer in a multi-process run
        record = {"name": data.spec, "input_shape": list(model.input_shape)}
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
    result = model.evaluate(*test, loss=LOSS)
    print(f"test loss: {result['loss']:.4f}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return 0


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
    recorded_file = trained_on is not None and trained_on not in datasets.BUILTIN
    if args.dataset is None and recorded_file and not os.path.exists(trained_on):
        raise CLIError(
            f"{args.model} was trained on {trained_on}, which is not found here; "
            "pass --dataset with its path"
        )
    data = datasets.by_name(args.dataset or trained_on)
    raw, y = data.test
    why = f"it was trained on {trained_on}" if trained_on else "its dataset is not recorded"
    fix = f"pass --dataset {trained_on}" if trained_on else "pass the --dataset it was trained on"
    x = models.fit_to(raw, model.input_shape)
    if x is None:
        raise CLIError(
            f"{args.model} takes {_takes(model)} ({why}), but {data.name} has "
            f"{_has(raw.shape[1:])}; {fix}"
        )
    if y.max() >= model.output_features:
        raise CLIError(
            f"{args.model} predicts {model.output_features} classes ({why}), but "
            f"{data.name} has labels up to {int(y.max())}; {fix}"
        )
    result = model.evaluate(x, y, loss=LOSS)
    if data.note:
        print(data.note)
    print(f"{data.name}: {len(x)} samples")
    print(f"loss: {result['loss']:.4f}")
    print(f"accuracy: {result['accuracy']:.4f}")
    return 0


def _takes(model: Any) -> str:
    if len(model.input_shape) == 1:
        return f"{model.input_features} input features"
    size = math.prod(model.input_shape)
    return f"images of shape {model.input_shape} (or rows of {size} features)"


def _has(sample_shape: tuple[int, ...]) -> str:
    if len(sample_shape) == 1:
        return f"{sample_shape[0]} features per row"
    return f"samples of shape {tuple(sample_shape)} ({math.prod(sample_shape)} features)"


def predict(args: Any) -> int:
    import tinynet as tn

    from .datasets import _features  # the conversion training data gets

    _select_backend(args)
    output = args.output
    if output is not None:
        output = output if output.endswith(".npy") else output + ".npy"  # as np.save does
        _check_output(output, "--output")
    model = tn.load(args.model)
    raw, where = datasets.read_inputs(args.input, args.key)
    if raw.size == 0:
        raise CLIError(f"{where} is empty (shape {raw.shape}): nothing to predict")
    if raw.ndim < 2:
        raise CLIError(
            f"{where} has shape {raw.shape}; predict takes rows of features, shape "
            f"(n, {model.input_features}) (one sample: x.reshape(1, -1))"
        )
    x = models.fit_to(_features(raw, where).reshape(raw.shape), model.input_shape)
    if x is None:
        trained_on = _trained_on(args.model)
        raise CLIError(
            f"{where} has {_has(raw.shape[1:])}, but {args.model} takes {_takes(model)}"
            + (f" (it was trained on {trained_on})" if trained_on else "")
            + "; give inputs shaped like its training data"
        )
    out = tn.to_numpy(model.predict(x))
    if output is not None:
        np.save(output, out)
        print(f"wrote outputs of shape {out.shape} to {output}", file=sys.stderr)
    if out.shape[1] == 1:  # one sigmoid output: class 1 if > 0.5 (1 - out is exact there)
        out = np.concatenate([1 - out, out], axis=1)
    classes = out.argmax(axis=1)
    chosen = out[np.arange(len(out)), classes]
    head = type(model.layers[-1]).__name__
    print(f"index\tclass\t{'probability' if head in ('Softmax', 'Sigmoid') else 'score'}")
    for i, (c, p) in enumerate(zip(classes, chosen, strict=True)):
        print(f"{i}\t{int(c)}\t{float(p):.4f}")
    return 0


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
        status = f"unavailable: {problem}"
        if backend is not None:
            status = f"{backend.version:10s} {backend.description}, computes on {backend.device}"
        print(f"  {candidate:7s} {status}")
    print("extras (pip install 'tinynet[EXTRA]'):")
    try:  # one line per extra of tinynet's package metadata: installed or what is missing
        requires = metadata.requires("tinynet") or []
    except metadata.PackageNotFoundError:
        print("  unknown: tinynet is not installed as a package (pip install -e .)")
        return 0
    extras: dict[str, list[str]] = {}
    for requirement in requires:
        found = re.match(r"\s*([\w.-]+)[^;]*;.*extra\s*==\s*['\"]([\w.-]+)['\"]", requirement)
        if found:
            extras.setdefault(found[2], []).append(found[1])
    for extra, packages in extras.items():
        versions, missing = [], []
        for package in packages:
            try:
                versions.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                missing.append(package)
        status = (
            f"missing {', '.join(missing)}" if missing else f"installed ({', '.join(versions)})"
        )
        print(f"  {extra:7s} {status}")
    return 0


def compare_backends(args: Any) -> int:
    from .compare import format_report, verdict

    _check_model_flags(args)
    shared = ("model", "hidden", "activation", "dtype", "seed", "batch_size", "backends", "dropout")
    optimizer = _optimizer(args.optimizer, args.lr, args.dataset)
    report = main_compare(
        args.dataset, optimizer=optimizer, **{k: getattr(args, k) for k in shared}
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
    hidden: Sequence[int] | None = None,
    activation: str = "relu",
    dtype: str = "float32",
    seed: int = 0,
    batch_size: int | None = None,
    *,
    model: str = "mlp",
    backends: Sequence[str] | None = None,
    dropout: float = 0.0,
    optimizer: Any = "adam",
) -> Any:
    """The :class:`~tinynet.compare.CompareReport` of ``fit``'s first step (batch and
    Dropout masks) of train's ``model`` for ``dataset`` (a name, ``PATH.npz``, an
    ``(x, y)`` pair or ``None``); ``None`` and an optimizer's name get train's defaults."""
    import tinynet as tn

    name = None
    if dataset is None or isinstance(dataset, str):
        data = datasets.by_name(dataset)
        (x, y), name = data.train, data.name
    else:
        x, y = dataset
    if isinstance(optimizer, str):
        optimizer = _optimizer(optimizer, None, name)
    hidden = default_hidden(name) if hidden is None else hidden
    batch_size = default_batch_size(name) if batch_size is None else batch_size
    x, y = tn.to_numpy(x), tn.to_numpy(y)  # host NumPy arrays pass through
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError("main_compare: y must be 1-D integer class labels")
    batch_size = arguments.count("main_compare", "batch_size", batch_size)
    classes = int(y.max()) + 1
    where = f"model {model!r} on {name or 'the given samples'}"
    options = dict(hidden=hidden, activation=activation, dropout=dropout, dtype=dtype, seed=seed)
    net = _build_model(model, x, classes, where, backend="numpy", **options)
    x = models.fit_to(x, net.input_shape)  # flat rows for an mlp
    from .compare import compare_backends
    from .fit_loop import epoch_setup

    order, _ = epoch_setup(random.key(seed, "numpy"), 0, x.shape[0], True, False)
    rows = order[: min(batch_size, x.shape[0])]

    return compare_backends(
        net, x[rows], y[rows], LOSS, backends, optimizer, dtype=dtype, seed=seed
    )
