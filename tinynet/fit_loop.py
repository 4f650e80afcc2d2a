"""One ``fit`` call's epochs: the compiled steps, the per-epoch loop, the
progress bar and the NaN guard (see :func:`tinynet.training.fit`).

On a compiling backend (JAX) a step slices its own batch out of the whole
data set by a device-side counter, so an epoch is one dispatch per step (or
per ``steps_per_execution`` steps) with no host work between them.  On eager
backends each step gathers its batch's rows and calls the bare step.  The
loss and metric sums stay on the device and are read at most
``SYNCS_PER_EPOCH`` times per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import backends

from . import core, random

SYNCS_PER_EPOCH = 10


def metric_for(model: Any, loss: Any):
    from . import metrics

    fused = core.fused_head(model.layers, loss) is not None
    return metrics.for_loss(loss, from_logits=fused or getattr(loss, "from_logits", False))


class FitLoop:
    """One fit call's compiled steps and its per-epoch loop."""

    def __init__(
        self, model, loss, batch_size, steps_per_execution, nan_guard, seed, shuffle, parallel=None
    ):
        self.model = model
        self.parallel = parallel
        self.backend = model.backend
        self.batch_size = batch_size
        self.steps_per_execution = steps_per_execution
        self.nan_guard = nan_guard
        self.shuffle = shuffle
        self.run_key = self._place(random.key(seed, self.backend))
        self.has_key = any(layer.needs_key for layer in model.layers)
        self.metric = metric_for(model, loss)
        self.loss = loss
        self.interrupted = False
        self.nan_report: str | None = None
        optimizer = model.optimizer
        cache_key = ("fit", loss, id(optimizer), optimizer, self.metric is not None, parallel)
        self.fit_step = model._cached(
            cache_key, lambda: core.make_fit_step(model.layers, loss, optimizer, self.metric)
        )
        self._jitted: dict[Any, Any] = model._cached(cache_key + ("jitted",), dict)

    # Steps, compiled once per batch size (the ragged last batch compiles once).
    def _step(self, size: int, block: int):
        fn = self._jitted.get((size, block, self.nan_guard))
        if fn is None:
            backend = self.backend
            shard = self.parallel.shard_batch if self.parallel is not None else None
            one = core.make_indexed_step(self.fit_step, size, self.batch_size, self.has_key, shard)
            if block == 1:
                body = one
            else:

                def body(params, opt_state, sums, i, x, y, order, key):
                    return backend.fori_loop(
                        block,
                        lambda carry: one(*carry, x, y, order, key),
                        (params, opt_state, sums, i),
                    )

            # With the NaN guard the step's inputs must survive it (no donation).
            donate = () if self.nan_guard else (0, 1, 2)
            fn = backend.jit(body, donate_argnums=donate)
            self._jitted[(size, block, self.nan_guard)] = fn
        return fn

    def _place(self, tree):
        """With data parallelism every input of the compiled step must live on
        the device mesh (replicated), not on the single default device."""
        return tree if self.parallel is None else self.parallel.replicate(tree)

    def _epoch_setup(self, n: int):
        """``(row order, step key)`` of an epoch, one compiled call on JAX."""
        fn = self._jitted.get(("setup", n, self.shuffle))
        if fn is None:
            shuffle, has_key = self.shuffle, self.has_key

            def setup(run_key, epoch):
                xp = backends.namespace(run_key)
                epoch_key = random.fold_in(run_key, epoch)
                if shuffle:
                    order = random.permutation(random.fold_in(epoch_key, 0x5EED), n)
                else:
                    order = xp.arange(n, dtype=xp.int64)
                return order, (random.fold_in(epoch_key, 0xD0) if has_key else None)

            fn = self._jitted[("setup", n, self.shuffle)] = self.backend.jit(setup)
        return fn

    def run_epoch(self, x, y, epoch, verbose, interrupt) -> dict[str, float]:
        model, backend, xp = self.model, self.backend, self.backend.xp
        n, bs = x.shape[0], self.batch_size
        n_full, last = divmod(n, bs)
        n_steps = n_full + (1 if last else 0)
        order, step_key = self._epoch_setup(n)(self.run_key, epoch)
        # made on the model's device like the params, so the first compiled
        # call sees the same input placement as every later one (no recompile)
        sums = self._place((backend.asarray(0.0, model.dtype), backend.asarray(0.0, model.dtype)))
        bar = _progress(verbose, n_steps, epoch)
        sync_every = max(1, n_steps // SYNCS_PER_EPOCH)
        params, opt_state = model.params, model.opt_state
        done = 0
        if backend.compiles:
            i = self._place(backend.asarray(0, "int32"))
            block = 1 if self.nan_guard else self.steps_per_execution
            while done < n_steps and not interrupt["hit"]:
                if done + block <= n_full and block > 1:
                    fn, advance = self._step(bs, block), block
                elif done < n_full:
                    fn, advance = self._step(bs, 1), 1
                else:
                    fn, advance = self._step(last, 1), 1
                before = (params, opt_state) if self.nan_guard else None
                params, opt_state, sums, i = fn(params, opt_state, sums, i, x, y, order, step_key)
                done += advance
                model.params, model.opt_state, model.step = params, opt_state, model.step + advance
                if self.nan_guard and self._bad(sums, before, epoch, done, x, y, order, step_key):
                    break
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(
                        bar,
                        advance if done % sync_every else sync_every,
                        sums,
                        done,
                        n,
                        bs,
                        self.metric,
                    )
        else:
            step = self.fit_step
            for s in range(n_steps):
                if interrupt["hit"]:
                    break
                a, b = s * bs, min(s * bs + bs, n)
                if self.shuffle:
                    # gather one batch at a time: it is still in cache for the step
                    rows = order[a:b]
                    xb, yb = xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)
                else:
                    xb, yb = x[a:b, ...], y[a:b, ...]
                k = random.fold_in(step_key, s) if step_key is not None else None
                before = (params, opt_state) if self.nan_guard else None
                params, opt_state, sums = step(params, opt_state, sums, xb, yb, k)
                done += 1
                model.params, model.opt_state = params, opt_state
                model.step += 1
                if self.nan_guard and self._bad(
                    sums, before, epoch, done, x, y, order if self.shuffle else None, step_key
                ):
                    break
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(
                        bar,
                        sync_every if done % sync_every == 0 else done % sync_every,
                        sums,
                        done,
                        n,
                        bs,
                        self.metric,
                    )
        if bar is not None:
            bar.close()
        self.interrupted = interrupt["hit"] and done < n_steps
        seen = min(done * bs, n)
        logs = {"loss": float(backend.to_numpy(sums[0])) / max(seen, 1)}
        if self.metric is not None:
            per = self.metric.per_batch((seen,) + tuple(y.shape[1:])) if seen else 1
            logs["accuracy"] = float(backend.to_numpy(sums[1])) / max(per, 1)
        return logs

    def _params_finite(self) -> bool:
        xp = self.backend.xp
        flags = [xp.all(xp.isfinite(v)) for p in self.model.params for v in p.values()]
        return bool(xp.all(xp.stack(flags))) if flags else True

    def _bad(self, sums, before, epoch, done, x, y, order, key) -> bool:
        value = float(self.backend.to_numpy(sums[0]))
        if math.isfinite(value) and self._params_finite():
            return False
        what = "loss" if not math.isfinite(value) else "parameters after the update"
        from .diagnostics import first_nonfinite

        params, opt_state = before
        self.model.params, self.model.opt_state = params, opt_state
        self.model.step -= 1
        where = first_nonfinite(
            self.model, self.loss, x, y, order, done - 1, self.batch_size, step_key=key
        )
        self.nan_report = (
            f"non-finite {what} at epoch {epoch + 1}, step {done} ({where}); "
            "training stopped and the parameters from before that step were kept"
        )
        return True


def _progress(verbose: int, total: int, epoch: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}", unit="step", leave=False, mininterval=0.2)


def _update(bar, advance, sums, done, n, bs, metric) -> None:
    seen = min(done * bs, n)
    post = {}
    loss_sum = float(backends.backend_of(sums[0]).to_numpy(sums[0]))
    post["loss"] = f"{loss_sum / seen:.4f}"
    if metric is not None and metric.kind != "binary":
        correct = float(backends.backend_of(sums[1]).to_numpy(sums[1]))
        post["acc"] = f"{correct / seen:.4f}"
    bar.set_postfix(post, refresh=False)
    bar.update(advance)
