"""The ``tinynet`` command line's parser, its defaults (``compare-backends``
shares train's) and :class:`CLIError`; it imports no array library (fast ``--help``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from .backends import BACKEND_NAMES as BACKENDS
from .models import MODELS

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "softplus")
SCHEDULES = ("constant", "cosine")

# The defaults of ``tinynet train``, which ``compare-backends`` uses too.
HIDDEN = (128, 64)
BATCH_SIZE = 32

# A dataset's own defaults.  Fashion-MNIST: 784-256-128-10, batches of 128 and
# Adam at 1e-3 (the usual Keras recipe; 3e-3 with batches of 32 suits the 1,438
# digits).  On both the rate decays along a cosine to 0 by the last step: with a
# constant rate the final test accuracy fluctuates with the last batches (the
# cnn's BatchNorm statistics most: 0.94 against 0.997 on digits, seed 1).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": dict(schedule="cosine"),
    "fashion-mnist": dict(hidden=(256, 128), batch_size=128, adam_lr=0.001, schedule="cosine"),
}


PREDICT_FORMAT = """\
output: a header line, then one tab-separated line per row of INPUT:
  index        the row's position in INPUT, from 0
  class        the predicted class: the largest output (one sigmoid output: 1 if > 0.5)
  probability  the model's output for that class (its score if the model's
               last layer is not Softmax or Sigmoid; the header then says score)

INPUT is converted as for training: uint8 data (pixels 0..255) is scaled to
[0, 1]; rows are flattened to (n, features) for an mlp, and for a model taking
images (a cnn on 28x28x1) INPUT may be (n, 28, 28, 1), (n, 28, 28) or flat
rows (n, 784).  An empty INPUT is an error."""


def _for_dataset(dataset: str | None, key: str, fallback: Any) -> Any:
    return DATASET_DEFAULTS.get(dataset or "", {}).get(key, fallback)


def default_lr(optimizer: str, dataset: str | None = None) -> float:
    """``--lr``'s default for ``optimizer`` (and ``dataset``: see ``DATASET_DEFAULTS``)."""
    return 0.1 if optimizer == "sgd" else _for_dataset(dataset, "adam_lr", 0.003)


def default_hidden(dataset: str | None) -> list[int]:
    return list(_for_dataset(dataset, "hidden", HIDDEN))


def default_schedule(dataset: str | None) -> str:
    return _for_dataset(dataset, "schedule", "constant")


def default_batch_size(dataset: str | None) -> int:
    return _for_dataset(dataset, "batch_size", BATCH_SIZE)


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to read more."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(
    convert: Callable[[str], Any], ok: Callable[[Any], bool], message: str
) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)`` if ``ok`` accepts it, else ``message``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
            if ok(value):
                return value
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"{message}, received {text!r}")

    return parse


_positive_int = _checked(int, lambda v: v > 0, "expected an integer > 0")
_positive_float = _checked(float, lambda v: 0 < v < math.inf, "expected a finite number > 0")
_integer = _checked(  # a seed or an index
    int, lambda v: -(2**63) <= v < 2**63, "expected an integer (64-bit), like 0 or 42"
)
_rate = _checked(float, lambda v: 0 <= v < 1, "expected a number in [0, 1)")
_hidden = _checked(
    lambda text: [int(p) if p.strip().isdigit() else 0 for p in text.split(",")],  # 0 refused
    lambda widths: min(widths) > 0,
    "expected one or more positive layer widths separated by commas (like 128,64)",
)
_backend_list = _checked(
    lambda text: [s.strip().lower() for s in text.split(",") if s.strip()],
    lambda names: bool(names) and set(names) <= set(BACKENDS),
    f"expected comma-separated names from {', '.join(BACKENDS)}",
)


