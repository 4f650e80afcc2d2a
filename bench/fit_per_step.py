"""``fit`` per-step time on the small model S (2-64-3, batch 300, Adam) per
backend, next to the bare compiled step: what a user of ``fit`` pays per step
on a model where dispatch and per-epoch work (the shuffle) dominate.  With
``--model cnn``, the same for ``cnn.py``'s reference CNN (batch 128, random
28x28x1 images): there the question is whether ``fit``'s loop keeps the
step's speed (XLA's CPU convolutions inside a compiled loop body do not).

    python bench/fit_per_step.py [--samples 30000] [--epochs 10] [--rounds 5] [--json PATH]
    python bench/fit_per_step.py --model cnn --samples 1280 --epochs 1 --backends numpy,jax,torch

Timers, interleaved round by round (order shuffled each round, OpenBLAS's
threads ended before each block, as in ``train_step.py``):

* ``fit spe=...``: one ``model.fit(x, y, epochs=--epochs, batch_size=300,
  shuffle=True, verbose=0)`` call over ``--samples`` host NumPy samples,
  ``steps_per_execution`` "auto" (the default) and, on JAX, 1 and 10; the
  call's time divided by its steps.  Before every timed call the model goes
  back to the initial parameters, a fresh Adam state and epoch 0.
* ``bare step``: the jitted ``core.make_train_step`` (params and optimizer
  state donated) called as many times on one batch already on the backend.

Reported: medians over the rounds and ``fit / bare``.  The project's target
for fit per step on S (<= 1/3 of Keras's fit, <= 1/5 of PyTorch eager) is
checked by ``train_step.py`` (``tinynet-jax-fit``).
"""

from __future__ import annotations

import argparse
import sys
import time

import benchlib as bl
import numpy as np

CONFIG = bl.CONFIGS["S"]


