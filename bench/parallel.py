"""Data-parallel training step time on 1, 2 and 4 FAKE CPU devices.

    python bench/parallel.py                    # config M, devices 1,2,4
    python bench/parallel.py --quick --json out.json

Each device count runs in its own subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (JAX fixes its devices
when it starts) and ``JAX_PLATFORMS=cpu``.  In it, ``model.fit`` of config M
(784-256-128-10, batch 128, Adam, float32, no validation) runs one warm-up
epoch (compiles) and then ``--rounds`` timed epochs of ``--steps`` steps,
once on one device (``devices`` unset) and, for D > 1, with ``devices=D``.
The step time is the median epoch time divided by the steps.

This is a CORRECTNESS / OVERHEAD measurement, not a speedup claim: the fake
devices are slices of the same CPU cores, so D devices cannot be faster than
one; the ratio shows what the partitioned step (per-device batches, the
gradient all-reduce) costs.  The loss after the run is compared with the
one-device run of the same process (same seed, same data), and so are the
final parameters (largest difference relative to the largest entry of each
array; float32 rounding, ~1e-7, is expected).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import benchlib as bl
import numpy as np

LABEL = (
    "CORRECTNESS/OVERHEAD on FAKE CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count):\n"
    "all devices share this machine's CPU cores; this is NOT a speedup measurement."
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--devices", default="1,2,4", help="comma-separated device counts (default 1,2,4)"
    )
    p.add_argument("--config", choices=tuple(bl.CONFIGS), default="M")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per timed epoch (default 40, --quick 10)"
    )
    p.add_argument("--rounds", type=int, default=None, help="timed epochs (default 5, --quick 2)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 10 steps")
    bl.add_run_arguments(p)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------ worker (one device count)


def _time_fit(devices, config, x, y, rounds):
    import tinynet as tn

    layers = []
    for i, (fan_in, fan_out) in enumerate(config.layers):
        last = i == len(config.layers) - 1
        layers.append(tn.Dense(fan_in, fan_out, init="glorot_uniform" if last else "he_uniform"))
        layers.append(tn.Softmax() if last else tn.ReLU())
    model = tn.Sequential(layers, dtype="float32", seed=0, backend="jax")
    kwargs = dict(
        loss="sparse_categorical_crossentropy",
        batch_size=config.batch,
        verbose=0,
        shuffle=True,
        seed=0,
        devices=devices,
    )
    t = time.perf_counter()
    model.fit(x, y, optimizer=tn.optimizers.Adam(lr=1e-3), epochs=1, **kwargs)
    first = time.perf_counter() - t
    times, loss = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        history = model.fit(x, y, epochs=1, **kwargs)  # continues optimizer and epochs
        times.append(time.perf_counter() - t)
        loss = history.history["loss"][-1]
    params = [tn.to_numpy(v) for p in model.params for v in p.values()]
    return {"epoch_s": times, "first_epoch_s": first, "loss": loss}, params


def worker(args) -> None:
    from tinynet import backends

    backend = backends.load("jax")
    import jax

    config = bl.CONFIGS[args.config]
    steps = args.steps or (10 if args.quick else 40)
    rounds = args.rounds or (2 if args.quick else 5)
    x, y = bl.make_data(config, config.batch * steps)
    x, y = backend.asarray(x), backend.asarray(y)
    out = {"devices": args.worker, "jax_devices": len(jax.devices()), "steps": steps, "runs": {}}
    out["runs"]["1"], ref = _time_fit(None, config, x, y, rounds)
    if args.worker > 1:
        run, params = _time_fit(args.worker, config, x, y, rounds)
        # largest parameter difference, relative to the largest parameter of its array
        run["param_rel_diff"] = max(
            float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))
            for a, b in zip(params, ref, strict=True)
        )
        out["runs"][str(args.worker)] = run
    print(json.dumps(out))


# ------------------------------------------------------------------ driver


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    counts = [int(s) for s in args.devices.split(",") if s.strip()]
    if args.wait_quiet:
        bl.wait_for_quiet(args.wait_quiet)
    print(LABEL, flush=True)
    config = bl.CONFIGS[args.config]
    print(
        f"config {config.name}: {'-'.join(map(str, config.sizes))}, batch {config.batch}, "
        "Adam, float32, model.fit(devices=D) on the JAX backend\n",
        flush=True,
    )
    passthrough = ["--config", args.config]
    for name in ("steps", "rounds"):
        if getattr(args, name) is not None:
            passthrough += [f"--{name}", str(getattr(args, name))]
    if args.quick:
        passthrough.append("--quick")
    results = []
    for d in counts:
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={d}", JAX_PLATFORMS="cpu")
        proc = bl.run_python([os.path.abspath(__file__), "--worker", str(d), *passthrough], env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    rows = []
    for res in results:
        steps = res["steps"]
        one = res["runs"]["1"]
        one_step = statistics.median(one["epoch_s"]) / steps
        if res["devices"] == 1:
            rows.append(
                [
                    "1 (devices unset)",
                    bl.fmt_time(one_step),
                    "1.00x",
                    f"{one['first_epoch_s']:.1f} s",
                    f"{one['loss']:.6f}",
                    "-",
                    "-",
                ]
            )
            res["step_s"], res["ratio"] = one_step, 1.0
            continue
        run = res["runs"][str(res["devices"])]
        step = statistics.median(run["epoch_s"]) / steps
        rel = abs(run["loss"] - one["loss"]) / abs(one["loss"])
        res["step_s"], res["ratio"], res["loss_rel_diff"] = step, step / one_step, rel
        rows.append(
            [
                f"{res['devices']} fake CPU devices",
                bl.fmt_time(step),
                f"{step / one_step:.2f}x",
                f"{run['first_epoch_s']:.1f} s",
                f"{run['loss']:.6f}",
                f"{rel:.1e}",
                f"{run['param_rel_diff']:.1e}",
            ]
        )
    print(
        bl.table(
            [
                "devices",
                "step time",
                "vs 1 device (same process)",
                "1st epoch (compile)",
                "loss after run",
                "loss rel. diff",
                "params rel. diff",
            ],
            rows,
            align="lrrrrrr",
        )
    )
    print(
        "\n'vs 1 device' compares with the one-device run in the same subprocess; "
        "a ratio > 1 is the overhead of the split on shared cores, not a slowdown of "
        "real multi-device hardware."
    )
    if args.json:
        bl.write_json(
            args.json,
            {
                "label": LABEL,
                "config": config.name,
                "results": results,
                "machine": bl.machine_info(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
