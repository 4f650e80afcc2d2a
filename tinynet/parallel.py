"""Data-parallel training on JAX, ``fit(..., devices=N)``, over one or several
processes (see docs/parallel.md).  ``python -m tinynet.parallel`` trains a small
model on 1 and on N devices and prints how far apart the results are."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from . import arguments, backends
from .data_parallel import DataParallel, _impl

__all__ = ["DataParallel", "device_count", "initialize", "is_initialized", "shutdown"]


def initialize(
    coordinator: str,
    num_processes: int,
    process_id: int,
    *,
    bind_address: str | None = None,
    timeout: int = 300,
) -> None:
    """Join a run of ``num_processes`` processes (``jax.distributed.initialize``):
    call it in every process before anything else touches JAX, with the same
    ``coordinator`` (``"HOST:PORT"`` of process 0), ``process_id`` 0, 1, ...
    ``num_processes - 1``; process 0 serves on ``bind_address`` (default: the
    coordinator's), ``timeout`` in seconds.  Then ``fit(..., devices=device_count())``
    with the FULL data set in every process."""
    host, _, port = coordinator.rpartition(":") if isinstance(coordinator, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            "coordinator must be 'HOST:PORT' (process 0's address) with a port in 1..65535, "
            f"received {coordinator!r}"
        )
    num_processes = arguments.count("", "num_processes", num_processes, 1)
    process_id = arguments.count("", "process_id", process_id, 0)
    if process_id >= num_processes:
        raise ValueError(
            f"process_id must be in 0..{num_processes - 1} for num_processes={num_processes}, "
            f"received process_id={process_id}"
        )
    timeout = arguments.count("", "timeout", timeout, 1)
    _impl().initialize(
        coordinator, num_processes, process_id, bind_address=bind_address, timeout=timeout
    )


def is_initialized() -> bool:
    """True after :func:`initialize` in this process."""
    try:
        return _impl().is_initialized()
    except backends.BackendUnavailableError:
        return False


def shutdown() -> None:
    """Leave the multi-process run (optional; JAX also does it at exit)."""
    _impl().shutdown()


def device_count() -> int:
    """The number of JAX devices of the run (of all processes together)."""
    backends.load("jax")
    return _impl().info()["global_devices"]


def _train(devices: int | None, dtype: str, args: argparse.Namespace) -> dict[str, Any]:
    import tinynet as tn

    per_class = math.ceil(args.samples / 3)
    x, y = tn.datasets.spiral(samples_per_class=per_class, classes=3, noise=0.2, seed=0)
    rows = np.random.default_rng(0).permutation(x.shape[0])[: args.samples]
    x, y = x[rows].astype(dtype), y[rows]
    layers = [tn.Dense(2, 16), tn.ReLU()]
    if args.dropout:
        layers.append(tn.Dropout(args.dropout))
    layers += [tn.Dense(16, 16), tn.Tanh(), tn.Dense(16, 3), tn.Softmax()]
    model = tn.Sequential(layers, dtype=dtype, seed=args.seed, backend="jax")
    history = model.fit(
        x,
        y,
        loss="sparse_categorical_crossentropy",
        optimizer=tn.optimizers.Adam(lr=0.01),
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        seed=args.seed,
        verbose=0,
        steps_per_execution=args.steps_per_execution,
        devices=devices,
    )
    return {
        "devices": devices,
        "dtype": dtype,
        "history": history.history,
        "evaluate": model.evaluate(x, y, loss="sparse_categorical_crossentropy"),
        "params": [{k: tn.to_numpy(v).tolist() for k, v in p.items()} for p in model.params],
    }


def _max_rel_diff(run: dict[str, Any], base: dict[str, Any]) -> float:
    """Largest ``|a - b| / max|b|`` over the loss history and every parameter."""
    pairs = [(run["history"][k], base["history"][k]) for k in base["history"]]
    pairs += [(p[k], q[k]) for p, q in zip(run["params"], base["params"], strict=True) for k in q]
    worst = 0.0
    for a, b in pairs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinynet.parallel",
        description="Train a small model on one device and data-parallel on N devices "
        "(JAX) and report how far apart the results are.",
    )
    add = parser.add_argument
    add("--devices", help="comma-separated device counts to try (default: all devices)")
    add("--dtype", default="float32,float64", help="comma-separated dtypes (default: %(default)s)")
    add("--coordinator", metavar="HOST:PORT", help="multi-process run: process 0's address")
    add("--num-processes", type=int, default=1)
    add("--process-id", type=int, default=0)
    add("--epochs", type=int, default=3)
    add("--batch-size", type=int, default=16)
    add("--samples", type=int, default=100, help="samples (10%% are held out for validation)")
    add("--dropout", type=float, default=0.1)
    add("--steps-per-execution", type=lambda v: v if v == "auto" else int(v), default="auto")
    add("--seed", type=int, default=0)
    add("--no-reference", action="store_true", help="skip the single-device reference run")
    add("--json", action="store_true", help="print every run (histories, parameters) as JSON")
    args = parser.parse_args(argv)

    if args.coordinator is not None:
        initialize(args.coordinator, args.num_processes, args.process_id)
    elif args.num_processes != 1:
        parser.error("--num-processes needs --coordinator HOST:PORT")
    backends.load("jax")
    info = _impl().info()
    counts = [int(s) for s in args.devices.split(",")] if args.devices else [info["global_devices"]]
    out: dict[str, Any] = {"info": info, "runs": []}
    for dtype in [s.strip() for s in args.dtype.split(",") if s.strip()]:
        base = None
        for n in ([] if args.no_reference else [None]) + counts:  # None: the reference run
            run = _train(n, dtype, args)
            if n is None:
                base = run
            run["max_rel_diff"] = _max_rel_diff(run, base) if base is not None else None
            out["runs"].append(run)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"process {info['process_index']} of {info['process_count']}: "
        f"{info['global_devices']} {info['platform']} device(s), {info['local_devices']} local"
    )
    for run in out["runs"]:
        where = "1 device (reference)" if run["devices"] is None else f"devices={run['devices']}"
        diff = run["max_rel_diff"]
        diff = "" if diff is None else f"  max relative difference {diff:.2e}"
        loss = run["history"]["loss"][-1]
        print(f"  {run['dtype']:8s} {where:22s} final loss {loss:.6f}{diff}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
