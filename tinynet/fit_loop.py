"""One ``fit`` call's epochs: blocks of steps, the progress bar, the NaN guard
(see docs/DESIGN.md, section 5)."""

from __future__ import annotations

import math
from typing import Any

from . import core, random

SYNCS_PER_EPOCH = 10


def _float(ops: Any, a: Any) -> float:
    return float(ops.to_numpy(a))  # exact: float32 -> 64


def mean_logs(ops: Any, metric: Any, sums: tuple, seen: int, y: Any) -> dict[str, float]:
    """Mean loss (and accuracy) of ``seen`` rows from the device sums; NaN if none."""
    logs = {"loss": _float(ops, sums[0]) / seen if seen else math.nan}
    if metric is not None:
        per = metric.per_batch((seen, *y.shape[1:])) if seen else 0
        logs["accuracy"] = _float(ops, sums[1]) / per if per else math.nan
    return logs


def metric_for(model: Any, loss: Any):
    from . import metrics

    fused = core.fused_head(model.layers, loss) is not None
    return metrics.for_loss(loss, from_logits=fused or getattr(loss, "from_logits", False))


def epoch_setup(run_key: Any, epoch: int, n: int, shuffle: bool, has_key: bool) -> tuple:
    """An epoch's ``(row order or None, step key or None)`` from the fit's key, as
    host NumPy arrays; step ``s`` draws with ``fold_in(step_key, s)``."""
    epoch_key = random.fold_in(run_key, epoch)
    order = random.permutation(random.fold_in(epoch_key, 0x5EED), n) if shuffle else None
    return order, (random.fold_in(epoch_key, 0xD0) if has_key else None)