class Setup:
    """One backend's model, data and Adam; initial parameters kept on the host."""

    def __init__(self, backend_name: str, samples: int, model: str = "S"):
        from refs.tinynet_impl import make_step

        spec = bl.OPTIMIZERS["adam"]
        if model == "cnn":
            from refs import cnn_common, cnn_tinynet

            self.x, self.y = cnn_common.make_data(samples)
            self.batch = cnn_common.BATCH
            self.params_np = cnn_common.init_params()
            self.model, self.loss, self.optimizer = cnn_tinynet.build_training(backend_name, spec)
            self._fresh = lambda: cnn_tinynet.fresh_params(self.model, self.params_np)
            self.model.params = self._fresh()
        else:
            from refs.tinynet_impl import build_model, fresh_params

            rng = np.random.default_rng(0)
            self.x = rng.standard_normal((samples, 2)).astype(np.float32)
            self.y = rng.integers(0, 3, samples)
            self.batch = CONFIG.batch
            self.params_np = bl.init_params(CONFIG)
            self.model, self.loss, self.optimizer = build_model(
                CONFIG, backend_name, self.params_np, spec
            )
            self._fresh = lambda: fresh_params(self.model, self.params_np)
        self.backend = self.model.backend
        self.steps_per_epoch = -(-samples // self.batch)
        self.step = make_step(self.model, self.loss, self.optimizer)
        self.xb = self.backend.asarray(self.x[: self.batch])
        self.yb = self.backend.asarray(self.y[: self.batch])

    def fresh(self):
        return self._fresh()


class FitRunner:
    """``run(n)``: one fit call of ``n // steps_per_epoch`` epochs."""

    def __init__(self, setup: Setup, spe):
        self.s, self.spe = setup, spe

    def reset(self) -> None:
        model = self.s.model
        model.params = self.s.fresh()
        model.opt_state = None  # fit makes a fresh state for the same optimizer
        model.epoch = 0  # the same shuffle orders every time

    def run(self, n: int) -> float:
        s = self.s
        epochs = max(1, n // s.steps_per_epoch)
        history = s.model.fit(
            s.x, s.y, loss=s.loss, optimizer=s.optimizer, epochs=epochs,
            batch_size=s.batch, shuffle=True, verbose=0, steps_per_execution=self.spe,
        )  # fmt: skip
        s.backend.synchronize()
        return history.history["loss"][-1]


class StepRunner:
    """``run(n)``: ``n`` calls of the bare jitted step on one batch."""

    def __init__(self, setup: Setup):
        self.s = setup

    def reset(self) -> None:
        s = self.s
        self.params, self.state = s.fresh(), s.model.state
        self.opt_state = s.optimizer.init(self.params)

    def run(self, n: int) -> float:
        s = self.s
        params, state, opt_state, step = self.params, self.state, self.opt_state, s.step
        value = None
        for _ in range(n):
            params, state, opt_state, value = step(params, state, opt_state, s.xb, s.yb, None)
        self.params, self.state, self.opt_state = params, state, opt_state
        s.backend.synchronize()
        return float(s.backend.to_numpy(value))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=30000)
    p.add_argument("--epochs", type=int, default=10, help="epochs per timed fit call")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--backends", default="numpy,jax")
    p.add_argument("--model", choices=("S", "cnn"), default="S")
    p.add_argument("--threads", type=int, default=None, help="NumPy BLAS threads (XLA too if 1)")
    bl.add_run_arguments(p)
    args = p.parse_args(argv)
    _limits = bl.setup_environment("cpu", args.threads)  # noqa: F841 (kept alive)
    from tinynet import backends

    entries = []
    for name in bl.parse_list(args.backends, list(backends.BACKEND_NAMES), "backend"):
        backend, why = backends.probe(name)
        if backend is None:
            print(f"skipping backend {name}: {why}", file=sys.stderr)
            continue
        setup = Setup(name, args.samples, args.model)
        steps = args.epochs * setup.steps_per_epoch
        spes = ("auto", 1, 10) if backend.compiles else ("auto",)
        for spe in spes:
            entries.append(
                bl.Entry(args.model, name, f"fit spe={spe}", FitRunner(setup, spe), steps)
            )
        entries.append(bl.Entry(args.model, name, "bare step", StepRunner(setup), steps))
    for e in entries:  # warm-up: one epoch (compiles), untimed
        e.runner.reset()
        t0 = time.perf_counter()
        e.runner.run(e.runner.s.steps_per_epoch)
        e.compile_s = time.perf_counter() - t0
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    monitor = bl.LoadMonitor().start()
    bl.interleave(
        entries,
        args.rounds,
        lambda r: print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True),
        park=args.park,
        settle=args.settle,
        busy_retries=args.retries,
    )
    others = monitor.others_fraction()

    rows, results = [], []
    for e in entries:
        bare = next(b for b in entries if b.optimizer == e.optimizer and b.impl == "bare step")
        ratio = e.median / bare.median
        rows.append(
            [e.optimizer, e.impl, bl.fmt_time(e.median), f"±{50 * e.spread:.0f}%", f"{ratio:.2f}"]
        )
        results.append(
            {
                "backend": e.optimizer,
                "timer": e.impl,
                "per_step_s": e.median,
                "spread": e.spread,
                "ratio_to_bare_step": ratio,
                "block_times_s": e.times,
                "warm_up_s": e.compile_s,
            }
        )
    what = "the reference CNN, batch 128" if args.model == "cnn" else "S 2-64-3, batch 300"
    print(
        f"== fit per step on {what}, Adam: {args.samples} samples, "
        f"{args.epochs} epochs per timed call, median of {args.rounds} interleaved rounds =="
    )
    print(bl.table(["backend", "timer", "per step", "spread", "x bare step"], rows, "llrrr"))
    print(bl.load_line(entries, others))
    if args.json:
        bl.write_json(
            args.json,
            {
                "benchmark": "fit_per_step",
                "settings": {k: v for k, v in vars(args).items() if k != "json"},
                "results": results,
                "others_cpu_fraction": others,
                "machine": bl.machine_info(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
