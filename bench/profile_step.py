"""Where does tinynet-numpy spend its step time, next to the raw NumPy reference?

    python bench/profile_step.py                 # config S, SGD and Adam
    python bench/profile_step.py --config M --optimizers adam --json out.json

1. Piece timing: forward, loss head (softmax + cross-entropy and its
   gradient), backward and optimizer update, each timed call by call (median
   of ``--calls``) with tinynet's own functions and with the reference's.
   The reference works in place, so its head and update get fresh copies of
   their inputs, made outside the timed region.
   tinynet's pieces are its layers' ``forward(params, state, x, ops,
   training, key)`` and backward closures, the fused softmax/CE head and
   ``optimizer.update`` (pure on every backend); the whole step is the one
   ``train_step.py`` times.
2. ``cProfile`` of whole steps of both (``--profile``): the functions that
   take the time, by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

import benchlib as bl
import numpy as np


def time_calls(fn, make_args=None, calls: int = 2000) -> float:
    """Median seconds of ``fn(*make_args())``; the args are made untimed."""
    times = []
    for _ in range(calls):
        args = make_args() if make_args else ()
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tinynet_pieces(config, opt, x, y, params):
    from refs.tinynet_impl import build_model, make_step

    from tinynet import core

    model, loss, optimizer = build_model(config, "numpy", params, opt)
    ops = model.backend
    layers = model.layers
    head = core.fused_head(layers, loss)
    body = layers[:-1]
    p, st = model.params, model.state
    opt_state = optimizer.init(p)
    xp = ops.xp

    def forward():
        h, backs = x, []
        for i, layer in enumerate(body):
            h, _, back = layer.forward(p[i], st[i], h, ops, True, None)
            backs.append(back)
        return h, backs

    logits, backs = forward()
    _, dh = head.value_and_grad(xp, y, logits)

    def backward():
        grads, d = [{} for _ in layers], dh
        for i in range(len(body) - 1, -1, -1):
            d, grads[i] = backs[i](d, i > 0)
        return grads

    grads = backward()
    # as fit and bench/train_step.py run them (on NumPy jit is the identity
    # and the update is pure: new arrays every step)
    step = make_step(model, loss, optimizer)
    update = ops.jit(lambda p, s, g: optimizer.update(g, s, p))
    return {
        "forward": (forward, None),
        "head": (lambda: head.value_and_grad(xp, y, logits), None),
        "backward": (backward, None),
        "update": (lambda: update(p, opt_state, grads), None),
        "whole step": (lambda: step(p, st, opt_state, x, y, None), None),
    }


def raw_pieces(config, opt, x, y, params):
    from refs.numpy_raw import NumpyMLP

    mlp = NumpyMLP(params, opt)
    acts = mlp.forward(x)
    logits = acts.pop()
    _, dz = mlp.head(logits.copy(), y)
    gW, gb = mlp.backward(acts, dz)
    step_mlp = NumpyMLP(params, opt)
    return {
        "forward": (lambda: mlp.forward(x), None),
        "head": (mlp.head, lambda: (logits.copy(), y)),
        "backward": (lambda: mlp.backward(acts, dz), None),
        # fresh gradients each call (the SGD update scales them in place);
        # the parameters drift a little, which does not change the cost
        "update": (mlp.update, lambda: ([g.copy() for g in gW], [g.copy() for g in gb])),
        "whole step": (lambda: step_mlp.step(x, y), None),
    }


def profile_text(fn, steps: int, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue().replace(bl.REPO_DIR + os.sep, "")
    site = os.path.dirname(os.path.dirname(np.__file__))
    return text.replace(site + os.sep, "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=tuple(bl.CONFIGS), default="S")
    p.add_argument("--optimizers", default="sgd,adam")
    p.add_argument("--calls", type=int, default=None, help="timed calls per piece")
    p.add_argument("--profile", action="store_true", help="also print cProfile of whole steps")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for NumPy's BLAS (and XLA if 1); default: the libraries' own",
    )
    bl.add_run_arguments(p)
    args = p.parse_args(argv)
    _limits = bl.limit_threads(args.threads)  # noqa: F841 (kept alive)
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    config = bl.CONFIGS[args.config]
    calls = args.calls or {"S": 3000, "M": 500, "L": 10}[config.name]
    x, y = bl.make_data(config, config.batch)
    params = bl.init_params(config)
    results = []
    for opt_name in bl.parse_list(args.optimizers, list(bl.OPTIMIZERS), "optimizer"):
        opt = bl.OPTIMIZERS[opt_name]
        impls = {
            "tinynet-numpy": tinynet_pieces(config, opt, x, y, params),
            "numpy-raw": raw_pieces(config, opt, x, y, params),
        }
        for pieces in impls.values():  # warm up
            for fn, make_args in pieces.values():
                time_calls(fn, make_args, max(calls // 10, 3))
        med = {name: {} for name in impls}
        for piece in impls["numpy-raw"]:  # alternate the two, piece by piece, 3 times
            for _ in range(3):
                for name, pieces in impls.items():
                    fn, make_args = pieces[piece]
                    med[name].setdefault(piece, []).append(time_calls(fn, make_args, calls // 3))
        rows = []
        for piece in impls["numpy-raw"]:
            t = statistics.median(med["tinynet-numpy"][piece])
            r = statistics.median(med["numpy-raw"][piece])
            rows.append(
                [piece, bl.fmt_time(t), bl.fmt_time(r), f"{(t - r) * 1e6:+.1f} µs", f"{t / r:.2f}x"]
            )
            results.append(
                {
                    "config": config.name,
                    "optimizer": opt_name,
                    "piece": piece,
                    "tinynet_numpy_s": t,
                    "numpy_raw_s": r,
                }
            )
        print(f"\n== {config.name} {opt_name}: median per call ==")
        print(bl.table(["piece", "tinynet-numpy", "numpy-raw", "difference", "ratio"], rows))
        if args.profile:
            for name, pieces in impls.items():
                fn, _ = pieces["whole step"]
                n = calls
                print(f"\n-- cProfile {name} {opt_name}: {n} steps --")
                print(profile_text(fn, n, 15))
    if args.json:
        bl.write_json(
            args.json,
            {"benchmark": "profile_step", "results": results, "machine": bl.machine_info()},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
