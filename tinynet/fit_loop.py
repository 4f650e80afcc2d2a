"""One ``fit`` call's epochs: the compiled steps, the per-epoch loop, the
progress bar and the NaN guard (see :func:`tinynet.training.fit`).

On a compiling backend (JAX) a step slices its own batch out of the whole
data set by a device-side counter, so steps need no host work between them.
By default (``steps_per_execution="auto"``) one compiled loop runs all the
full batches between two progress-bar reads (at most ``SYNCS_PER_EPOCH``
calls per epoch), or all of an epoch's full batches when there is no bar,
plus one call for the ragged last batch.  The loop's trip count is an
argument of the program, so one compilation serves every block length, also
for an integer ``steps_per_execution`` (blocks of that many steps, the rest
of the epoch's full batches in one more call; Keras's option).  On eager
backends each step gathers its batch's rows and calls the bare step.  The
loss and metric sums stay on the device and are read at most
``SYNCS_PER_EPOCH`` times per epoch.  The NaN guard is compiled into the
step on JAX (:func:`_guarded`: one status read per call); eager backends
check on the host after every step.
"""

from __future__ import annotations

import math
from typing import Any

import backends

from . import core, random
from .tree import tree_map

SYNCS_PER_EPOCH = 10
# A compiling backend puts a shuffled data set into the epoch's order with one
# gather per epoch, so each step slices its batch instead of gathering it,
# where that pays: XLA's CPU gather costs ~15 us per step on top of moving
# the rows, which matters for narrow batches (S: 300 x 2 floats, fit 100 ->
# 60 us per step) but not wide ones (M: 128 x 784 floats, gather and slice
# steps both ~0.92 ms; the extra pass over the data cost ~7% of an epoch).
# The copy costs device memory the size of x and y, hence the second limit.
PERMUTE_MAX_BATCH_BYTES = 64 * 2**10  # x and y of one batch
PERMUTE_MAX_BYTES = 64 * 2**20  # x and y of the data set


def _setup(run_key, epoch, n: int, shuffle: bool, has_key: bool, need_order: bool = True) -> tuple:
    """An epoch's ``(row order, step key or None)`` from the fit's key; the
    order is None when not shuffling and not ``need_order`` (the steps then
    take their rows in place)."""
    xp = backends.namespace(run_key)
    epoch_key = random.fold_in(run_key, epoch)
    if shuffle:
        order = random.permutation(random.fold_in(epoch_key, 0x5EED), n)
    elif need_order:
        order = xp.arange(n, dtype=xp.int64)
    else:
        order = None
    return order, (random.fold_in(epoch_key, 0xD0) if has_key else None)


