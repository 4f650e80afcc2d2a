"""What each ``tinynet`` subcommand does (parsing lives in :mod:`tinynet.cli`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import backends

from .cli import CLIError, default_lr
from .model import build_mlp

DEFAULT_EPOCHS = {"digits": 40, "spiral": 300}


def _select_backend(name: str | None) -> backends.Backend:
    if name is not None:
        return backends.set_backend(name)
    return backends.get_backend()


def load_dataset(spec: str | None) -> tuple[str, tuple, tuple | None]:
    """``(name, (x_train, y_train), (x_test, y_test) or None)``."""
    from . import datasets

    if spec is None:
        spec = "digits" if "digits" in datasets.available() else "spiral"
    if spec == "spiral":
        x, y = datasets.spiral(samples_per_class=300, classes=3, noise=0.2, seed=0)
        train, test = datasets.train_test_split(x, y, test_fraction=0.2, seed=0)
        return "spiral", train, test
    if spec == "digits":
        train, test = datasets.digits()
        return "digits", train, test
    if spec.endswith(".npz") or os.path.exists(spec):
        train, test = datasets.load_npz(spec)
        return Path(spec).name, train, test
    raise CLIError(
        f"unknown dataset {spec!r}; use spiral, digits (needs scikit-learn) "
        "or a path to a .npz file"
    )


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


def train(args: Any) -> int:
    import tinynet as tn

    _start_processes(args)
    backend = _select_backend(args.backend)
    name, (x_train, y_train), test = load_dataset(args.dataset)
    classes = int(max(y_train.max(), test[1].max() if test else 0)) + 1
    model = build_mlp(
        x_train.shape[1], classes, args.hidden, args.activation, args.dropout, args.dtype, args.seed
    )
    lr = args.lr or default_lr(args.optimizer)
    epochs = args.epochs or DEFAULT_EPOCHS.get(name, 10)
    print(
        f"tinynet {tn.__version__}: training {model.num_params} parameters on {name} "
        f"({len(x_train)} train, 10% of them for validation / {len(test[0]) if test else 0} "
        "test samples) with the "
        f"{backend.name} backend ({backend.description}), {args.dtype}, "
        f"{args.optimizer} lr={lr}, {epochs} epochs of batch {args.batch_size}"
        + (f", data-parallel on {args.devices} device(s)" if args.devices else ""),
        flush=True,
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        loss="sparse_categorical_crossentropy",
        optimizer=_optimizer(args.optimizer, lr),
        epochs=epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
        callbacks=[tn.TerminateOnNaN()],
        devices=args.devices,
    )
    seconds = time.perf_counter() - start
    print(f"trained {len(history.epoch)} epochs in {seconds:.1f} s")
    if args.save and args.process_id == 0:  # one writer in a multi-process run
        model.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot:
        from .plot import plot_training

        plot_training(history, args.plot, model=model, data=(x_train, y_train))
        print(f"wrote plot to {args.plot}")
    if test is not None:
        result = model.evaluate(*test, loss="sparse_categorical_crossentropy")
        print(f"test loss: {result['loss']:.4f}")
        print(f"test accuracy: {result['accuracy']:.4f}")
    return 0


def evaluate(args: Any) -> int:
    import tinynet as tn

    _select_backend(args.backend)
    model = tn.load(args.model)
    name, train_data, test = load_dataset(args.dataset)
    x, y = test if test is not None else train_data
    result = model.evaluate(x, y, loss="sparse_categorical_crossentropy")
    print(f"{name}: {len(x)} samples")
    print(f"loss: {result['loss']:.4f}")
    print(f"accuracy: {result['accuracy']:.4f}")
    return 0


def predict(args: Any) -> int:
    import tinynet as tn

    _select_backend(args.backend)
    model = tn.load(args.model)
    try:
        x = np.load(args.input, allow_pickle=False)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise CLIError(f"cannot read {args.input}: {err} (expected a numeric .npy array)") from None
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    out = tn.to_numpy(model.predict(x))
    if args.output:
        np.save(args.output, out)
        print(f"wrote outputs of shape {out.shape} to {args.output}")
    classes = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
    for i, c in enumerate(classes):
        print(f"{i}\t{int(c)}\t{float(out[i].max()):.4f}")
    return 0


def info(args: Any) -> int:
    import tinynet as tn

    print(f"tinynet {tn.__version__} (python {sys.version.split()[0]})")
    try:
        name, why = backends.current_name()
        print(f"default backend: {name} (chosen by {why})")
    except ValueError as err:
        print(f"default backend: invalid: {err}")
    for candidate in backends.BACKEND_NAMES:
        backend, problem = backends.probe(candidate)
        if backend is None:
            print(f"  {candidate:7s} unavailable: {problem}")
        else:
            print(
                f"  {candidate:7s} {backend.version:10s} {backend.description}"
                f"  device={backend.device}"
            )
    return 0


def compare_backends(args: Any) -> int:
    from .compare import format_report, main_compare, verdict

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
