"""Shared pieces of the tinynet benchmarks.

Configs, synthetic data, the common initial parameters, FLOP counts, the
interleaved timer, machine info and output helpers.  Importing this module
imports only the standard library and NumPy: the fresh-process measurements
(startup, peak memory) must not pay for anything else.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)


# ------------------------------------------------------------------ configs


@dataclass(frozen=True)
class Config:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` (ReLU hidden layers, softmax
    cross-entropy on integer labels) trained on batches of ``batch`` rows."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    block: int  # steps per timed block (default run)
    quick_block: int  # steps per timed block with --quick

    @property
    def layers(self) -> list[tuple[int, int]]:
        return list(zip(self.sizes[:-1], self.sizes[1:], strict=True))

    @property
    def num_classes(self) -> int:
        return self.sizes[-1]

    def gemms(self) -> list[tuple[str, int, int, int]]:
        """The matrix products of one training step, ``(what, m, k, n)`` for an
        ``(m, k) @ (k, n)`` product.

        Forward ``h @ W`` per layer; backward ``h.T @ dz`` (weight gradient)
        per layer and ``dz @ W.T`` (input gradient) for every layer but the
        first: nobody needs the gradient of the data, and tinynet skips it.
        """
        out = []
        b = self.batch
        for i, (fan_in, fan_out) in enumerate(self.layers):
            out.append((f"fwd{i}", b, fan_in, fan_out))
        for i, (fan_in, fan_out) in reversed(list(enumerate(self.layers))):
            out.append((f"dW{i}", fan_in, b, fan_out))
            if i > 0:
                out.append((f"dx{i}", b, fan_out, fan_in))
        return out

    def flops(self) -> int:
        """Matmul FLOPs of one step: ``2*m*k*n`` per product of :meth:`gemms`,
        i.e. ``6 * batch * sum(in*out)`` minus the first layer's input
        gradient ``2 * batch * in0 * out0``.  Elementwise work is not counted;
        the same number is used for every implementation."""
        return sum(2 * m * k * n for _, m, k, n in self.gemms())


CONFIGS: dict[str, Config] = {
    "S": Config("S", (2, 64, 3), 300, block=300, quick_block=30),
    "M": Config("M", (784, 256, 128, 10), 128, block=50, quick_block=5),
    "L": Config("L", (1024, 2048, 2048, 10), 512, block=3, quick_block=1),
}


@dataclass(frozen=True)
class OptSpec:
    """Optimizer hyperparameters every implementation uses."""

    name: str  # "sgd" or "adam"
    lr: float
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7  # Keras default; added to sqrt(v) of the uncorrected v


OPTIMIZERS: dict[str, OptSpec] = {
    "sgd": OptSpec("sgd", lr=0.01),  # plain SGD, no momentum
    "adam": OptSpec("adam", lr=1e-3),
}


def parse_list(text: str, valid: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    lookup = {v.lower(): v for v in valid}
    out = []
    for item in items:
        if item.lower() not in lookup:
            raise SystemExit(f"unknown {what} {item!r}; valid: {', '.join(valid)}")
        out.append(lookup[item.lower()])
    return out


# ------------------------------------------------------------------ data and parameters


def make_data(config: Config, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 (n, in), y int64 (n,))``, the same for every implementation.

    S: the classic 3-arm spiral; M: MNIST-shaped pixels in [0, 1); L: normal.
    """
    rng = np.random.default_rng(seed)
    k = config.num_classes
    if config.name == "S":
        y = np.arange(n) % k
        r = rng.random(n)
        t = y * 4.0 + r * 4.0 + rng.normal(0.0, 0.2, n)
        x = np.stack([r * np.sin(t * 2.5), r * np.cos(t * 2.5)], axis=1)
    elif config.name == "M":
        x = rng.random((n, config.sizes[0]))
        y = rng.integers(0, k, n)
    else:
        x = rng.standard_normal((n, config.sizes[0]))
        y = rng.integers(0, k, n)
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


def init_params(config: Config, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W (in, out), b (out,)), ...]`` float32: He-uniform hidden layers,
    Glorot-uniform output layer, zero biases (what the tinynet model in the
    brief uses).  Every implementation starts from these exact numbers."""
    rng = np.random.default_rng(seed + 1000)
    params = []
    n_layers = len(config.layers)
    for i, (fan_in, fan_out) in enumerate(config.layers):
        if i < n_layers - 1:
            limit = math.sqrt(6.0 / fan_in)
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
        W = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        params.append((W, np.zeros(fan_out, np.float32)))
    return params


# ------------------------------------------------------------------ timing


def minor_faults() -> int:
    """This process's minor page faults and those of its live :class:`ChildRunner` s."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt + sum(
        _child_stat(pid)[0] for pid in CHILDREN
    )


# ------------------------------------------------------------------ a runner in its own process