# Every argument's --help text ("command flag" where commands differ), and the
# description of compare-backends.
HELP = {
    "--backend": "array backend (default: $TINYNET_BACKEND or numpy)",
    "--device": "device of a backend with devices, e.g. cpu, cuda, cuda:1, mps (torch) or gpu "
    "(jax) (default: $TINYNET_DEVICE, else the backend's own: torch takes CUDA, then MPS, then "
    "the CPU)",
    "--dataset": "spiral, digits, fashion-mnist (from its IDX files: apt-get install "
    "dataset-fashion-mnist, or a folder in $TINYNET_DATA) or a PATH.npz (default: digits if "
    "scikit-learn is installed, else spiral)",
    "--model": "mlp: Dense layers of --hidden widths on the flattened input; cnn (images only: "
    "digits, fashion-mnist): Conv2D(32,3)-BatchNorm-MaxPool2D-Conv2D(64,3)-BatchNorm-MaxPool2D-"
    "Dense(128)-Dropout(0.25) (default: mlp)",
    "--hidden": f"hidden layer widths, comma-separated, at least one (default: "
    f"{','.join(map(str, HIDDEN))}; 256,128 on fashion-mnist)",
    "--dropout": "dropout rate (probability of DROPPING) after each hidden layer; the masks are "
    "the same on every backend",
    "--lr": f"learning rate (default: {default_lr('adam')} for adam-family, "
    f"{default_lr('adam', 'fashion-mnist')} on fashion-mnist; {default_lr('sgd')} for sgd)",
    "--batch-size": f"(default: {BATCH_SIZE}; {default_batch_size('fashion-mnist')} on "
    "fashion-mnist)",
    "--seed": "seed of the initial parameters, the batches and the dropout masks",
    "--schedule": "learning-rate schedule: constant, or cosine: from --lr down to 0 at the run's "
    "last step along a half cosine (Keras' CosineDecay) (default: cosine on digits and "
    "fashion-mnist, else constant)",
    "--epochs": "epochs (default: 40 on digits, 300 on spiral, 10 otherwise)",
    "--save": "write the trained model to this .safetensors file (it records the dataset, which "
    "evaluate then uses by default)",
    "--plot": "write loss/accuracy curves (and decision regions for 2-D data) to this image file "
    "(.png, .pdf, .svg; needs matplotlib)",
    "--quiet": "no progress bars and no epoch lines: only the run's first line, its summary and "
    "the test result (without --quiet, bars are shown only when stderr is a terminal)",
    "--devices": "split every batch over N JAX devices (with --coordinator: the devices of all "
    "processes, the default); --batch-size must be a multiple of N",
    "--coordinator": "multi-process run: address of process 0, the same in every process",
    "--num-processes": "multi-process run: number of processes (default: 1)",
    "--process-id": "multi-process run: this process's index, 0..P-1 (default: 0)",
    "model": "a .safetensors file written by tinynet",
    "evaluate --dataset": "spiral, digits, fashion-mnist or PATH.npz (default: the dataset the "
    "model was trained on, as recorded by tinynet train --save); evaluated on its test split",
    "input": "a .npy file of shape (n, features...), or an .npz file (its array 'x', else "
    "'x_test'; choose another with --key)",
    "--key": "the array of an .npz INPUT to predict",
    "--output": "also write the model outputs (n, classes) to this .npy file",
    "bench args": "arguments for bench/train_step.py (e.g. --quick)",
    "--backends": "comma-separated backends to compare (default: all; unavailable ones are "
    "listed with the reason)",
    "compare-backends": "One training step of train's model (train's flags and defaults; with "
    "the parameters after one --optimizer update) on every backend, compared layer by layer "
    "with the same step in float64 on NumPy.  Ends with PASS (exit 0) if every difference is "
    "within the tolerance of the dtype (stated on that line), else FAIL (exit 1).",
}


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, help=HELP["--backend"])
    parser.add_argument("--device", help=HELP["--device"])


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Train's flags that ``compare-backends`` shares (None: depends on the dataset)."""
    parser.add_argument("--dataset", help=HELP["--dataset"])
    parser.add_argument("--model", choices=MODELS, default="mlp", help=HELP["--model"])
    parser.add_argument("--hidden", type=_hidden, help=HELP["--hidden"])
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    parser.add_argument("--dropout", type=_rate, default=0.0, help=HELP["--dropout"])
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--lr", type=_positive_float, help=HELP["--lr"])
    parser.add_argument("--batch-size", type=_positive_int, help=HELP["--batch-size"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=_integer, default=0, help=HELP["--seed"])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinynet",
        description="Train small neural networks on NumPy, JAX, CuPy or PyTorch with hand-written "
        "backprop.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train an MLP or a CNN and report its test accuracy")
    _add_model_arguments(train)
    _add_backend_arguments(train)
    train.add_argument("--schedule", choices=SCHEDULES, help=HELP["--schedule"])
    train.add_argument("--epochs", type=_positive_int, help=HELP["--epochs"])
    train.add_argument("--save", metavar="PATH", help=HELP["--save"])
    train.add_argument("--plot", metavar="PNG", help=HELP["--plot"])
    train.add_argument("--quiet", action="store_true", help=HELP["--quiet"])
    parallel = train.add_argument_group("data parallelism (JAX backend; see docs/parallel.md)")
    parallel.add_argument("--devices", type=_positive_int, metavar="N", help=HELP["--devices"])
    parallel.add_argument("--coordinator", metavar="HOST:PORT", help=HELP["--coordinator"])
    parallel.add_argument(
        "--num-processes", type=_positive_int, default=1, metavar="P", help=HELP["--num-processes"]
    )
    parallel.add_argument(
        "--process-id", type=_integer, default=0, metavar="I", help=HELP["--process-id"]
    )

    evaluate = sub.add_parser("evaluate", help="report loss and accuracy of a saved model")
    evaluate.add_argument("model", help=HELP["model"])
    evaluate.add_argument("--dataset", help=HELP["evaluate --dataset"])
    _add_backend_arguments(evaluate)

    predict = sub.add_parser(
        "predict",
        help="predict classes for inputs in a .npy or .npz file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict the class of every row of INPUT.",
        epilog=PREDICT_FORMAT,
    )
    predict.add_argument("model", help=HELP["model"])
    predict.add_argument("input", help=HELP["input"])
    predict.add_argument("--key", help=HELP["--key"])
    predict.add_argument("--output", help=HELP["--output"])
    _add_backend_arguments(predict)

    sub.add_parser(
        "info", help="installed backends, versions, devices, extras and the default backend"
    )

    compare = sub.add_parser(
        "compare-backends",
        help="one training step on every backend: per-layer differences from a float64 NumPy run",
        description=HELP["compare-backends"],
    )
    _add_model_arguments(compare)
    compare.add_argument("--backends", type=_backend_list, help=HELP["--backends"])

    bench = sub.add_parser("bench", help="run bench/train_step.py (from a source checkout)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help=HELP["bench args"])
    return parser
