"""Time ONE training step of the reference CNN in every implementation.

    python bench/cnn.py                          # everything installed (~3-5 min)
    python bench/cnn.py --quick                  # smoke run: 3 rounds of 2-step blocks
    python bench/cnn.py --impls numpy-raw,torch-eager --rounds 5 --json out.json
    python bench/cnn.py --list

The CNN (``refs/cnn_common.py``): Conv2D(32, 3, relu) - MaxPool2 -
Conv2D(64, 3, relu) - MaxPool2 - Flatten - Dense(128, relu) - Dense(10)
logits, sparse categorical cross-entropy from the logits, Adam (lr 1e-3,
epsilon 1e-7), batch 128, float32, 28x28x1 channels-last inputs (random,
fixed seed).  Every implementation starts from the same parameters
(converted to its own layout) and trains on the same batch.

Before timing, the loss check: every implementation's losses of its first
``--check-steps`` + 1 steps (the last one is the loss after
``--check-steps`` updates) are compared with the hand-written NumPy CNN run
in float64 from the same start; a relative difference above ``CHECK_RTOL``
prints FAIL.

Method (as ``train_step.py``): every implementation runs its first steps
(the check; compilation included) and two untimed blocks, then ``--rounds``
rounds; in each round every implementation times one block of ``--block``
steps, in an order shuffled each round (seeded), OpenBLAS's threads ended
before each block, every implementation but Keras reset to the initial
parameters and a fresh Adam state before each block.  Reported: the median
of the per-block step times, ratios of medians and, beside each target,
the paired ratio (median over rounds of the within-round ratio).  Targets
(issue 18): tinynet-jax <= 0.5x keras-jax, tinynet-numpy <= 0.8x
numpy-raw-own (the hand-written step as a user runs it, in a process of its
own; the ratio to numpy-raw, which shares tinynet's allocator setting, is
printed beside it), the fastest tinynet CPU backend <= 1.0x torch-eager.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import benchlib as bl
import numpy as np

OPT = bl.OPTIMIZERS["adam"]
# float32 losses after a few Adam steps vs the float64 reference: the test
# suite's float32 rtol (tests/helpers.py).  Adam's two epsilon placements
# differ by more than this, so each implementation is compared with the
# reference of its own form.
CHECK_RTOL = 2e-5


@dataclass(frozen=True)
class Impl:
    name: str
    module: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    adam: str = "keras"  # where Adam's epsilon sits: "keras" sqrt(v) + eps, "hat" sqrt(v_hat) + eps
    own_process: bool = False  # run in a spawned process (benchlib.ChildRunner)


IMPLS: dict[str, Impl] = {
    i.name: i
    for i in (
        Impl("tinynet-numpy", "cnn_tinynet", "tinynet, NumPy backend", {"backend_name": "numpy"}),
        Impl("tinynet-jax", "cnn_tinynet", "tinynet, JAX backend (jitted step)",
             {"backend_name": "jax"}),
        Impl("tinynet-torch", "cnn_tinynet", "tinynet, PyTorch backend",
             {"backend_name": "torch"}),
        Impl("numpy-raw", "cnn_numpy", "hand-written NumPy: im2col, BLAS, col2im, pool masks"),
        Impl("numpy-raw-own", "cnn_numpy", "numpy-raw as a user runs it: its own process, "
             "glibc's default allocator", own_process=True),
        Impl("jax-lax-jit", "cnn_jax", "jax.jit: lax.conv + lax.reduce_window pool + optax",
             {"pool": "reduce_window"}, adam="hat"),
        Impl("jax-lax-jit-rpool", "cnn_jax", "jax.jit: lax.conv + reshape-max pool + optax",
             {"pool": "reshape"}, adam="hat"),
        Impl("torch-eager", "cnn_torch", "PyTorch eager, torch.nn + torch.optim.Adam, 2 threads",
             adam="hat"),
        Impl("keras-jax", "cnn_keras", "Keras 3 on JAX, train_on_batch (compiled step)"),
    )
}  # fmt: skip
TINYNET_CPU = ("tinynet-numpy", "tinynet-jax", "tinynet-torch")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def module(impl: Impl):
    return importlib.import_module(f"refs.{impl.module}")


def probe(impl: Impl) -> tuple[bool, str]:
    """Can ``impl`` run here?  Never raises."""
    try:
        mod = module(impl)
        if impl.module == "cnn_tinynet":
            return mod.available(impl.kwargs["backend_name"])
        return mod.available()
    except Exception as err:  # an optional package that fails to import
        return False, f"{type(err).__name__}: {err}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--impls", default=None, help="comma-separated implementations (default all; see --list)"
    )
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, --quick 3)")
    p.add_argument(
        "--block", type=int, default=None, help="steps per timed block (default 5, --quick 2)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds of 2-step blocks")
    p.add_argument(
        "--check-steps",
        type=int,
        default=3,
        help="updates before the last loss of the check (default 3)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for NumPy's BLAS and torch (and XLA if 1); default: NumPy's and "
        "XLA's own, torch 2",
    )
    bl.add_run_arguments(p)
    p.add_argument("--list", action="store_true", help="list implementations and exit")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.block = args.block or (2 if args.quick else 5)
    return args


# ------------------------------------------------------------------ the loss check


def check_losses(entries, losses, reference) -> list[tuple[bool, str]]:
    """One line per implementation: its losses vs the float64 reference's
    with the same Adam form (``reference[form]``)."""
    out = []
    for e in entries:
        got, form = losses[e.impl], IMPLS[e.impl].adam
        rel = max(abs(a - b) / abs(b) for a, b in zip(got, reference[form], strict=True))
        out.append(
            (
                rel <= CHECK_RTOL,
                f"{e.impl}: losses {' '.join(f'{v:.6f}' for v in got)}; max rel diff "
                f"{rel:.1e} (<= {CHECK_RTOL:.0e}) vs float64 {form}-form Adam",
            )
        )
    return out


# ------------------------------------------------------------------ targets


def targets(by_name) -> list[tuple[bool | None, str]]:
    """Issue 18's targets as ``(ok or None when missing, text)``."""

    def line(a, b, limit, label=None):
        ea, eb = by_name.get(a), by_name.get(b)
        label = label or a
        if ea is None or eb is None:
            missing = " and ".join(n for n, e in ((a, ea), (b, eb)) if e is None)
            return None, f"{label} / {b} (target <= {limit:.2f}): n/a, {missing} not run"
        v = ea.median / eb.median
        pairs = zip(ea.times, eb.times, strict=True)
        paired = statistics.median(x / y for x, y in pairs)
        return (
            v <= limit,
            f"{label} / {b} = {v:.3f} (target <= {limit:.2f}); paired per round {paired:.3f}",
        )

    out = [
        line("tinynet-jax", "keras-jax", 0.5),
        line("tinynet-numpy", "numpy-raw-own", 0.8),
    ]
    tinynet = [by_name[n] for n in TINYNET_CPU if n in by_name]
    if tinynet:
        best = min(tinynet, key=lambda e: e.median)
        label = f"fastest tinynet CPU backend ({best.impl})"
        out.append(line(best.impl, "torch-eager", 1.0, label))
    else:
        text = "fastest tinynet CPU backend / torch-eager (target <= 1.00): n/a, no tinynet ran"
        out.append((None, text))
    return out


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    args = parse_args(argv)
    _limits = bl.setup_environment("cpu", args.threads)  # noqa: F841 (kept alive)
    from refs import cnn_common
    from refs.cnn_numpy import Runner as NumpyRunner

    from tinynet import backends

    if args.list:
        for impl in IMPLS.values():
            print(f"{impl.name:18s} {impl.description}")
        return 0
    names = bl.parse_list(args.impls, list(IMPLS), "implementation") if args.impls else list(IMPLS)
    # The NumPy backend's allocator setting (keep freed memory; see
    # backends/_numpy.py) holds for the whole process: apply it before
    # anything runs, so numpy-raw gets it whether tinynet-numpy runs or not.
    backends.probe("numpy")
    x, y = cnn_common.make_data()
    params = cnn_common.init_params()
    flops = cnn_common.flops()

    skipped, entries, losses = {}, [], {}
    for name in names:
        impl = IMPLS[name]
        ok, why = probe(impl)
        if not ok:
            skipped[name] = why
            log(f"skipping {name}: {why}")
            continue
        try:
            if impl.own_process:
                runner = bl.ChildRunner(
                    f"refs.{impl.module}", x, y, params, OPT, threads=args.threads, **impl.kwargs
                )
            else:
                runner = module(impl).Runner(x, y, params, OPT, **impl.kwargs)
        except Exception as err:  # keep going without this one
            skipped[name] = f"build failed: {type(err).__name__}: {err}"
            log(f"skipping {name}: build failed: {err}")
            continue
        entries.append(bl.Entry("cnn", "adam", name, runner, args.block))
    log("implementations: " + ", ".join(e.impl for e in entries))

    # the loss check: the first steps of each, one at a time from the common start
    ref_losses = {}
    for form in ("keras", "hat"):
        reference = NumpyRunner(x, y, params, OPT, dtype=np.float64, adam_form=form)
        ref_losses[form] = [reference.run(1) for _ in range(args.check_steps + 1)]
    for e in entries:
        log(f"  first steps + warm-up {e.impl}")
        t0 = time.perf_counter()
        first = e.runner.run(1)
        e.compile_s = time.perf_counter() - t0
        e.first_loss = first
        losses[e.impl] = [first] + [e.runner.run(1) for _ in range(args.check_steps)]
        e.runner.run(2 * args.block)  # warm heap and caches
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    monitor = bl.LoadMonitor().start()
    bl.interleave(
        entries,
        args.rounds,
        lambda r: log(f"  round {r + 1}/{args.rounds} ({time.perf_counter() - t0:.1f} s)"),
        park=args.park,
        settle=args.settle,
        busy_retries=args.retries,
    )
    others = monitor.others_fraction()
    for e in entries:
        getattr(e.runner, "close", lambda: None)()
        e.runner = None

    info = bl.machine_info()
    by_name = {e.impl: e for e in entries}
    print(
        f"machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs; numpy {info['numpy']}, "
        f"jax {info['jax']}, torch {info['torch']}, keras {info['keras']}"
    )
    blas = [
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
        f"{b.get('num_threads')} threads)"
        for b in info["blas"]
        if b.get("user_api") == "blas"
    ]
    print(
        f"BLAS: {'; '.join(blas) or 'unknown'}; load average before/after: "
        f"{load_before[0]:.2f}/{os.getloadavg()[0]:.2f}"
    )

    print(
        f"\n== loss check: losses of the first {args.check_steps + 1} steps (the last after "
        f"{args.check_steps} Adam updates) vs the hand-written NumPy CNN in float64 =="
    )
    for form, values in ref_losses.items():
        print(f"float64 reference, {form}-form Adam: " + " ".join(f"{v:.6f}" for v in values))
    check_list = check_losses(entries, losses, ref_losses)
    for ok, text in check_list:
        print(bl.check_line(ok, text))

    print(
        f"\n== CNN step (batch {cnn_common.BATCH}, Adam, float32; {flops / 1e9:.2f} GFLOP "
        f"per step): median over {args.rounds} interleaved blocks of {args.block} steps =="
    )
    refs_for_ratio = [
        n for n in ("numpy-raw", "numpy-raw-own", "keras-jax", "torch-eager") if n in by_name
    ]
    rows, results = [], []
    for e in entries:
        med = e.median
        ratios = {r: med / by_name[r].median for r in refs_for_ratio}
        rows.append(
            [
                e.impl,
                bl.fmt_time(med),
                f"±{50 * e.spread:.0f}%",
                f"{flops / med / 1e9:.0f}",
                *(f"{ratios[r]:.2f}x" for r in refs_for_ratio),
                f"{e.compile_s:.2f} s",
                f"{statistics.median(e.faults):.0f}",
            ]
        )
        results.append(
            {
                "impl": e.impl,
                "median_s": med,
                "spread": e.spread,
                "gflops": flops / med / 1e9,
                "ratios": ratios,
                "block_times_s": e.times,
                "first_call_s": e.compile_s,
                "losses": losses[e.impl],
                "minor_faults_per_step": statistics.median(e.faults),
                "others_cpu_fraction_per_block": e.others,
                "blocks_retried_busy": e.retried,
            }
        )
    print(
        bl.table(
            [
                "impl",
                "median",
                "spread",
                "GFLOP/s",
                *(f"x {r}" for r in refs_for_ratio),
                "first step",
                "faults/step",
            ],
            rows,
            align="lrrr" + "r" * len(refs_for_ratio) + "rr",
        )
    )
    print(
        "spread = ±half of (max-min)/median over blocks; GFLOP/s counts the convolutions' and "
        "Dense layers' multiply-adds (no input gradient for the first layer); first step = "
        "the first call, compilation included"
    )
    print(bl.load_line(entries, others))

    print("\n== targets ==")
    target_list = targets(by_name)
    for ok, text in target_list:
        print("SKIP  " + text if ok is None else bl.check_line(ok, text))
    if "tinynet-numpy" in by_name and "numpy-raw" in by_name:
        ratio = by_name["tinynet-numpy"].median / by_name["numpy-raw"].median
        print(
            f"like for like: tinynet-numpy / numpy-raw = {ratio:.3f} (numpy-raw in this "
            "process, with tinynet's allocator setting; not issue 18's reference)"
        )
    if skipped:
        print("\nnot run: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if args.json:
        bl.write_json(
            args.json,
            {
                "benchmark": "cnn",
                "settings": {k: v for k, v in vars(args).items() if k != "json"},
                "flops_per_step": flops,
                "reference_losses_float64": ref_losses,
                "results": results,
                "others_cpu_fraction": others,
                "loss_checks": [{"pass": ok, "text": t} for ok, t in check_list],
                "checks": [{"pass": ok, "text": t} for ok, t in target_list],
                "skipped": skipped,
                "machine": info,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
