"""``model.fit`` overhead and peak memory.

    python bench/fit_epoch.py                 # numpy and jax, then peak memory
    python bench/fit_epoch.py --quick --json out.json

Part 1, fit overhead (config M: 784-256-128-10, batch 128, float32): one
epoch of ``model.fit`` over ``--batches`` batches of MNIST-shaped synthetic
data (no validation, ``verbose=0``) against the same number of calls of the
bare jitted training step on pre-sliced batches, per backend.  Variants of
fit: data already on the backend with ``shuffle=True`` and fit's defaults
otherwise (the headline ratio; on JAX the default
``steps_per_execution="auto"`` runs the epoch in one dispatch),
``shuffle=False``, host NumPy data, one call of ``fit(epochs=3)`` timed per
epoch (its per-call work shared by three epochs), and on JAX
``steps_per_execution`` 1 (one dispatch per step, like the bare steps, each
gathering its rows and counting its accuracy in the program) and 8.  All
timers are interleaved round by round, OpenBLAS's threads ended before each
(``--no-park``).  The ratios are shown as ``info``: the project's targets for
fit are the per-step time on S (``train_step.py``) and the real-sized epoch
(``epoch.py``).

Part 2, peak memory: ``--memory-steps`` training steps of M on the NumPy
backend, tinynet versus the raw NumPy reference, each in a fresh subprocess;
the peak resident set of each (shown as ``info``: the memory the NumPy
backend's allocator setting costs), plus that of a process that only
imported its libraries and made the data. The peak is VmHWM from
/proc/self/status: ``ru_maxrss`` survives ``execve`` on Linux, so a worker
started by this (large) process would report the parent's peak; it is
recorded too, from a worker started by a small launcher process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import benchlib as bl

CONFIG = bl.CONFIGS["M"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated tinynet backends (default: numpy,jax; +strict with "
        "--strict; cupy with --device gpu)",
    )
    p.add_argument("--optimizer", choices=tuple(bl.OPTIMIZERS), default="adam")
    p.add_argument("--batches", type=int, default=60, help="batches per epoch (default 60)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, --quick 3)")
    p.add_argument("--memory-steps", type=int, default=200)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-fit", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--quick", action="store_true", help="3 rounds, 20 batches, 50 memory steps")
    bl.add_run_arguments(p)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for NumPy's BLAS (and XLA if 1); default: the libraries' own",
    )
    p.add_argument("--rss-worker", metavar="WHAT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = args.rounds or 3
        args.batches = min(args.batches, 20)
        args.memory_steps = min(args.memory_steps, 50)
    args.rounds = args.rounds or 7
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ part 1: fit overhead


class EpochTimers:
    """The timed variants for one backend.  Before every timed epoch the
    model goes back to the initial parameters, a fresh optimizer state and
    epoch 0, so every epoch times the same 60 steps (a long run drifts: see
    ``benchlib.time_block``)."""

    def __init__(self, backend_name: str, opt, n_batches: int):
        from refs.tinynet_impl import build_model, make_step

        bs = CONFIG.batch
        x_np, y_np = bl.make_data(CONFIG, n_batches * bs, seed=1)
        self.params_np = bl.init_params(CONFIG)
        self.model, self.loss, self.optimizer = build_model(
            CONFIG, backend_name, self.params_np, opt
        )
        backend = self.backend = self.model.backend
        self.x_np, self.y_np = x_np, y_np
        self.x, self.y = backend.asarray(x_np), backend.asarray(y_np)
        self.batches = [
            (self.x[i * bs : (i + 1) * bs, ...], self.y[i * bs : (i + 1) * bs, ...])
            for i in range(n_batches)
        ]
        self.step = make_step(self.model, self.loss, self.optimizer)

    def fresh_params(self) -> list[dict]:
        from refs.tinynet_impl import fresh_params

        return fresh_params(self.model, self.params_np)

    def reset_steps(self) -> None:
        self.params = self.fresh_params()
        self.state = self.model.state
        self.opt_state = self.optimizer.init(self.params)

    def reset_fit(self) -> None:
        self.model.params = self.fresh_params()
        self.model.opt_state = None  # fit starts a fresh state for the same optimizer
        self.model.epoch = 0  # same shuffle order every time

    def variants(self) -> dict[str, Repeat]:
        fit = self.run_fit
        out = {
            "steps": Repeat(self.run_steps, self.reset_steps),
            "fit": Repeat(lambda: fit(self.x, self.y, shuffle=True), self.reset_fit),
            "fit shuffle=False": Repeat(lambda: fit(self.x, self.y, shuffle=False), self.reset_fit),
        }
        if self.backend.name != "numpy":  # on NumPy host data *is* backend data
            out["fit host data"] = Repeat(
                lambda: fit(self.x_np, self.y_np, shuffle=True), self.reset_fit
            )
        # one call of fit(epochs=3), timed per epoch: the per-call work (data
        # check, fresh optimizer state) shared by three epochs, as in a real run
        out["fit epochs=3"] = Repeat(
            lambda n: fit(self.x, self.y, shuffle=True, epochs=n), self.reset_fit, block=3
        )
        if self.backend.compiles:  # the default "auto" runs the whole epoch in one dispatch
            for spe in (1, 8):
                out[f"fit spe={spe}"] = Repeat(
                    lambda spe=spe: fit(self.x, self.y, shuffle=True, spe=spe), self.reset_fit
                )
        return out

    def run_steps(self) -> None:
        params, state, opt_state, step = self.params, self.state, self.opt_state, self.step
        loss = None
        for xb, yb in self.batches:
            params, state, opt_state, loss = step(params, state, opt_state, xb, yb, None)
        self.params, self.state, self.opt_state = params, state, opt_state
        self.backend.synchronize()
        float(self.backend.to_numpy(loss))

    def run_fit(self, x, y, shuffle: bool, spe: int | str = "auto", epochs: int = 1) -> None:
        self.model.fit(
            x,
            y,
            loss=self.loss,
            optimizer=self.optimizer,
            epochs=epochs,
            batch_size=CONFIG.batch,
            verbose=0,
            shuffle=shuffle,
            steps_per_execution=spe,
        )
        self.backend.synchronize()


class Repeat:
    """The timer interface: ``run(n)`` runs n epochs; ``reset()`` (called
    before every timed block) restores the start state.  ``block`` epochs
    make one timed block; with ``block`` > 1, ``fn(n)`` runs the n epochs
    itself (one fit call), else ``fn()`` runs one and is called n times."""

    def __init__(self, fn, reset, block: int = 1):
        self.fn, self.reset, self.block = fn, reset, block
        reset()

    def run(self, n: int) -> None:
        if self.block > 1:
            self.fn(n)
            return
        for _ in range(n):
            self.fn()


def fit_overhead(args) -> tuple[dict, list[tuple[bool | None, str]]]:
    from tinynet import backends

    names = (
        bl.parse_list(args.backends, list(backends.BACKEND_NAMES), "backend")
        if args.backends
        else ["numpy", "jax"]
        + (["strict"] if args.strict else [])
        + (["cupy"] if args.device == "gpu" else [])
    )
    opt = bl.OPTIMIZERS[args.optimizer]
    entries = []
    for name in names:
        backend, why = backends.probe(name)
        if backend is None:
            log(f"skipping backend {name}: {why}")
            continue
        timers = EpochTimers(name, opt, args.batches)
        for label, runner in timers.variants().items():
            # Entry fields: the backend goes in "optimizer", the timer in "impl"
            entries.append(bl.Entry("M", name, label, runner, block=runner.block))
    for e in entries:
        log(f"  warm-up {e.optimizer}: {e.impl}")
        bl.warm_up(e, 1)
    monitor = bl.LoadMonitor().start()
    bl.interleave(
        entries,
        args.rounds,
        lambda r: log(f"  round {r + 1}/{args.rounds}"),
        park=args.park,
        settle=args.settle,
        busy_retries=args.retries,
    )
    others = monitor.others_fraction()

    results, check_list, rows = [], [], []
    for e in entries:
        steps = next(s for s in entries if s.optimizer == e.optimizer and s.impl == "steps")
        ratio = e.median / steps.median
        results.append(
            {
                "backend": e.optimizer,
                "variant": e.impl,
                "epoch_median_s": e.median,
                "per_step_s": e.median / args.batches,
                "spread": e.spread,
                "ratio_to_steps": ratio,
                "epoch_times_s": e.times,
                "first_call_overhead_s": e.compile_s,
            }
        )
        rows.append(
            [
                e.optimizer,
                e.impl,
                bl.fmt_time(e.median),
                f"±{50 * e.spread:.0f}%",
                bl.fmt_time(e.median / args.batches),
                f"{ratio:.3f}",
            ]
        )
        if e.impl.startswith("fit"):  # shown, not a target
            check_list.append(
                (None, f"{e.optimizer}: {e.impl} / sum of step times = {ratio:.3f} (no target)")
            )
    print(
        f"\n== fit overhead: M 784-256-128-10, {args.batches} batches x {CONFIG.batch}, "
        f"{args.optimizer}, median of {args.rounds} interleaved epochs =="
    )
    print(
        bl.table(
            ["backend", "timer", "epoch", "spread", "per step", "x steps"], rows, align="llrrrr"
        )
    )
    print("steps = the bare jitted step called once per pre-sliced batch (no shuffle, no metric)")
    print(bl.load_line(entries, others))
    return {"timers": results, "others_cpu_fraction": others}, check_list


# ------------------------------------------------------------------ part 2: peak memory


def vm_hwm_kib() -> int:
    """This process's peak resident set size (VmHWM), KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# A tiny launcher: started by this big process, it starts the worker itself,