CHILDREN: list[int] = []  # pids of live ChildRunners: their CPU time and faults count as ours


def _child_stat(pid: int) -> tuple[int, float]:
    """``(minor faults, CPU seconds)`` of a live child, from /proc (0, 0.0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0.0
    # after "pid (comm)": state is field 0, minflt 7, utime 11, stime 12 (proc(5))
    return int(fields[7]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChildRunner:
    """``module.Runner(*args, **kwargs)`` in a process of its own, spawned (a fresh
    interpreter: nothing this process set up, such as tinynet's allocator setting,
    holds there), with the same ``run(n)`` and ``reset()``.  The child ends its
    OpenBLAS threads after every ``run`` (see :func:`park_blas_threads`), and its
    CPU time and page faults count as this process's in :class:`LoadMonitor` and
    :func:`minor_faults`.  ``threads``: as ``--threads`` (:func:`limit_threads`)."""

    def __init__(self, module: str, *args: Any, threads: int | None = None, **kwargs: Any):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._name = module
        self._proc = ctx.Process(
            target=_serve, args=(child, module, threads, args, kwargs), daemon=True
        )
        self._proc.start()
        CHILDREN.append(self._proc.pid)
        self._reply()

    def _reply(self) -> Any:
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"{self._name} in its own process: {value}")
        return value

    def run(self, n: int) -> float:
        self._conn.send(("run", n))
        return self._reply()

    def reset(self) -> None:
        self._conn.send(("reset",))
        self._reply()

    def close(self) -> None:
        if self._proc.pid in CHILDREN:
            CHILDREN.remove(self._proc.pid)
            self._conn.send(("stop",))
            self._proc.join(5)


def _serve(conn: Any, module: str, threads: int | None, args: tuple, kwargs: dict) -> None:
    import importlib

    try:
        _limits = limit_threads(threads)  # noqa: F841 (kept alive)
        runner = importlib.import_module(module).Runner(*args, **kwargs)
    except Exception as err:
        conn.send((False, f"{type(err).__name__}: {err}"))
        return
    conn.send((True, None))
    while (msg := conn.recv())[0] != "stop":
        try:
            value = getattr(runner, msg[0])(*msg[1:])
            park_blas_threads()
            conn.send((True, value))
        except Exception as err:
            conn.send((False, f"{type(err).__name__}: {err}"))


@dataclass
class Entry:
    """One implementation/config/optimizer being timed."""

    config: str
    optimizer: str
    impl: str
    runner: Any  # has run(n) -> float | None: n steps, synchronized at the end
    block: int
    times: list[float] = field(default_factory=list)  # seconds per step, one per block
    faults: list[float] = field(default_factory=list)  # minor page faults per step
    others: list[float] = field(default_factory=list)  # CPU share of other processes per block
    retried: int = 0  # blocks timed again because the machine was busy
    first_loss: float | None = None
    compile_s: float | None = None  # first call (incl. compile) minus a normal step

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median over the blocks."""
        return (max(self.times) - min(self.times)) / self.median if self.times else float("nan")


# Before every timed block the benchmark ends OpenBLAS's worker threads
# (``blas_thread_shutdown_``, what OpenBLAS itself does before a fork; its
# next parallel call starts them again, ~35 us).  After its last call an
# OpenBLAS thread keeps spinning for 2^28 cycles (~0.1 s at 2.6 GHz), and on
# a 2-core machine it takes a core from whatever runs next: an XLA matmul of
# L's 512x2048 @ 2048x2048 took 15.1 ms alone, 23.2 ms right after a NumPy
# matmul and 15.0 ms right after one whose threads were ended.  Interleaving
# handed that cost to whichever implementation followed a NumPy one.  (Idling
# ~0.2 s instead was tried: JAX then runs slower after any pause over ~0.1 s,
# an M epoch 59 -> 70-77 ms.)
_OPENBLAS_SHUTDOWN: list | None = None


def park_blas_threads() -> int:
    """End the worker threads of every loaded OpenBLAS now (see above);
    returns how many libraries that was (0 where none exports the call)."""
    global _OPENBLAS_SHUTDOWN
    if _OPENBLAS_SHUTDOWN is None:
        import ctypes

        found = []
        try:
            from threadpoolctl import threadpool_info

            for info in threadpool_info():
                if info.get("internal_api") == "openblas":
                    fn = getattr(ctypes.CDLL(info["filepath"]), "blas_thread_shutdown_", None)
                    if fn is not None:
                        found.append(fn)
        except (ImportError, OSError):
            pass
        _OPENBLAS_SHUTDOWN = found
    for fn in _OPENBLAS_SHUTDOWN:
        fn()
    return len(_OPENBLAS_SHUTDOWN)


