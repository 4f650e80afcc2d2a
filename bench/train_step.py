"""Time ONE training step (forward + backward + update) of three MLPs.

    python bench/train_step.py                      # everything installed, CPU
    python bench/train_step.py --quick              # smoke run
    python bench/train_step.py --configs S,M --impls tinynet-numpy,numpy-raw
    python bench/train_step.py --device gpu         # tinynet-cupy / JAX on the GPU
    python bench/train_step.py --json out.json

Configs (float32, ReLU hidden layers, softmax cross-entropy on int labels):
S 2-64-3 batch 300, M 784-256-128-10 batch 128, L 1024-2048-2048-10 batch 512;
optimizers SGD (lr 0.01) and Adam (lr 1e-3, eps 1e-7).  All implementations
start from the same parameters and train on the same batch.

Method: every implementation is built and warmed up (compilation included),
then ``--rounds`` rounds run; in each round every implementation times one
block of steps, in an order shuffled each round (seeded).  Reported: the median of the
per-block step times, and ratios of medians.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import benchlib as bl


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="S,M,L", help="comma-separated: S,M,L (default all)")
    p.add_argument(
        "--impls",
        default=None,
        help="comma-separated implementations (default: every one that runs here; see --list)",
    )
    p.add_argument("--optimizers", default="sgd,adam", help="sgd,adam (default both)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, --quick 3)")
    p.add_argument(
        "--block-scale",
        type=float,
        default=1.0,
        help="multiply the steps per timed block (default blocks: S 300, M 50, L 3)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small blocks, 3 rounds")
    p.add_argument("--strict", action="store_true", help="also time tinynet-strict (slow)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: tinynet-cupy and JAX/torch/keras on the GPU (NumPy stays on the CPU)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for NumPy's BLAS and torch (and XLA if 1); default: each "
        "library's own (2 on a 2-core machine)",
    )
    bl.add_run_arguments(p)
    p.add_argument("--list", action="store_true", help="list implementations and exit")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def select_impls(args, refs):
    """``(runnable Impl list, {name: why skipped})``."""
    if args.impls:
        names = bl.parse_list(args.impls, list(refs.IMPLS), "implementation")
    else:
        names = [n for n in refs.IMPLS if n != "tinynet-strict" or args.strict]
        if args.device == "cpu":
            names = [n for n in names if n != "tinynet-cupy"]
    if args.strict and "tinynet-strict" not in names:
        names.insert(2, "tinynet-strict")
    chosen, skipped = [], {}
    for name in names:
        ok, why = refs.probe(refs.IMPLS[name], args.device)
        if ok:
            chosen.append(refs.IMPLS[name])
        else:
            skipped[name] = why
    chosen.sort(key=lambda i: names.index(i.name))
    return chosen, skipped


def impl_device(impl, device: str) -> str:
    if impl.name in ("numpy-raw", "tinynet-numpy", "tinynet-strict"):
        return "cpu"
    return device


def bench_config(config, impls, opts, args, refs, skipped_builds):
    block = max(1, round((config.quick_block if args.quick else config.block) * args.block_scale))
    rounds = args.rounds or (3 if args.quick else 7)
    x, y = bl.make_data(config, config.batch)
    params = bl.init_params(config)
    entries = []
    for impl in impls:
        for opt in opts if impl.per_optimizer else [None]:
            label = opt.name if opt else "-"
            try:
                runner = refs.build(impl, config, opt, x, y, params, impl_device(impl, args.device))
            except Exception as err:  # keep going without this one
                skipped_builds[f"{config.name}/{label}/{impl.name}"] = (
                    f"{type(err).__name__}: {err}"
                )
                log(f"  [{config.name}] {impl.name} {label}: build failed: {err}")
                continue
            entries.append(bl.Entry(config.name, label, impl.name, runner, block))
    for e in entries:
        log(f"  [{config.name}] warm-up {e.impl} {e.optimizer}")
        bl.warm_up(e, 2 * block)
    t0 = time.perf_counter()
    monitor = bl.LoadMonitor().start()
    bl.interleave(
        entries,
        rounds,
        lambda r: log(
            f"  [{config.name}] round {r + 1}/{rounds} ({time.perf_counter() - t0:.1f} s)"
        ),
        park=args.park,
        settle=args.settle,
        busy_retries=args.retries,
    )
    others = monitor.others_fraction()
    for e in entries:
        e.runner = None
    gc.collect()
    return entries, others


def summarize(config, entries, peak):
    """One result dict per entry, with ratios and FLOP rates."""
    flops = config.flops()
    by_key = {(e.optimizer, e.impl): e for e in entries}
    floor = by_key.get(("-", "gemm-floor"))
    results = []
    for e in entries:
        base = by_key.get((e.optimizer, "numpy-raw"))
        med = e.median
        r = {
            "config": config.name,
            "optimizer": e.optimizer,
            "impl": e.impl,
            "median_s": med,
            "steps_per_s": 1.0 / med,
            "spread": e.spread,
            "block_steps": e.block,
            "block_times_s": e.times,
            "minor_faults_per_step": statistics.median(e.faults),
            "ratio_to_numpy_raw": med / base.median if base else None,
            "gflops": flops / med / 1e9,
            "frac_peak_step_shapes": floor.median / med if floor else None,
            "frac_peak_1024": (flops / med / 1e9) / peak if peak else None,
            "first_loss": e.first_loss,
            "first_call_overhead_s": e.compile_s,
            "others_cpu_fraction_per_block": e.others,
            "blocks_retried_busy": e.retried,
        }
        results.append(r)
    return results


def print_config(config, results, peak):
    print(
        f"\n== {config.name}: MLP {'-'.join(map(str, config.sizes))}, batch {config.batch}, "
        f"{config.flops() / 1e6:.3g} MFLOP/step (matmuls, no input grad of layer 0) =="
    )
    rows = []
    floor = next((r for r in results if r["impl"] == "gemm-floor"), None)
    for r in results:
        if r["impl"] == "gemm-floor":
            continue
        pct = lambda v: f"{100 * v:.0f}%" if v is not None else None  # noqa: E731
        rows.append(
            [
                r["impl"],
                r["optimizer"],
                bl.fmt_time(r["median_s"]),
                f"±{50 * r['spread']:.0f}%",
                f"{r['steps_per_s']:.0f}",
                f"{r['ratio_to_numpy_raw']:.2f}x" if r["ratio_to_numpy_raw"] else None,
                f"{r['gflops']:.1f}",
                pct(r["frac_peak_step_shapes"]),
                pct(r["frac_peak_1024"]),
                f"{r['minor_faults_per_step']:.0f}",
                f"{r['first_loss']:.5f}" if r["first_loss"] is not None else None,
            ]
        )
    print(
        bl.table(
            [
                "impl",
                "opt",
                "median",
                "spread",
                "steps/s",
                "x raw NumPy",
                "GFLOP/s",
                "%peak shapes",
                "%peak 1024",
                "faults/step",
                "loss@0",
            ],
            rows,
            align="llrrrrrrrrr",
        )
    )
    if floor:
        print(
            f"GEMM floor (np.matmul of the step's {len(config.gemms())} products, out= buffers): "
            f"{bl.fmt_time(floor['median_s'])} = {floor['gflops']:.1f} GFLOP/s"
            + (f" ({100 * floor['gflops'] / peak:.0f}% of the 1024^3 peak)" if peak else "")
        )
    # the same starting point must give the same first loss everywhere
    for opt in sorted({r["optimizer"] for r in results} - {"-"}):
        ref = next((r for r in results if r["optimizer"] == opt and r["impl"] == "numpy-raw"), None)
        if ref is None or ref["first_loss"] is None:
            continue
        for r in results:
            if r["optimizer"] == opt and r["first_loss"] is not None:
                rel = abs(r["first_loss"] - ref["first_loss"]) / max(abs(ref["first_loss"]), 1e-12)
                if rel > 1e-4:
                    print(
                        f"WARNING: {r['impl']} {opt}: first loss {r['first_loss']:.6f} differs "
                        f"from "
                        f"numpy-raw's {ref['first_loss']:.6f} (rel {rel:.1e})"
                    )


def checks(results):
    """The step-time targets of the project (issue 16), as ``(ok or None, text)``:
    tinynet-numpy <= 1.30x numpy-raw on S and <= 1.10x on M and L; tinynet-jax
    <= 1.05x jax-hand-jit on S, M, L; at L with SGD tinynet-jax >= 90% and
    tinynet-numpy >= 80% of the GEMM floor; on S tinynet's fit per step <= 1/3
    of Keras's and <= 1/5 of torch eager's; tinynet-torch <= 1.25x torch-eager
    on S and <= 1.10x on M and L, and its compiled fit per step on S faster
    than torch-eager (issue 19)."""
    get = {(r["config"], r["optimizer"], r["impl"]): r for r in results}
    out = []

    def ratio(cfg, opt, a, b):
        ra, rb = get.get((cfg, opt, a)), get.get((cfg, opt, b))
        return None if ra is None or rb is None else ra["median_s"] / rb["median_s"]

    def paired(cfg, opt, a, b):
        """``; paired R``: the median over rounds of the two blocks' ratio
        within a round (shown beside the target, which is on the ratio of
        medians): blocks of one round share the machine's state, so this
        moves less between runs when the host is noisy."""
        ra, rb = get.get((cfg, opt, a)), get.get((cfg, opt, b))
        if ra is None or rb is None:
            return ""
        pairs = zip(ra["block_times_s"], rb["block_times_s"], strict=True)
        return f"; paired per round {statistics.median(x / y for x, y in pairs):.3f}"

    for cfg, limit in (("S", 1.30), ("M", 1.10), ("L", 1.10)):
        for opt in ("sgd", "adam"):
            v = ratio(cfg, opt, "tinynet-numpy", "numpy-raw")
            out.append(
                (
                    None if v is None else v <= limit,
                    f"{cfg} {opt}: tinynet-numpy / numpy-raw = "
                    f"{'n/a' if v is None else f'{v:.3f}'} (target <= {limit:.2f})"
                    + paired(cfg, opt, "tinynet-numpy", "numpy-raw"),
                )
            )
    for cfg in ("S", "M", "L"):
        for opt in ("sgd", "adam"):
            v = ratio(cfg, opt, "tinynet-jax", "jax-hand-jit")
            out.append(
                (
                    None if v is None else v <= 1.05,
                    f"{cfg} {opt}: tinynet-jax / jax-hand-jit = "
                    f"{'n/a' if v is None else f'{v:.3f}'} (target <= 1.05)"
                    + paired(cfg, opt, "tinynet-jax", "jax-hand-jit"),
                )
            )
    for impl, limit in (("tinynet-jax", 0.90), ("tinynet-numpy", 0.80)):
        r = get.get(("L", "sgd", impl))
        v = None if r is None else r["frac_peak_step_shapes"]
        extra = (
            ""
            if r is None or r["frac_peak_1024"] is None
            else (
                f"; {100 * r['frac_peak_1024']:.0f}% of the 1024^3 peak, {r['gflops']:.0f} GFLOP/s"
            )
        )
        out.append(
            (
                None if v is None else v >= limit,
                f"L sgd: {impl} at {'n/a' if v is None else f'{100 * v:.0f}%'} of the NumPy "
                f"matmul peak at the step's shapes (target >= {100 * limit:.0f}%){extra}",
            )
        )
    for cfg, limit in (("S", 1.25), ("M", 1.10), ("L", 1.10)):
        for opt in ("sgd", "adam"):
            v = ratio(cfg, opt, "tinynet-torch", "torch-eager")
            out.append(
                (
                    None if v is None else v <= limit,
                    f"{cfg} {opt}: tinynet-torch / torch-eager = "
                    f"{'n/a' if v is None else f'{v:.3f}'} (target <= {limit:.2f})"
                    + paired(cfg, opt, "tinynet-torch", "torch-eager"),
                )
            )
    for opt in ("sgd", "adam"):
        v = ratio("S", opt, "tinynet-torch-fit-compiled", "torch-eager")
        out.append(
            (
                None if v is None else v < 1.0,
                f"S {opt}: tinynet-torch fit per step, compiled / torch-eager = "
                f"{'n/a' if v is None else f'{v:.3f}'} (target < 1)",
            )
        )
    for opt in ("sgd", "adam"):
        for ref, share in (("keras-fit", 3), ("torch-eager", 5)):
            v = ratio("S", opt, "tinynet-jax-fit", ref)
            out.append(
                (
                    None if v is None else v <= 1 / share,
                    f"S {opt}: tinynet-jax fit per step / {ref} = "
                    f"{'n/a' if v is None else f'1/{1 / v:.1f}'} (target <= 1/{share})",
                )
            )
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `tinynet bench -- --quick` passes the separator through
        argv = argv[1:]
    args = parse_args(argv)
    _limits = bl.setup_environment(args.device, args.threads)  # noqa: F841 (kept alive)
    import refs

    if args.list:
        for impl in refs.IMPLS.values():
            print(f"{impl.name:16s} {impl.description}")
        return 0
    configs = [bl.CONFIGS[c] for c in bl.parse_list(args.configs, list(bl.CONFIGS), "config")]
    opts = [
        bl.OPTIMIZERS[o] for o in bl.parse_list(args.optimizers, list(bl.OPTIMIZERS), "optimizer")
    ]
    impls, skipped = select_impls(args, refs)
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    log("implementations: " + ", ".join(i.name for i in impls))

    from refs.gemm_floor import peak_1024

    if args.wait_quiet > 0:
        bl.wait_for_quiet(args.wait_quiet)
    peak_before = peak_1024(args.device)
    load_before = os.getloadavg()
    all_results, skipped_builds = [], {}
    for config in configs:
        entries, others = bench_config(config, impls, opts, args, refs, skipped_builds)
        all_results.append((config, entries, others))
    peak_after = peak_1024(args.device)
    peak = max(peak_before["gflops_median"], peak_after["gflops_median"])

    info = bl.machine_info()
    print(
        f"\nmachine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs; "
        f"numpy {info['numpy']}, "
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
        f"float32 matmul peak 1024^3 ({peak_before['library']}): "
        f"{peak_before['gflops_median']:.1f} "
        f"GFLOP/s before, {peak_after['gflops_median']:.1f} after (using {peak:.1f})"
    )
    rounds = args.rounds or (3 if args.quick else 7)
    print(
        f"median over {rounds} interleaved blocks"
        + (", OpenBLAS threads ended before each" if args.park else "")
        + (f", {args.settle} s idle before each" if args.settle else "")
        + "; "
        "spread = ±half of (max-min)/median over blocks"
    )
    results, load = [], {}
    for config, entries, others in all_results:
        res = summarize(config, entries, peak)
        print_config(config, res, peak)
        load[config.name] = others
        print(bl.load_line(entries, others))
        results += res

    print("\n== targets ==")
    check_list = checks(results)
    for ok, text in check_list:
        print("SKIP  " + text if ok is None else bl.check_line(ok, text))
    if skipped or skipped_builds:
        print(
            "\nnot run: "
            + "; ".join(f"{k} ({v})" for k, v in {**skipped, **skipped_builds}.items())
        )

    if args.json:
        bl.write_json(
            args.json,
            {
                "benchmark": "train_step",
                "machine": info,
                "settings": {
                    "configs": [c.name for c in configs],
                    "optimizers": [o.__dict__ for o in opts],
                    "impls": [i.name for i in impls],
                    "rounds": rounds,
                    "quick": args.quick,
                    "device": args.device,
                    "block_scale": args.block_scale,
                    "threads": args.threads,
                    "park_blas_threads": args.park,
                    "settle_s": args.settle,
                    "flops_note": "2*m*k*n per matmul: forward 1 per layer, backward 2 per "
                    "layer except no input gradient for the first layer",
                },
                "config_flops": {c.name: c.flops() for c in configs},
                "peak_1024": {"before": peak_before, "after": peak_after, "used_gflops": peak},
                "others_cpu_fraction": load,
                "results": results,
                "checks": [{"pass": ok, "text": text} for ok, text in check_list],
                "skipped": {**skipped, **skipped_builds},
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