# so the worker's ru_maxrss starts from the launcher's few MiB, not from ours.
_LAUNCHER = "import subprocess, sys; r = subprocess.run(sys.argv[1:]); sys.exit(r.returncode)"


def rss_worker(what: str, opt_name: str, steps: int) -> None:
    """Runs in a fresh process; prints one JSON line."""
    t_start = time.perf_counter()
    opt = bl.OPTIMIZERS[opt_name]
    x, y = bl.make_data(CONFIG, CONFIG.batch)
    params = bl.init_params(CONFIG)
    if what == "numpy-raw":
        from refs.numpy_raw import Runner

        runner = Runner(CONFIG, opt, x, y, params)
    elif what == "tinynet-numpy":
        from refs.tinynet_impl import Runner

        runner = Runner(CONFIG, opt, x, y, params, backend_name="numpy")
    elif what == "import-tinynet":
        import tinynet  # noqa: F401
        from tinynet import backends

        backends.load("numpy")
        runner = None
    elif what == "import-numpy":
        runner = None
    else:
        raise SystemExit(f"unknown worker {what!r}")
    setup_rss = vm_hwm_kib()
    f0 = bl.minor_faults()
    times = []
    if runner is not None:
        for _ in range(steps):
            t0 = time.perf_counter()
            runner.run(1)
            times.append(time.perf_counter() - t0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "what": what,
                "optimizer": opt_name,
                "steps": steps if runner else 0,
                "peak_rss_kib": vm_hwm_kib(),
                "peak_rss_after_setup_kib": setup_rss,
                "ru_maxrss_kib": usage.ru_maxrss,
                "minor_faults_per_step": (usage.ru_minflt - f0) / steps if runner else None,
                "median_step_s": statistics.median(times) if times else None,
                "median_step_after_10_s": statistics.median(times[10:])
                if len(times) > 10
                else None,
                "wall_s": time.perf_counter() - t_start,
                "malloc_tune": os.environ.get("TINYNET_MALLOC_TUNE", "1"),
            }
        )
    )


