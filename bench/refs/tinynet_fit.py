"""tinynet's ``fit`` timed exactly like the ``keras-fit`` reference: a block
of N steps is one ``model.fit`` call (``epochs=1``, ``shuffle=False``,
``verbose=0``, defaults otherwise) over a fixed data set of N copies of the
batch, so the per-step time includes fit's own per-step work and its fixed
per-call cost divided by N ("fit per-step time", comparable with Keras').

One difference: tinynet's compiled block of steps (``ops.run_block``) takes
the whole data set as an argument, so each data-set *shape* compiles once
(Keras compiles per batch shape).  So that timed blocks do not include a compile, the runner keeps a
data set of ``k`` batches, ``k`` = half the warm-up's ``2 x block`` steps,
and runs ``n // k`` epochs over it when ``k`` divides ``n`` (one epoch for
a timed block: exactly Keras' protocol).

``compile_steps=True`` (torch): ``fit`` runs ``torch.compile``'d steps, as
with ``TINYNET_TORCH_COMPILE=1`` (switched on for this runner's calls only;
the warm-up pays the compilation)."""

from __future__ import annotations

import numpy as np

from .tinynet_impl import backend_for, build_model, fresh_params

__all__ = ["Runner", "backend_for"]


class Runner:
    def __init__(
        self, config, opt, x, y, params, device="cpu", backend_name="jax", compile_steps=None
    ):
        model, loss, optimizer = build_model(config, backend_name, None, opt)
        self.compile_steps = compile_steps
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.backend = model.backend
        self.params_np, self.x, self.y, self.batch = params, x, y, config.batch
        self._data: dict[int, tuple] = {}
        self._k: int | None = None
        self.reset()

    def _dataset(self, n: int) -> tuple:
        data = self._data.get(n)
        if data is None:
            backend = self.backend
            data = self._data[n] = (
                backend.asarray(np.tile(self.x, (n, 1))),
                backend.asarray(np.tile(self.y, n)),
            )
        return data

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        self.model.params = fresh_params(self.model, self.params_np)
        self.model.optimizer = self.optimizer  # fit(optimizer=None) continues with it
        self.model.opt_state = self.optimizer.init(self.model.params)

    def run(self, n: int) -> float:
        if self._k is None and n > 1 and n % 2 == 0:
            self._k = n // 2  # the warm-up's 2 x block
        k = self._k if self._k is not None and n % self._k == 0 else n
        x, y = self._dataset(k)
        ops = self.backend
        if self.compile_steps is not None:
            before, ops.compile_steps = ops.compile_steps, self.compile_steps
        try:
            history = self.model.fit(
                x, y, loss=self.loss, batch_size=self.batch, epochs=n // k, shuffle=False, verbose=0
            )
        finally:
            if self.compile_steps is not None:
                ops.compile_steps = before
        return float(history.history["loss"][-1])