# /proc/stat counts in 10 ms ticks: a block shorter than this gets no load
# figure (NaN), is never timed again and does not count in load_line.
MIN_LOAD_BLOCK_S = 0.1


def time_block(entry: Entry, park: bool = True, settle: float = 0.0) -> None:
    """Time one block.  A runner with ``reset()`` first goes back to its initial
    state (untimed), so every block times the same steps 1..N of one training
    run: long runs drift (dead ReLU units make Adam's first moment decay into
    float32 denormals, which slow NumPy and torch down 2x at M after ~700
    steps; XLA flushes denormals to zero).  Then, with ``park``, no OpenBLAS
    thread is left spinning (:func:`park_blas_threads`), and ``settle``
    seconds of idle pass."""
    reset = getattr(entry.runner, "reset", None)
    if reset is not None:
        reset()
    if park:
        park_blas_threads()
    if settle > 0:
        time.sleep(settle)
    monitor = LoadMonitor().start()
    f0 = minor_faults()
    t0 = time.perf_counter()
    entry.runner.run(entry.block)
    t1 = time.perf_counter()
    f1 = minor_faults()
    entry.times.append((t1 - t0) / entry.block)
    entry.faults.append((f1 - f0) / entry.block)
    others = monitor.others_fraction() if t1 - t0 >= MIN_LOAD_BLOCK_S else None
    entry.others.append(float("nan") if others is None else others)


def warm_up(entry: Entry, warm_steps: int) -> None:
    """First step alone (its loss is the initial loss, its time includes any
    compilation), then ``warm_steps`` untimed steps (warm heap, caches)."""
    t0 = time.perf_counter()
    loss = entry.runner.run(1)
    first = time.perf_counter() - t0
    entry.first_loss = None if loss is None else float(loss)
    t0 = time.perf_counter()
    entry.runner.run(warm_steps)
    per_step = (time.perf_counter() - t0) / max(warm_steps, 1)
    entry.compile_s = max(first - per_step, 0.0)


BUSY = 0.15  # share of the CPUs used by other processes above which a block is disturbed


def interleave(
    entries: list[Entry],
    rounds: int,
    on_round: Callable[[int], None] | None = None,
    park: bool = True,
    settle: float = 0.0,
    quiet: float = 0.0,
    busy_retries: int = 0,
) -> None:
    """``rounds`` rounds; in each, every entry runs one timed block, in an order
    shuffled each round (seeded: the same orders every run), so no entry
    always follows the same one.  (A rotation by one per round keeps every
    entry's predecessor: ``tinynet-numpy`` always ran right after the GEMM
    floor, whose BLAS threads still spin for a while after their last call,
    and measured 1.4-1.5x raw NumPy on S in full runs vs 1.05x alone; ending
    OpenBLAS's threads before every block, see ``time_block``, now removes
    that cost too.)

    For long blocks (seconds): ``quiet`` waits up to that many seconds for
    the machine to go quiet before every block, and a block during which
    other processes used more than ``BUSY`` of the CPUs is timed again, up
    to ``busy_retries`` times (the last try is kept).  Multi-threaded
    OpenBLAS and torch slow down up to 10x when another process takes a
    core, XLA much less, so a busy block says nothing about either."""
    import gc
    import random as pyrandom

    shuffler = pyrandom.Random(1234)
    for r in range(rounds):
        order = list(entries)
        shuffler.shuffle(order)
        for entry in order:
            for attempt in range(busy_retries + 1):
                if quiet > 0:
                    wait_for_quiet(quiet, sample=1.0)
                time_block(entry, park, settle)
                if attempt == busy_retries or not entry.others[-1] > BUSY:  # NaN: not judged
                    break
                entry.times.pop()
                entry.faults.pop()
                entry.others.pop()
                entry.retried += 1
        gc.collect()
        if on_round is not None:
            on_round(r)


def load_line(entries: Sequence[Entry], others: float | None) -> str:
    """One line on the machine's load during the timed rounds: other
    processes' share over the rounds (retries included) and, for blocks long
    enough to judge one by one, the share of kept blocks above ``BUSY`` and
    the blocks timed again.  Warns when more than a quarter of the judged
    blocks, or (none judged) the rounds as a whole, were above ``BUSY``."""
    judged = [o for e in entries for o in e.others if o == o]  # NaN: too short
    retried = sum(e.retried for e in entries)
    text = "other processes used " + ("?" if others is None else f"{100 * others:.0f}%")
    text += " of the CPUs during the timed rounds"
    if judged:
        disturbed = sum(o > BUSY for o in judged) / len(judged)
        text += f"; {100 * disturbed:.0f}% of the judged blocks above {100 * BUSY:.0f}%"
        busy = disturbed > 0.25
    else:
        busy = others is not None and others > BUSY
    if retried:
        text += f" ({retried} busy block(s) timed again)"
    if busy:
        text += "  <-- BUSY MACHINE: these numbers are disturbed, rerun"
    return text