# The loss/metric sums' zeros and the step counter's 0 that every fit call
# starts from, per (backend, device, dtype): made once, not per call (each is
# a transfer to the device; the compiled steps never donate them).
_ZEROS: dict[tuple, tuple] = {}


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
        # An epoch's row order and step key come from tinynet.random, which is
        # bit-identical on every backend, so they can be made where it is
        # cheapest (see _epoch_setup).
        self.run_key = random.key(seed, "numpy")
        self._ahead: tuple | None = None  # (epoch, n, setup) made while the device worked
        self.has_key = any(layer.needs_key for layer in model.layers)
        # A shuffled fit call on a compiling backend also makes the order of
        # the epoch after its last (see keep_ahead): the next call, if it
        # continues with the same seed and data size, finds it ready.
        self._ident = ("fit-ahead", seed, shuffle, self.has_key)
        if parallel is None:
            kept = model._compiled.pop("fit-ahead", None)
            if kept is not None and kept[0] == self._ident:
                self._ahead = kept[1]
        self._counts: dict[int, Any] = {}  # trip counts of the compiled loop
        # the sums' and step counter's start values, reused every epoch (the
        # compiled steps do not donate them)
        self._zeros: tuple | None = None
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
        # Eager backends: the step owns params and optimizer state like the
        # donating compiled step, so NumPy's fused kernels update them in
        # place; the NaN guard keeps a copy from before each step (_keep).
        eager = not self.backend.compiles
        self.eager_step = self.backend.jit(self.fit_step, donate_argnums=(0, 1)) if eager else None
        self._copy_before_step = (
            nan_guard and eager and optimizer.updates_in_place(self.backend.kernels)
        )
        self._kept: list = []  # the copy's buffers, reused every step

    # Steps, compiled once per batch size (the ragged last batch compiles once).
    # ``looped``: a loop over steps whose trip count is the call's argument
    # after ``i`` (one program for every block length), else a single step.
    def _step(self, size: int, looped: bool, contiguous: bool):
        fn = self._jitted.get((size, looped, contiguous, self.nan_guard))
        if fn is None:
            backend = self.backend
            shard = self.parallel.shard_batch if self.parallel is not None else None
            one = core.make_indexed_step(
                self.fit_step, size, self.batch_size, self.has_key, shard, contiguous
            )
            if self.nan_guard:
                one = _guarded(one)

            def loop(params, opt_state, sums, i, *rest):
                *carry_rest, count, x, y, order, key = rest  # carry_rest: (status,) when guarded
                return backend.fori_loop(
                    count,
                    lambda carry: one(*carry, x, y, order, key),
                    (params, opt_state, sums, i, *carry_rest),
                )

            body = loop if looped else one
            fn = backend.jit(body, donate_argnums=(0, 1))
            self._jitted[(size, looped, contiguous, self.nan_guard)] = fn
        return fn

    def _in_epoch_order(self, x, y, order) -> tuple:
        """``(x, y, order)`` for the compiled steps: with ``order`` None the
        rows are already in the epoch's order (not shuffled, or permuted here
        by one compiled gather: see ``PERMUTE_MAX_BATCH_BYTES``), so each step
        slices its batch; else each step gathers its rows by ``order``."""
        if self.parallel is not None:  # the sharded data set stays where it is
            return x, y, order
        if not self.shuffle:
            return x, y, None
        total = x.size * x.dtype.itemsize + y.size * y.dtype.itemsize
        batch = total * min(self.batch_size, x.shape[0]) // max(x.shape[0], 1)
        if batch > PERMUTE_MAX_BATCH_BYTES or total > PERMUTE_MAX_BYTES:
            return x, y, order
        permute = self._jitted.get("permute")
        if permute is None:
            xp = self.backend.xp
            permute = self._jitted["permute"] = self.backend.jit(
                lambda x, y, order: (xp.take(x, order, axis=0), xp.take(y, order, axis=0))
            )
        return (*permute(x, y, order), None)

    def _place(self, tree):
        """With data parallelism every input of the compiled step must live on
        the device mesh (replicated), not on the single default device."""
        return tree if self.parallel is None else self.parallel.replicate(tree)

    def _epoch_setup(self, epoch: int, n: int) -> tuple:
        """``(row order, step key)`` of an epoch, on the model's device.

        Made by NumPy on the host: on JAX, :meth:`run_epoch` makes the next
        epoch's while the device still runs this one.  (A compiled version
        was tried for small data sets: ~30 us instead of ~250 us per epoch,
        but its Threefry and sort took 1.6 s to compile, more than a short
        run saves; XLA's CPU sort is also slower, 30k rows: 2 ms vs 0.9 ms.)
        """
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (epoch, n):
            return ahead[2]
        backend = self.backend
        # unshuffled, only data-parallel runs use the order (they gather)
        order, step_key = _setup(
            self.run_key, epoch, n, self.shuffle, self.has_key, self.parallel is not None
        )
        return self._place(
            (
                None if order is None else backend.asarray(order),
                None if step_key is None else backend.asarray(step_key),
            )
        )

    def _prepare(self, epoch: int, n: int) -> None:
        """Make epoch ``epoch``'s setup now, to be picked up when it starts."""
        self._ahead = (epoch, n, self._epoch_setup(epoch, n))

    def keep_ahead(self) -> None:
        """At the end of the call: leave an order made for the epoch after
        the last on the model, for the next fit call (a model's repeated
        one-epoch fit calls then shuffle at no cost: 90k rows ~2 ms each)."""
        if self._ahead is not None and self.parallel is None:
            self.model._compiled["fit-ahead"] = (self._ident, self._ahead)

    def next_epoch_ahead(self, epoch: int, last: bool) -> int | None:
        """The epoch whose order to make while the device runs ``epoch``: the
        next one of this call, or after the call's last epoch the one a next
        call would start with (shuffled runs on a compiling backend only)."""
        if not last:
            return epoch + 1
        if self.shuffle and self.backend.compiles and self.parallel is None:
            return epoch + 1
        return None

    def run_epoch(self, x, y, epoch, verbose, interrupt, upcoming=None) -> dict[str, float]:
        """One epoch; ``upcoming``: the epoch this fit call runs next, if any
        (its shuffle is prepared while the device works on this one)."""
        model, backend, xp = self.model, self.backend, self.backend.xp
        n, bs = x.shape[0], self.batch_size
        n_full, last = divmod(n, bs)
        n_steps = n_full + (1 if last else 0)
        order, step_key = self._epoch_setup(epoch, n)
        # made on the model's device like the params, so the first compiled
        # call sees the same input placement as every later one (no recompile)
        if self._zeros is None:
            cache = (backend.name, str(backend.device), model.dtype)
            zeros = _ZEROS.get(cache) if self.parallel is None else None
            if zeros is None:
                zero = backend.asarray(0.0, model.dtype)
                zeros = self._place(((zero, zero), backend.asarray(0, "int32")))
                if self.parallel is None:
                    _ZEROS[cache] = zeros
            self._zeros = zeros
        sums = self._zeros[0]
        bar = _progress(verbose, n_steps, epoch)
        sync_every = max(1, n_steps // SYNCS_PER_EPOCH)
        params, opt_state = model.params, model.opt_state
        done = 0
        if backend.compiles:
            i = self._zeros[1]
            x, y, rows = self._in_epoch_order(x, y, order)
            contiguous = rows is None
            # the NaN guard's status (see _guarded), read after every call
            guard = (self._zeros[1],) if self.nan_guard else ()
            block = self.steps_per_execution
            if block == "auto":
                # every full batch up to the next progress read in one call (all
                # of them without a bar: nothing reads the sums before the end)
                block = sync_every if bar is not None else n_full
            while done < n_steps and not interrupt["hit"]:
                args = (x, y, rows, step_key)
                if done < n_full and block > 1:
                    advance = min(block - done % block, n_full - done)
                    count = self._counts.get(advance)
                    if count is None:
                        count = self._counts[advance] = self._place(
                            backend.asarray(advance, "int32")
                        )
                    fn, args = self._step(bs, True, contiguous), (count, *args)
                elif done < n_full:
                    fn, advance = self._step(bs, False, contiguous), 1
                else:
                    fn, advance = self._step(last, False, contiguous), 1
                params, opt_state, sums, i, *guard = fn(params, opt_state, sums, i, *guard, *args)
                # JAX dispatches asynchronously: prepare the next epoch's order on
                # the host while the device works (after the first call if the bar
                # syncs every call, else after the last, when most work is queued)
                if (
                    upcoming is not None
                    and (bar is not None or done + advance >= n_steps)
                ):
                    self._prepare(upcoming, n)
                    upcoming = None
                status = int(backend.to_numpy(guard[0])) if self.nan_guard else 0
                if status:
                    advance = int(backend.to_numpy(i)) - done  # the steps before the bad one
                    model.params, model.opt_state = params, opt_state
                    model.step += advance
                    done += advance
                    self._report(status == 1, epoch, done + 1, x, y, rows, step_key)
                    break
                done += advance
                model.params, model.opt_state, model.step = params, opt_state, model.step + advance
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(bar, done - bar.n, sums, done, n, bs, self.metric)
        else:
            step = self.eager_step
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
                before = self._keep(params, opt_state) if self.nan_guard else None
                params, opt_state, sums = step(params, opt_state, sums, xb, yb, k)
                done += 1
                model.params, model.opt_state = params, opt_state
                model.step += 1
                if self.nan_guard and self._bad(
                    sums, before, epoch, done, x, y, order if self.shuffle else None, step_key
                ):
                    break
                if bar is not None and (done % sync_every == 0 or done == n_steps):
                    _update(bar, done - bar.n, sums, done, n, bs, self.metric)
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
        # a NaN/Inf anywhere makes the sum of sums non-finite: one read of
        # one number; only an overflowing sum needs the elementwise check
        xp = self.backend.xp
        leaves = [v for p in self.model.params for v in p.values()]
        if not leaves:
            return True
        with self.backend.ignore_fp_errors():
            if bool(xp.isfinite(sum(xp.sum(v) for v in leaves))):
                return True
        return all(bool(xp.all(xp.isfinite(v))) for v in leaves)

    def _keep(self, params, opt_state) -> tuple:
        """``(params, opt_state)`` as they are before an eager step, for the
        NaN guard to put back.  Where the step updates them in place (NumPy's
        kernels) that is a copy, written into the same buffers every step
        (a memcpy costs less than giving up the in-place update); elsewhere
        the step makes new arrays, so the references do."""
        if not self._copy_before_step:
            return params, opt_state
        old, leaves = self._kept, []

        def copy(a):
            b = old[len(leaves)] if len(leaves) < len(old) else None
            if b is None or b is a or b.shape != a.shape or b.dtype != a.dtype:
                b = a.copy()
            else:
                b[...] = a
            leaves.append(b)
            return b

        kept = tree_map(copy, (params, opt_state))
        self._kept = leaves
        return kept

    def _bad(self, sums, before, epoch, done, x, y, order, key) -> bool:
        """The eager backends' NaN guard, after step ``done`` (1-based) of an
        epoch: if its loss or new parameters are non-finite, put back
        ``before`` (the params and state from before it) and report."""
        value = float(self.backend.to_numpy(sums[0]))
        if math.isfinite(value) and self._params_finite():
            return False
        params, opt_state = before
        self.model.params, self.model.opt_state = params, opt_state
        self.model.step -= 1
        self._report(not math.isfinite(value), epoch, done, x, y, order, key)
        return True

    def _report(self, bad_loss: bool, epoch, done, x, y, order, key) -> None:
        """Name the first non-finite value of step ``done`` (1-based) of an
        epoch, run again eagerly from the model's current params (those from
        before that step)."""
        from .diagnostics import first_nonfinite

        what = "loss" if bad_loss else "parameters after the update"
        where = first_nonfinite(
            self.model, self.loss, x, y, order, done - 1, self.batch_size, step_key=key
        )
        self.nan_report = (
            f"non-finite {what} at epoch {epoch + 1}, step {done} ({where}); "
            "training stopped and the parameters from before that step were kept"
        )


def _guarded(one):
    """The NaN guard of a compiled step: ``one`` with a status after the step
    counter (int32: 0 fine, 1 non-finite loss, 2 non-finite params after the
    update).  A step that goes non-finite, and every step after it, leaves
    params, state, sums and counter as they were and sets the status, so the
    host reads one number per call instead of the loss after every step; the
    params kept are those from before the bad step, whose index is the
    counter."""

    def guarded(params, opt_state, sums, i, status, *data):
        new_params, new_state, new_sums, new_i = one(params, opt_state, sums, i, *data)
        xp = backends.namespace(new_sums[0])
        params_ok = None
        for layer in new_params:
            for p in layer.values():
                finite = xp.all(xp.isfinite(p))
                params_ok = finite if params_ok is None else params_ok & finite
        new_status = xp.where(
            xp.isfinite(new_sums[0]), 0 if params_ok is None else xp.where(params_ok, 0, 2), 1
        )
        status = xp.where(status == 0, xp.astype(new_status, status.dtype), status)
        good = status == 0

        def pick(new, old):
            return xp.where(good, new, old)

        return (
            tree_map(pick, new_params, params),
            tree_map(pick, new_state, opt_state),
            tree_map(pick, new_sums, sums),
            pick(new_i, i),
            status,
        )

    return guarded


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
