"""A real-sized shuffled epoch: config M over 60,000 samples, ``fit`` as a user calls it.

    python bench/epoch.py                        # every implementation installed (~5 min)
    python bench/epoch.py --quick                # smoke run
    python bench/epoch.py --impls tinynet-numpy,keras-fit --rounds 5 --json out.json

M (784-256-128-10, ReLU, softmax cross-entropy on integer labels, Adam lr
1e-3, batch 128, float32) trained on ``--samples`` (60,000) MNIST-shaped
synthetic samples (``benchlib.make_data``) handed over as host NumPy arrays,
``shuffle=True``.  The timed unit is one whole training call of ``--epochs``
(15) epochs, reported per epoch (call time / epochs), so fit's per-call work
(data checks, transfer to the device, a fresh optimizer state) is included
and shared by the epochs as in a real run.  Implementations:

* ``tinynet-numpy``, ``tinynet-jax``: ``model.fit(x, y, epochs=15,
  batch_size=128, shuffle=True, verbose=0)``, defaults otherwise;
* ``keras-fit``: Keras 3 on JAX (``KERAS_BACKEND=jax``), the same model
  (linear output, ``SparseCategoricalCrossentropy(from_logits=True)``),
  Adam(epsilon=1e-7), ``fit(..., shuffle=True, verbose=0)``;
* ``torch-eager``: a plain PyTorch loop, no DataLoader: ``torch.randperm``
  per epoch, each batch sliced from the permutation and gathered,
  ``nn.Linear`` + ``F.cross_entropy`` + ``torch.optim.Adam``; the loss summed
  on the tensor side (as fit sums it), 2 threads;
* ``numpy-raw``: the same loop around ``refs/numpy_raw.py``'s hand-written
  step (``rng.permutation`` per epoch, ``x[idx]`` gathers): the epoch a
  NumPy implementation done by hand reaches, for reading tinynet-numpy's
  figure (no target).

Method (as ``train_step.py``): every implementation starts from the same
parameters; one untimed warm-up call of one epoch (compilation), then
``--rounds`` rounds, each timing one call per implementation in a shuffled
(seeded) order, OpenBLAS's threads ended before each; reported: medians and
ratios of medians. A call lasts seconds, so with ``--wait-quiet S`` the
script also waits (up to S seconds) for a quiet machine before every call,
and a call during which other processes used more than 15% of the CPUs is
timed again (``--retries``, default 2): multi-threaded OpenBLAS and torch
run up to 10x slower when another process takes a core. Before every timed
call tinynet, torch and numpy-raw go back to the initial parameters, a fresh
optimizer state (and tinynet to epoch 0, so every call sees the same data
orders); Keras is not reset (no public API; on XLA a longer run costs the
same). Targets: tinynet-jax <= 0.75x and tinynet-numpy <= 1.0x Keras's
epoch. Keras and torch are optional: skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import benchlib as bl
import numpy as np

CONFIG = bl.CONFIGS["M"]
OPT = bl.OPTIMIZERS["adam"]
IMPLS = ("tinynet-numpy", "tinynet-jax", "keras-fit", "torch-eager", "numpy-raw")
TARGETS = {"tinynet-jax": 0.75, "tinynet-numpy": 1.0}  # x Keras's epoch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ runners
# run(epochs) trains one call of that many epochs and returns the last epoch's
# mean loss; reset() (tinynet, torch) goes back to the start.


class TinynetRunner:
    def __init__(self, backend_name, x, y, params):
        from refs.tinynet_impl import build_model

        self.model, self.loss, self.optimizer = build_model(CONFIG, backend_name, params, OPT)
        self.x, self.y, self.params_np = x, y, params

    def reset(self) -> None:
        from refs.tinynet_impl import fresh_params

        self.model.params = fresh_params(self.model, self.params_np)
        self.model.opt_state = None  # fit makes a fresh state for the same optimizer
        self.model.epoch = 0  # the same data orders every call

    def run(self, epochs: int) -> float:
        history = self.model.fit(
            self.x, self.y, loss=self.loss, optimizer=self.optimizer, epochs=epochs,
            batch_size=CONFIG.batch, shuffle=True, verbose=0,
        )  # fmt: skip
        self.model.backend.synchronize()
        return history.history["loss"][-1]


class KerasRunner:
    def __init__(self, x, y, params):
        import keras

        layers = [keras.Input((CONFIG.sizes[0],))]
        for i, (W, _) in enumerate(params):
            last = i == len(params) - 1
            layers.append(keras.layers.Dense(W.shape[1], activation=None if last else "relu"))
        self.model = keras.Sequential(layers)
        self.model.set_weights([a for W, b in params for a in (W, b)])
        self.model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=OPT.lr, beta_1=OPT.beta_1, beta_2=OPT.beta_2, epsilon=OPT.epsilon
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.x, self.y = x, y

    def run(self, epochs: int) -> float:
        history = self.model.fit(
            self.x, self.y, batch_size=CONFIG.batch, epochs=epochs, shuffle=True, verbose=0
        )
        return float(history.history["loss"][-1])


class TorchRunner:
    def __init__(self, x, y, params):
        import torch
        from torch import nn

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        torch.manual_seed(0)
        self.torch = torch
        layers = []
        for i, (W, b) in enumerate(params):
            lin = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if i < len(params) - 1:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers)
        self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.loss_fn = nn.functional.cross_entropy

    def reset(self) -> None:
        torch = self.torch
        self.model.load_state_dict(self.initial)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=OPT.lr, betas=(OPT.beta_1, OPT.beta_2), eps=OPT.epsilon
        )

    def run(self, epochs: int) -> float:
        torch, model, opt, loss_fn = self.torch, self.model, self.opt, self.loss_fn
        x, y, bs = self.x, self.y, CONFIG.batch
        n = x.shape[0]
        total = None
        for _ in range(epochs):
            perm = torch.randperm(n)
            total = torch.zeros(())
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach() * xb.shape[0]
        return float(total) / n


class NumpyRawRunner:
    def __init__(self, x, y, params):
        self.x, self.y, self.params = x, y, params

    def reset(self) -> None:
        from refs.numpy_raw import NumpyMLP

        self.mlp = NumpyMLP(self.params, OPT)
        self.rng = np.random.default_rng(0)

    def run(self, epochs: int) -> float:
        x, y, bs, step = self.x, self.y, CONFIG.batch, self.mlp.step
        n = x.shape[0]
        total = 0.0
        for _ in range(epochs):
            perm = self.rng.permutation(n)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                total += step(x[idx], y[idx]) * idx.shape[0]
        return total / n


def available(name: str) -> tuple[bool, str]:
    """Can ``name`` run here?  Never raises."""
    try:
        if name.startswith("tinynet-"):
            from tinynet import backends

            backend, why = backends.probe(name.split("-", 1)[1])
            return backend is not None, why
        if name == "keras-fit":
            if os.environ.get("KERAS_BACKEND") != "jax":
                return False, f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')} (needs jax)"
            import keras  # noqa: F401
        elif name == "torch-eager":
            import torch  # noqa: F401
    except ImportError as err:
        return False, f"{err.name or err} is not installed"
    except Exception as err:  # an optional package that fails to import
        return False, f"{type(err).__name__}: {err}"
    return True, ""


def build(name: str, x, y, params):
    if name.startswith("tinynet-"):
        return TinynetRunner(name.split("-", 1)[1], x, y, params)
    if name == "keras-fit":
        return KerasRunner(x, y, params)
    if name == "numpy-raw":
        return NumpyRawRunner(x, y, params)
    return TorchRunner(x, y, params)


# ------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated: {','.join(IMPLS)}")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=15, help="epochs per timed call (default 15)")
    p.add_argument("--rounds", type=int, default=None, help="timed calls each (default 5)")
    p.add_argument("--quick", action="store_true", help="6,400 samples, 2 epochs, 2 rounds")
    p.add_argument(
        "--threads", type=int, default=None, help="NumPy BLAS and torch threads (XLA too if 1)"
    )
    bl.add_run_arguments(p)
    p.set_defaults(retries=2)
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.epochs = min(args.samples, 6400), min(args.epochs, 2)
        args.rounds = args.rounds or 2
    args.rounds = args.rounds or 5
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    _limits = bl.setup_environment("cpu", args.threads)  # noqa: F841 (kept alive)
    names = bl.parse_list(args.impls, list(IMPLS), "implementation")
    x, y = bl.make_data(CONFIG, args.samples, seed=1)
    params = bl.init_params(CONFIG)
    entries, skipped = [], {}
    for name in names:
        ok, why = available(name)
        if not ok:
            skipped[name] = why
            log(f"skipping {name}: {why}")
            continue
        runner = build(name, x, y, params)
        # Entry.block = epochs per call: its times are seconds per epoch
        entries.append(bl.Entry("M", "adam", name, runner, block=args.epochs))
    for e in entries:  # one untimed call of one epoch: compilation, warm heap
        log(f"  warm-up {e.impl}")
        if hasattr(e.runner, "reset"):
            e.runner.reset()
        t0 = time.perf_counter()
        e.first_loss = e.runner.run(1)
        e.compile_s = time.perf_counter() - t0
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    t0 = time.perf_counter()
    monitor = bl.LoadMonitor().start()
    bl.interleave(
        entries,
        args.rounds,
        lambda r: log(f"  round {r + 1}/{args.rounds} ({time.perf_counter() - t0:.0f} s)"),
        park=args.park,
        settle=args.settle,
        quiet=args.wait_quiet,
        busy_retries=args.retries,
    )
    others = monitor.others_fraction()

    keras = next((e for e in entries if e.impl == "keras-fit"), None)
    rows, results = [], []
    for e in entries:
        ratio = e.median / keras.median if keras else None
        rows.append(
            [
                e.impl,
                bl.fmt_time(e.median),
                f"±{50 * e.spread:.0f}%",
                bl.fmt_time(e.median / -(-args.samples // CONFIG.batch)),
                f"{ratio:.2f}x" if ratio else None,
                f"{e.compile_s:.2f} s",
                f"{statistics.median(e.faults) / -(-args.samples // CONFIG.batch):.0f}",
                f"{100 * max(e.others):.0f}%",
                str(e.retried),
            ]
        )
        results.append(
            {
                "impl": e.impl,
                "epoch_median_s": e.median,
                "spread": e.spread,
                "ratio_to_keras": ratio,
                "epoch_times_s": e.times,
                "warm_up_call_s": e.compile_s,
                "minor_faults_per_epoch": statistics.median(e.faults),
                "others_cpu_fraction_per_call": e.others,
                "calls_retried_busy": e.retried,
            }
        )
    info = bl.machine_info()
    print(
        f"machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs; numpy {info['numpy']}, "
        f"jax {info['jax']}, torch {info['torch']}, keras {info['keras']}"
    )
    print(
        f"\n== epoch of M 784-256-128-10, Adam, batch {CONFIG.batch}, {args.samples} samples, "
        f"shuffle=True: one call of {args.epochs} epochs timed per epoch, "
        f"median of {args.rounds} interleaved calls =="
    )
    print(
        bl.table(
            [
                "impl",
                "epoch",
                "spread",
                "per step",
                "x Keras",
                "warm-up call",
                "faults/step",
                "max others",
                "retried",
            ],
            rows,
            align="lrrrrrrrr",
        )
    )
    print(
        "max others = the largest share of the CPUs other processes used during a kept call; "
        "retried = calls timed again because it was > 15%"
    )
    print(bl.load_line(entries, others))
    check_list = []
    for name, limit in TARGETS.items():
        e = next((e for e in entries if e.impl == name), None)
        v = None if e is None or keras is None else e.median / keras.median
        paired = (
            ""
            if v is None
            else "; paired per round "
            f"{statistics.median(a / b for a, b in zip(e.times, keras.times, strict=True)):.3f}"
        )
        check_list.append(
            (
                None if v is None else v <= limit,
                f"{name} epoch / keras-fit epoch = {'n/a' if v is None else f'{v:.3f}'} "
                f"(target <= {limit:.2f}){paired}",
            )
        )
    print("\n== targets ==")
    for ok, text in check_list:
        print("SKIP  " + text if ok is None else bl.check_line(ok, text))
    for ref in ("torch-eager", "numpy-raw"):
        ref_e = next((e for e in entries if e.impl == ref), None)
        for e in entries if ref_e is not None else ():
            if e.impl.startswith("tinynet-") and (ref != "numpy-raw" or e.impl.endswith("numpy")):
                print(f"info  {e.impl} epoch / {ref} epoch = {e.median / ref_e.median:.3f}")
    if skipped:
        print("\nnot run: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if args.json:
        bl.write_json(
            args.json,
            {
                "benchmark": "epoch",
                "settings": {k: v for k, v in vars(args).items() if k != "json"},
                "results": results,
                "others_cpu_fraction": others,
                "checks": [{"pass": ok, "text": t} for ok, t in check_list],
                "skipped": skipped,
                "machine": info,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
