"""Startup time: ``import tinynet`` and ``tinynet --help`` in fresh processes.

    python bench/startup.py [--repeats 9] [--json out.json]

Each command runs ``--repeats`` times, interleaved round by round, in a fresh
interpreter started from an empty temporary directory (as a user would, not
from the source tree); the median wall time (process start to exit) is
reported next to ``python -c pass`` and ``import numpy`` for scale.  Then each
command runs once more under ``python -X importtime`` to check that JAX (and
torch, cupy) are NOT imported, and to list the slowest top-level imports.
Target: ``import tinynet`` < 0.3 s; the ``--help`` times are shown as info.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib as bl

HEAVY = ("jax", "jaxlib", "torch", "cupy", "keras", "tensorflow")


def commands() -> dict[str, list[str]]:
    py = sys.executable
    cmds = {
        "python -c pass": [py, "-c", "pass"],
        "import numpy": [py, "-c", "import numpy"],
        "import tinynet": [py, "-c", "import tinynet"],
        "python -m tinynet --help": [py, "-m", "tinynet", "--help"],
    }
    script = os.path.join(os.path.dirname(py), "tinynet")
    if os.path.exists(script):
        cmds["tinynet --help (console script)"] = [script, "--help"]
    return cmds


TARGETS = {"import tinynet": 0.3}
# also checked for heavy imports, timed without a target
CHECKED = ("import tinynet", "python -m tinynet --help", "tinynet --help (console script)")


def run_once(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[1:])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return elapsed


def import_report(cmd: list[str], cwd: str, env: dict[str, str]) -> dict:
    """Modules imported by ``cmd`` (via -X importtime): heavy ones and the
    slowest top-level imports."""
    if cmd[0] != sys.executable:  # console script: run its module instead
        cmd = [sys.executable, "-m", "tinynet", *cmd[1:]]
    proc = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True
    )
    modules, top = [], []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1].strip())
        except ValueError:  # the header line
            continue
        raw = parts[2].rstrip()
        name = raw.strip()
        depth = (len(raw) - len(raw.lstrip())) // 2
        modules.append(name)
        if depth <= 1:
            top.append((cumulative, name))
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
    top.sort(reverse=True)
    return {
        "n_modules": len(modules),
        "heavy_imported": heavy,
        "slowest_top_level_us": [[name, us] for us, name in top[:10]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="3 repeats")
    bl.add_run_arguments(p)
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("TINYNET_BACKEND", None)
    cmds = commands()
    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory() as cwd:
        for cmd in cmds.values():  # warm the file cache
            run_once(cmd, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        monitor = bl.LoadMonitor().start()
        names = list(cmds)
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(run_once(cmds[name], cwd, env))
        others = monitor.others_fraction()
        reports = {
            name: import_report(cmd, cwd, env) for name, cmd in cmds.items() if name in CHECKED
        }

    rows, results, check_list = [], [], []
    for name in names:
        med = statistics.median(times[name])
        rows.append(
            [
                name,
                f"{med * 1e3:.0f} ms",
                f"{min(times[name]) * 1e3:.0f} ms",
                f"{max(times[name]) * 1e3:.0f} ms",
                f"< {TARGETS[name] * 1e3:.0f} ms" if name in TARGETS else None,
            ]
        )
        results.append(
            {
                "command": name,
                "median_s": med,
                "times_s": times[name],
                "target_s": TARGETS.get(name),
                "imports": reports.get(name),
            }
        )
        if name in TARGETS:
            check_list.append(
                (
                    med < TARGETS[name],
                    f"{name}: median {med * 1e3:.0f} ms (target < {TARGETS[name] * 1e3:.0f} ms)",
                )
            )
        elif name in CHECKED:
            check_list.append((None, f"{name}: median {med * 1e3:.0f} ms (no target)"))
    print(
        f"== startup: median of {repeats} fresh processes (interleaved), cwd = an empty temp dir =="
    )
    print(bl.table(["command", "median", "min", "max", "target"], rows))
    if others is not None:
        print(
            f"other processes used {100 * others:.0f}% of the CPUs during the runs"
            + ("  <-- BUSY MACHINE: these numbers are disturbed, rerun" if others > 0.15 else "")
        )
    for name, rep in reports.items():
        slow = ", ".join(f"{m} {us / 1e3:.0f} ms" for m, us in rep["slowest_top_level_us"][:6])
        print(
            f"\n{name}: {rep['n_modules']} modules imported; heavy: "
            f"{', '.join(rep['heavy_imported']) or 'none'}\n  slowest imports (cumulative): {slow}"
        )
        check_list.append(
            (
                not any(m.split(".")[0] in ("jax", "jaxlib") for m in rep["heavy_imported"]),
                f"{name}: jax not imported",
            )
        )
    print("\n== targets ==")
    for ok, text in check_list:
        print(bl.check_line(ok, text))
    if args.json:
        bl.write_json(
            args.json,
            {
                "benchmark": "startup",
                "repeats": repeats,
                "results": results,
                "others_cpu_fraction": others,
                "checks": [{"pass": ok, "text": t} for ok, t in check_list],
                "machine": bl.machine_info(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
