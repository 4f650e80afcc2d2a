"""tinynet itself: ``ops.jit(core.make_train_step(layers, loss, optimizer, ops),
donate_argnums=(0, 2))`` called with the backend's arrays, as ``fit``'s steps
run.  The step is ``step(params, state, opt_state, x, y, key) -> (params,
state, opt_state, loss)``; params and optimizer state are donated (on JAX
their buffers are reused; on eager backends ``jit`` is the identity and the
update is pure).  One module serves every backend (numpy, jax, strict, cupy, torch)."""

from __future__ import annotations


def backend_for(name: str, device: str):
    """``(backend or None, why)`` for tinynet backend ``name`` on ``device``."""
    from tinynet import backends

    backend, why = backends.probe(name)
    if backend is None:
        return None, why
    if name == "jax":
        platform = getattr(backend.device, "platform", "cpu")
        if (device == "gpu") != (platform != "cpu"):
            return None, f"JAX default device is {platform}, not {device}"
    if name == "torch":
        kind = getattr(backend.device, "type", "cpu")
        if (device == "gpu") != (kind != "cpu"):
            backend, why = backends.probe(name, "cuda" if device == "gpu" else "cpu")
            return backend, why
    if name == "cupy" and device != "gpu":
        return None, "cupy runs only with --device gpu"
    if name == "numpy" and device == "gpu":
        return None, "numpy is CPU only"
    return backend, ""


def fresh_params(model, params_np) -> list[dict]:
    """The model's parameter tree holding *copies* of ``params_np`` (a list of
    ``(W, b)`` per Dense layer): a donated JAX step deletes its input
    buffers, and the initial values must survive every timed block."""
    import numpy as np

    backend, dense, out = model.backend, iter(params_np), []
    for p in model.params:
        if p:
            W, b = next(dense)
            p = {
                "W": backend.asarray(np.array(W, dtype="float32")),
                "b": backend.asarray(np.array(b, dtype="float32")),
            }
        out.append(p)
    return out


def build_model(config, backend_name: str, params_np=None, opt=None):
    """``(model, tinynet loss, tinynet optimizer)`` for a config."""
    import tinynet as tn

    n_layers = len(config.layers)
    layers = []
    for i, (fan_in, fan_out) in enumerate(config.layers):
        last = i == n_layers - 1
        layers.append(tn.Dense(fan_in, fan_out, init="glorot_uniform" if last else "he_uniform"))
        layers.append(tn.Softmax() if last else tn.ReLU())
    model = tn.Sequential(layers, dtype="float32", seed=0, backend=backend_name)
    if params_np is not None:
        model.params = fresh_params(model, params_np)
    loss = tn.losses.SparseCategoricalCrossentropy()
    return model, loss, make_optimizer(opt)


def make_optimizer(opt):
    """tinynet's optimizer for a ``benchlib.OptSpec`` (None for None)."""
    import tinynet as tn

    if opt is None:
        return None
    if opt.name == "sgd":
        return tn.optimizers.SGD(lr=opt.lr)
    return tn.optimizers.Adam(lr=opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)


def make_step(model, loss, optimizer):
    """The donated, jitted training step of ``model`` (as above)."""
    from tinynet import core

    ops = model.backend
    return ops.jit(core.make_train_step(model.layers, loss, optimizer, ops), donate_argnums=(0, 2))


class Runner:
    def __init__(self, config, opt, x, y, params, device="cpu", backend_name="numpy"):
        model, loss, optimizer = build_model(config, backend_name, params, opt)
        self.backend = backend = model.backend
        self.step = make_step(model, loss, optimizer)
        self.model, self.optimizer, self.params_np = model, optimizer, params
        self.x = backend.asarray(x)
        self.y = backend.asarray(y)
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        self.params = fresh_params(self.model, self.params_np)
        self.state = self.model.state  # empty dicts for Dense/activations
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