class FitLoop:
    """One fit call's compiled blocks and its per-epoch loop."""

    def __init__(
        self, model, loss, batch_size, steps_per_execution, nan_guard, seed, shuffle, parallel=None
    ):
        self.model = model
        self.ops = model.backend
        self.parallel = parallel
        self.batch_size = batch_size
        self.steps_per_execution = steps_per_execution
        self.nan_guard = nan_guard
        self.shuffle = shuffle
        self.seed = seed
        self.run_key = random.key(seed, "numpy")
        self.has_key = any(layer.needs_key for layer in model.layers)
        self.metric = metric_for(model, loss)
        self.loss = loss
        self.nan_report: str | None = None
        optimizer = model.optimizer
        cache_key = ("fit", loss, id(optimizer), optimizer, self.metric is not None, parallel)
        self.fit_step = model._cached(
            cache_key,
            lambda: core.make_fit_step(model.layers, loss, optimizer, model.backend, self.metric),
        )
        self._blocks: dict[Any, Any] = model._cached(cache_key + ("blocks",), dict)

    def _step(self, size: int, shuffled: bool) -> tuple:
        """``(step, guard)`` for batches of ``size`` rows: ``step((params, state,
        opt_state, sums, i), (x, y, order, key))`` trains on batch ``i``."""
        cache = (size, shuffled, self.nan_guard)
        found = self._blocks.get(cache)
        if found is not None:
            return found
        ops, xp, stride = self.ops, self.ops.xp, self.batch_size
        fit_step, has_key = self.fit_step, self.has_key
        shard = self.parallel.shard_batch if self.parallel is not None else None

        def step(carry, data):
            params, state, opt_state, sums, i = carry
            x, y, order, key = data
            start = i * stride
            if shuffled:
                rows = ops.rows(order, start, size)
                xb, yb = xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)
            else:
                xb, yb = ops.rows(x, start, size), ops.rows(y, start, size)
            if shard is not None:
                xb, yb = shard(xb), shard(yb)
            k = random.fold_in(key, i) if has_key else None
            params, state, opt_state, sums = fit_step(params, state, opt_state, sums, xb, yb, k)
            return params, state, opt_state, sums, i + 1

        def guard(carry):  # 0 fine, 1 non-finite loss, 2 non-finite params after the update
            bad_loss = xp.astype(~xp.isfinite(carry[3][0]), xp.int32)
            leaves = [p for layer in carry[0] for p in layer.values()]
            bad_params = xp.astype(~ops.all_finite(leaves), xp.int32)
            return bad_loss + 2 * bad_params * (1 - bad_loss)

        found = self._blocks[cache] = (step, guard if self.nan_guard else None)
        return found

    def where(self, n: int) -> dict:
        """What an epoch's batches depend on besides its number."""
        return {"n": n, "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed}

    def run_epoch(
        self, x, y, epoch: int, verbose: int, interrupt: dict, resume: dict | None = None
    ) -> dict[str, float]:
        """One epoch's logs (means over the steps taken), continuing after the
        ``resume`` progress if given; interrupted, it leaves ``self.progress``."""
        model, ops = self.model, self.ops
        n, bs = x.shape[0], self.batch_size
        n_full, last = divmod(n, bs)
        n_steps = n_full + (1 if last else 0)
        order, step_key = epoch_setup(self.run_key, epoch, n, self.shuffle, self.has_key)
        done = resume["step"] if resume else 0
        sums = (resume["loss_sum"], resume["metric_sum"]) if resume else (0.0, 0.0)
        placed = (
            None if order is None else ops.asarray(order),
            None if step_key is None else ops.asarray(step_key),
            tuple(ops.asarray(v, model.dtype) for v in sums),  # donated: 2 buffers
            ops.asarray(done, "int32"),
        )
        if self.parallel is not None:  # every input of a block on the device mesh
            placed = self.parallel.replicate(placed)
        order, step_key, sums, i = placed
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=n_steps, desc=f"epoch {epoch + 1}", unit="step", leave=False, mininterval=0.2
            )
        sync_every = max(1, n_steps // SYNCS_PER_EPOCH)
        block = self.steps_per_execution
        if block == "auto":
            block = sync_every if bar is not None else n_full
        carry = (model.params, model.state, model.opt_state, sums, i)
        stop = lambda: interrupt["hit"]  # noqa: E731  (eager backends check between steps)
        while done < n_steps and not interrupt["hit"]:
            if done < n_full:
                size, advance = bs, min(block - done % block, n_full - done)
            else:
                size, advance = last, 1
            step, guard = self._step(size, self.shuffle)
            data = (x, y, order, step_key)
            carry, status = ops.run_block(step, advance, carry, data, guard, stop)
            if not isinstance(status, int):  # a device's 0-d array (a NaN-guarded block)
                status = int(ops.to_numpy(status))
            if status or interrupt["hit"]:  # fewer steps than asked for may have run
                advance = int(ops.to_numpy(carry[4])) - done
            model.params, model.state, model.opt_state = carry[:3]
            model.step += advance
            done += advance
            if status:  # name the first non-finite value, the step re-run eagerly
                from .diagnostics import first_nonfinite

                what = "loss" if status == 1 else "parameters after the update"
                where = first_nonfinite(model, self.loss, x, y, order, done, bs, step_key=step_key)
                self.nan_report = (
                    f"non-finite {what} at epoch {epoch + 1}, step {done + 1} ({where}); "
                    "training stopped and the parameters from before that step were kept"
                )
                break
            if bar is not None and (done % sync_every == 0 or done == n_steps):
                logs = mean_logs(ops, self.metric, carry[3], min(done * bs, n), y)
                post = {"loss": f"{logs['loss']:.4f}"}
                if self.metric is not None and self.metric.kind != "binary":
                    post["acc"] = f"{logs['accuracy']:.4f}"
                bar.set_postfix(post, refresh=False)
                bar.update(done - bar.n)
        if bar is not None:
            bar.close()
        self.interrupted = interrupt["hit"] and done < n_steps and self.nan_report is None
        self.progress: dict | None = None  # where an interrupted epoch stopped
        if self.interrupted and done:
            self.progress = {
                "step": done,
                "loss_sum": _float(ops, carry[3][0]),
                "metric_sum": _float(ops, carry[3][1]),
                **self.where(n),
            }
        return mean_logs(ops, self.metric, carry[3], min(done * bs, n), y)