def fmt_time(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table; ``align`` has one 'l' or 'r' per column."""
    cells = [[str(c) for c in headers]] + [
        [("-" if c is None else str(c)) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(row, widths, align, strict=True)
        )

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def check_line(ok: bool | None, text: str) -> str:
    """``PASS``/``FAIL`` for a target; ``ok`` None: a figure shown beside them."""
    return f"{'info' if ok is None else 'PASS' if ok else 'FAIL'}  {text}"


# ------------------------------------------------------------------ environment


def setup_environment(device: str = "cpu", threads: int | None = None) -> Any:
    """Before anything imports jax or keras: JAX on the CPU unless ``device``
    is "gpu", Keras on JAX, TensorFlow's logging quiet, and ``--threads``
    (:func:`limit_threads`).  Returns an object to keep alive."""
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return limit_threads(threads)


# ------------------------------------------------------------------ threads


def limit_threads(threads: int | None) -> Any:
    """``--threads N``: NumPy's BLAS (threadpoolctl), torch (read by
    refs/torch_eager.py) and, for N == 1, XLA's CPU thread pool.  Call before
    jax is imported; keep the returned object alive."""
    if threads is None:
        return None
    os.environ["BENCH_TORCH_THREADS"] = str(threads)
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print(
            "threadpoolctl is not installed: --threads does not limit NumPy's BLAS", file=sys.stderr
        )
        return None
    return threadpool_limits(threads)


# ------------------------------------------------------------------ machine load


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


class LoadMonitor:
    """How much CPU *other* processes used while we measured: the machine's
    busy time minus our own (and our children's, live ones too) CPU time, as a
    fraction of all CPUs.  A few percent is a quiet machine; tens of percent means the
    timings are disturbed."""

    def start(self) -> LoadMonitor:
        try:
            self._jiffies = _cpu_jiffies()
        except OSError:
            self._jiffies = None
        self._own = self._own_cpu()
        self._t = time.perf_counter()
        return self

    @staticmethod
    def _own_cpu() -> float:
        t = os.times()
        live = sum(_child_stat(pid)[1] for pid in CHILDREN)
        return t.user + t.system + t.children_user + t.children_system + live

    def others_fraction(self) -> float | None:
        if self._jiffies is None:
            return None
        busy0, total0 = self._jiffies
        busy1, total1 = _cpu_jiffies()
        if total1 <= total0:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        own = (self._own_cpu() - self._own) * hz
        return max(0.0, (busy1 - busy0 - own) / (total1 - total0))


def wait_for_quiet(max_wait: float, threshold: float = 0.15, sample: float = 3.0) -> float | None:
    """Wait (up to ``max_wait`` s) until other processes use less than
    ``threshold`` of the machine over a ``sample``-second window; returns the
    last measured fraction."""
    deadline = time.monotonic() + max_wait
    frac = None
    while True:
        mon = LoadMonitor().start()
        time.sleep(sample)
        frac = mon.others_fraction()
        if frac is None or frac < threshold or time.monotonic() >= deadline:
            return frac
        print(
            f"machine busy ({100 * frac:.0f}% of CPU used by other processes), waiting ...",
            file=sys.stderr,
            flush=True,
        )


# ------------------------------------------------------------------ machine info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        return None
    return getattr(mod, "__version__", "?")


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the BLAS/OpenMP pools (file paths reduced to names)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    info = []
    for pool in threadpool_info():
        pool = dict(pool)
        if "filepath" in pool:
            pool["filepath"] = os.path.basename(pool["filepath"])
        info.append(pool)
    return info


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "torch": _version("torch"),
        "keras": _version("keras"),
        "tinynet": _version("tinynet"),
        "blas": blas_info(),
        "env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(
                ("OMP_", "OPENBLAS_", "MKL_", "XLA_", "JAX_", "KERAS_", "TINYNET_", "MALLOC_")
            )
        },
    }


def write_json(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")
    print(f"\nwrote {path}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def run_python(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``python ARGS`` with this interpreter in a fresh process."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO_DIR,
        timeout=timeout,
    )


def add_run_arguments(parser: Any) -> None:
    """``--wait-quiet SECONDS``, ``--retries N``, ``--json PATH``, ``--no-park``
    and ``--settle SECONDS``, shared by every bench script."""
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="time a block again when other processes used more than 15%% of the CPUs "
        "during it, up to N times (blocks shorter than 0.1 s are not judged: /proc/stat "
        "counts in 10 ms ticks)",
    )
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--no-park",
        dest="park",
        action="store_false",
        help="leave OpenBLAS's threads spinning between timed blocks (by default they are "
        "ended before every block: see benchlib.park_blas_threads)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="idle before every timed block (default 0: JAX runs slower after a pause)",
    )
