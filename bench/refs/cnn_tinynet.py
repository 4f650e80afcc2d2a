"""tinynet's reference CNN: ``Sequential([Conv2D(32, 3), ReLU(),
MaxPool2D(2), Conv2D(64, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(128),
ReLU(), Dense(10)], input_shape=(28, 28, 1), dtype="float32", seed=0)``
with ``SparseCategoricalCrossentropy(from_logits=True)`` and ``Adam``.

The timed step is the one ``fit`` runs, as in ``refs/tinynet_impl.py``:
``ops.jit(core.make_train_step(layers, loss, optimizer, ops),
donate_argnums=(0, 2))`` called as ``step(params, state, opt_state, x, y,
None)`` with the backend's arrays (on JAX one compiled program with
parameters and optimizer state donated; on eager backends ``jit`` is the
identity; on PyTorch 2 intra-op threads, as ``refs/cnn_torch.py``).  The
model's parameters are replaced by the common ones (the layouts are
tinynet's own: conv ``W`` (kh, kw, c, filters)).  One module serves every
backend (numpy, jax, torch)."""

from __future__ import annotations

import os

LAYERS = ("Conv2D", "MaxPool2D", "Flatten")


def available(backend_name: str) -> tuple[bool, str]:
    """``(ok, why)``: does this tinynet have the layers and the backend?"""
    import tinynet as tn
    from tinynet import backends

    for name in LAYERS:
        if not hasattr(tn, name):
            return False, f"tinynet has no {name} yet"
    try:
        backend, why = backends.probe(backend_name)
    except ValueError as err:  # not a backend name in this tinynet
        return False, f"tinynet has no {backend_name} backend yet: {err}"
    if backend is None:
        return False, why
    return True, ""


def build_model(backend_name: str):
    """The model on ``backend_name`` with tinynet's own initial parameters."""
    import tinynet as tn

    layers = [
        tn.Conv2D(32, 3),
        tn.ReLU(),
        tn.MaxPool2D(pool_size=2),
        tn.Conv2D(64, 3),
        tn.ReLU(),
        tn.MaxPool2D(pool_size=2),
        tn.Flatten(),
        tn.Dense(128),
        tn.ReLU(),
        tn.Dense(10),
    ]
    return tn.Sequential(
        layers, input_shape=(28, 28, 1), dtype="float32", seed=0, backend=backend_name
    )


def fresh_params(model, params_np) -> list[dict]:
    """The model's parameter tree holding *copies* of ``params_np`` (a list
    of ``(W, b)``, one per layer with parameters, in the common layouts): a
    donated JAX step deletes its input buffers, and the initial values must
    survive every timed block."""
    import numpy as np

    backend, common, out = model.backend, iter(params_np), []
    for i, p in enumerate(model.params):
        if p:
            W, b = next(common)
            have = tuple(p["W"].shape), tuple(p["b"].shape)
            if have != (W.shape, b.shape):
                raise ValueError(
                    f"layer {i} ({type(model.layers[i]).__name__}) has W {have[0]} and b "
                    f"{have[1]}, the common parameters are {W.shape} and {b.shape}"
                )
            p = {
                "W": backend.asarray(np.array(W, dtype="float32")),
                "b": backend.asarray(np.array(b, dtype="float32")),
            }
        out.append(p)
    return out


def build_training(backend_name: str, opt):
    """``(model, loss, optimizer)``: the model, cross-entropy from the logits
    and Adam of the ``benchlib.OptSpec`` ``opt``; on PyTorch, the same
    intra-op threads as ``refs/cnn_torch.py``."""
    import tinynet as tn

    if backend_name == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
    loss = tn.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = tn.optimizers.Adam(
        lr=opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon
    )
    return build_model(backend_name), loss, optimizer


class Runner:
    def __init__(self, x, y, params, opt, backend_name="numpy"):
        from tinynet import core

        model, loss, self.optimizer = build_training(backend_name, opt)
        self.model = model
        self.backend = ops = model.backend
        step = core.make_train_step(model.layers, loss, self.optimizer, ops)
        self.step = ops.jit(step, donate_argnums=(0, 2))
        self.params_np = params
        self.x, self.y = ops.asarray(x), ops.asarray(y)
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        self.params = fresh_params(self.model, self.params_np)
        self.state = self.model.state
        self.opt_state = self.optimizer.init(self.params)

    def run(self, n: int) -> float:
        params, state, opt_state = self.params, self.state, self.opt_state
        x, y, step = self.x, self.y, self.step
        loss = None
        for _ in range(n):
            params, state, opt_state, loss = step(params, state, opt_state, x, y, None)
        self.params, self.state, self.opt_state = params, state, opt_state
        self.backend.synchronize()
        return float(self.backend.to_numpy(loss))
