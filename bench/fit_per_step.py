"""``fit`` per-step time on the small model S (2-64-3, batch 300, Adam) per
backend, next to the bare compiled step: what a user of ``fit`` pays per step
on a model where dispatch and per-epoch work (the shuffle) dominate.

    python bench/fit_per_step.py [--samples 30000] [--epochs 10] [--json PATH]

Compare with Keras 3 ``fit`` per step from ``bench/train_step.py`` (keras-fit).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def measure(backend_name: str, samples: int, epochs: int, spe: int | str) -> dict:
    import tinynet as tn
    from tinynet import core

    backend = tn.get_backend(backend_name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 2)).astype(np.float32)
    y = rng.integers(0, 3, samples)
    layers = [tn.Dense(2, 64, init="he_uniform"), tn.ReLU(), tn.Dense(64, 3), tn.Softmax()]
    model = tn.Sequential(layers, seed=0, backend=backend_name)
    loss = "sparse_categorical_crossentropy"
    fit_args = dict(loss=loss, batch_size=300, verbose=0, steps_per_execution=spe)
    model.fit(x, y, optimizer=tn.optimizers.Adam(lr=1e-3), epochs=1, **fit_args)  # compile
    steps = epochs * (samples // 300)
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, **fit_args)
    backend.synchronize()
    fit_us = (time.perf_counter() - start) / steps * 1e6

    opt = tn.optimizers.Adam(lr=1e-3)
    step = backend.jit(
        core.make_train_step(model.layers, tn.losses.get(loss), opt), donate_argnums=(0, 1)
    )
    params = model.snapshot_params()
    state = opt.init(params)
    xb, yb = backend.asarray(x[:300]), backend.asarray(y[:300])
    for _ in range(10):
        params, state, value = step(params, state, xb, yb, None)
    backend.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        params, state, value = step(params, state, xb, yb, None)
    backend.synchronize()
    bare_us = (time.perf_counter() - start) / steps * 1e6
    return {
        "backend": backend_name,
        "steps_per_execution": spe,
        "fit_us": fit_us,
        "bare_step_us": bare_us,
        "ratio": fit_us / bare_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backends", default="numpy,jax")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.backends.split(","):
        for spe in ("auto", 1, 10) if name == "jax" else ("auto",):
            rows.append(measure(name, args.samples, args.epochs, spe))
            r = rows[-1]
            print(
                f"{name:6s} spe={spe!s:<4s} fit {r['fit_us']:7.1f} us/step   bare step "
                f"{r['bare_step_us']:7.1f} us   fit/bare {r['ratio']:.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