def peak_memory(args) -> tuple[list[dict], list[tuple[bool | None, str]]]:
    results, check_list, rows = [], [], []
    script = os.path.abspath(__file__)
    whats = ["import-numpy", "numpy-raw", "import-tinynet", "tinynet-numpy"]
    for opt_name in ("sgd", "adam"):
        got = {}
        for what in whats:
            if what.startswith("import") and opt_name != "sgd":
                got[what] = next(r for r in results if r["what"] == what)
                continue
            cmd = ["-c", _LAUNCHER, sys.executable, script, "--rss-worker", what]
            cmd += ["--optimizer", opt_name, "--memory-steps", str(args.memory_steps)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = bl.run_python(cmd)
            if proc.returncode != 0:
                log(f"worker {what} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            got[what] = r
            results.append(r)
        for what in whats:
            r = got.get(what)
            if r is None or what.startswith("import"):
                continue
            base = got.get("import-tinynet" if what.startswith("tinynet") else "import-numpy")
            rows.append(
                [
                    what,
                    opt_name,
                    f"{r['peak_rss_kib'] / 1024:.1f}",
                    f"{r['ru_maxrss_kib'] / 1024:.1f}",
                    f"{base['peak_rss_kib'] / 1024:.1f}" if base else None,
                    f"{(r['peak_rss_kib'] - base['peak_rss_kib']) / 1024:.1f}" if base else None,
                    bl.fmt_time(r["median_step_s"]),
                    f"{r['minor_faults_per_step']:.0f}",
                ]
            )
        if "tinynet-numpy" in got and "numpy-raw" in got:
            ratio = got["tinynet-numpy"]["peak_rss_kib"] / got["numpy-raw"]["peak_rss_kib"]
            check_list.append(
                (None, f"{opt_name}: peak RSS tinynet-numpy / numpy-raw = {ratio:.2f} (no target)")
            )
    print(f"\n== peak memory: {args.memory_steps} steps of M on NumPy, each in a fresh process ==")
    print(
        bl.table(
            [
                "process",
                "opt",
                "peak RSS MiB",
                "ru_maxrss MiB",
                "imports+data MiB",
                "growth MiB",
                "median step",
                "faults/step",
            ],
            rows,
            align="llrrrrrr",
        )
    )
    print(
        "peak RSS = VmHWM; imports+data = a process that only imported its libraries and made "
        "the batch;\nmedian step and faults/step come from the fresh process (cold heap, no "
        "warm-up), not comparable to train_step.py"
    )
    return results, check_list


def main(argv=None) -> int:
    args = parse_args(argv)
    _limits = bl.setup_environment(args.device, args.threads)  # noqa: F841 (kept alive)
    if args.rss_worker:
        rss_worker(args.rss_worker, args.optimizer, args.memory_steps)
        return 0
    payload = {
        "benchmark": "fit_epoch",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "rss_worker")},
    }
    check_list = []
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    if not args.skip_fit:
        payload["fit"], checks_fit = fit_overhead(args)
        check_list += checks_fit
    if not args.skip_memory:
        payload["memory"], checks_mem = peak_memory(args)
        check_list += checks_mem
    print("\n== ratios (no targets here: see train_step.py and epoch.py) ==")
    for ok, text in check_list:
        print(bl.check_line(ok, text))
    payload["checks"] = [{"pass": ok, "text": text} for ok, text in check_list]
    payload["machine"] = bl.machine_info()
    if args.json:
        bl.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
