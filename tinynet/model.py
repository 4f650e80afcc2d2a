"""``Sequential``: a stack of layers that owns its parameters and state."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from . import arguments, backends, checkpoint, core, random, training
from .layers import Dense, Layer, from_config
from .losses import Loss
from .losses import get as get_loss
from .tree import tree_map
from .validation import prepare_data

Array = Any
DTYPES = ("float32", "float64")


class Sequential:
    """A stack of layers applied in order.  ``input_shape`` is one sample's shape,
    e.g. ``(784,)`` or ``(28, 28, 1)`` (optional after ``Dense(in_features,
    out_features)``); ``dtype`` (float32 or float64) is that of every parameter
    and computation; the same ``seed`` gives bit-identical initial parameters on
    every backend.  ``model.params`` holds one dict per layer, ``model.state``
    the layers' non-trained state (e.g. batch-norm statistics); both are live:
    assign ``model.params[i]["W"] = arr`` and the next call uses it."""

    def __init__(
        self,
        layers: Sequence[Layer],
        input_shape: Any = None,
        dtype: str = "float32",
        seed: int = 0,
        backend: str | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential: needs at least one layer, received an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: item {i} is {layer!r}, not a tinynet layer; "
                    "use e.g. tinynet.Dense(64) or tinynet.ReLU()"
                )
        if input_shape is None:
            first = layers[0]
            if not (isinstance(first, Dense) and first.in_features is not None):
                raise ValueError(
                    f"Sequential: pass input_shape=..., the shape of one sample, e.g. "
                    f"input_shape=(784,) (layer 0, {type(first).__name__}, does not state it)"
                )
            input_shape = (first.in_features,)
        self.input_shape = arguments.shape("Sequential", "input_shape", input_shape)
        # each layer's output shape; a layer refuses an input shape with a
        # ValueError phrased after its name ("expects ..."), prefixed here
        self.shapes: list[tuple[int, ...]] = []
        shape = self.input_shape
        for i, layer in enumerate(layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as err:
                raise ValueError(f"Sequential: layer {i} ({type(layer).__name__}) {err}") from None
            self.shapes.append(shape)
        self.dtype = arguments.choice("Sequential", "dtype", dtype, DTYPES)
        self.seed = arguments.seed("Sequential", seed)
        self.layers = layers
        self.backend = backends.get_backend(backend)
        self.params, self.state = self.initial_params(seed)
        self._compiled: dict[Any, Any] = {}
        self.optimizer = None
        self.opt_state = None
        self.epoch = 0  # epochs trained so far (fit continues counting)
        self.step = 0  # optimizer steps taken so far
        # where an interrupted epoch stopped: the next fit call continues it exactly
        self.epoch_progress: dict | None = None
        self.fit_seed = 0  # seed of the data order / dropout of the last fit
        self.history = None
        self.stop_training = False
        self.stop_reason: str | None = None

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    @property
    def input_features(self) -> int:
        return self.input_shape[-1]

    @property
    def output_features(self) -> int:
        """The width of the output's last axis (classes, for a classifier)."""
        return self.output_shape[-1] if self.output_shape else 1

    def initial_params(self, seed: int) -> tuple[list[dict], list[dict]]:
        """Fresh ``(params, state)`` for ``seed`` (layer ``i`` uses ``fold_in(key, i)``)."""
        ops = self.backend
        dtype = ops.dtype(self.dtype)
        layers, shapes = self.layers, (self.input_shape, *self.shapes[:-1])

        def init_all(key: Array) -> tuple[list, list]:
            params, state = [], []
            for i, (layer, shape) in enumerate(zip(layers, shapes, strict=True)):
                _, p, s = layer.init(random.fold_in(key, i), shape, dtype)
                params.append(p)
                state.append(s)
            return params, state

        # one compiled program on JAX instead of hundreds of tiny dispatches
        with ops.scope():
            return ops.jit(init_all)(random.key(seed, ops))

    def to_backend(self, name: str) -> Sequential:
        """Move parameters, state and optimizer state to another backend, in place."""
        target = backends.load(name)

        def convert(a):
            return target.asarray(backends.backend_of(a).to_numpy(a))

        trees = (self.params, self.state, self.opt_state)  # opt_state may be None
        self.params, self.state, self.opt_state = tree_map(convert, trees)
        self.backend = target
        self._compiled.clear()
        return self

    def snapshot_params(self) -> list[dict[str, Array]]:
        """A copy of the parameters that later steps cannot touch (even donating ones)."""
        xp = self.backend.xp
        with self.backend.scope():
            return tree_map(lambda a: xp.asarray(a, copy=True), self.params)

    @property
    def num_params(self) -> int:
        return sum(math.prod(a.shape) for p in self.params for a in p.values())

    def _cached(self, key: Any, build: Any) -> Any:
        """``self._compiled[key]``, made by ``build()`` the first time."""
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    def predict(self, x: Any, batch_size: int | None = None) -> Array:
        """Outputs ``(n, *output_shape)``, an array of the model's backend, for
        inputs ``x`` of shape ``(n, *input_shape)``."""
        return training.predict(self, x, batch_size=batch_size)

    def __call__(self, x: Any) -> Array:
        return self.predict(x)

    def loss_and_grads(self, x: Any, y_true: Any, loss: Loss | str) -> tuple[Array, list]:
        """``(mean loss, grads)`` for one batch in inference mode (no
        dropout, state unchanged); ``grads`` is shaped like ``params``."""
        loss = get_loss(loss)
        with self.backend.scope():
            x, y = prepare_data(self, x, y_true, loss, "Sequential.loss_and_grads")
            fn = self._cached(
                ("loss_and_grads", loss),
                lambda: core.make_loss_and_grads(self.layers, loss, self.backend),
            )
            value, grads, _, _ = fn(self.params, self.state, x, y, None, False)
        return value, grads

    def fit(self, x: Any, y: Any, **kwargs: Any):
        """Train; see :func:`tinynet.training.fit` for the arguments."""
        return training.fit(self, x, y, **kwargs)

    def evaluate(self, x: Any, y: Any, **kwargs: Any) -> dict[str, float]:
        """Loss and metrics on ``(x, y)``; see :func:`tinynet.training.evaluate`."""
        return training.evaluate(self, x, y, **kwargs)

    def save(self, path: str) -> None:
        """Write a checkpoint atomically (see :mod:`tinynet.checkpoint`)."""
        checkpoint.save(self, path)

    def get_config(self) -> dict[str, Any]:
        return {
            "layers": [layer.get_config() for layer in self.layers],
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: str | None = None) -> Sequential:
        layers = [from_config(c) for c in config["layers"]]
        return cls(
            layers,
            input_shape=config.get("input_shape"),
            dtype=config.get("dtype", "float32"),
            seed=config.get("seed", 0),
            backend=backend,
        )

    def summary(self) -> str:
        """A Keras-style table: each layer, its output shape and parameter count."""
        rows = [("layer", "output shape", "params")]
        for i, layer in enumerate(self.layers):
            count = sum(math.prod(a.shape) for a in self.params[i].values())
            rows.append((f"{i}: {layer!r}", str((None, *self.shapes[i])), f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "  ".join("-" * w for w in widths)
        table = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
        shape = (None, *self.input_shape)
        title = f"Sequential on {self.backend.name} ({self.dtype}), input shape {shape}"
        total = f"total parameters: {self.num_params:,}"
        return "\n".join([title, line, table[0], line, *table[1:], line, total])

    def __repr__(self) -> str:
        return (
            f"Sequential({self.layers!r}, input_shape={self.input_shape!r}, dtype={self.dtype!r})"
        )


def load(path: Any, backend: str | None = None) -> Sequential:
    """The model saved at ``path`` (state, optimizer and its state, epoch, step and
    fit seed, bit-identical) on ``backend`` (default: the current one).  Raises
    :class:`~tinynet.checkpoint.CheckpointError` naming the file and the problem."""
    target = backends.get_backend(backend)
    path = os.fspath(path)
    ckpt = checkpoint.read(path)
    # Built on NumPy and then moved: a fresh random init on an accelerator
    # (computed only to be overwritten) can cost seconds.
    with checkpoint.problem(path, "the architecture config is invalid"):
        model = Sequential.from_config(ckpt.meta["config"], backend="numpy")
    checkpoint.restore_from(model, ckpt, path, "the checkpoint does not fit its architecture")
    return model if target is model.backend else model.to_backend(target.name)
