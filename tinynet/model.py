"""``Sequential``: a stack of layers that owns its parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import backends

from . import core, random
from .layers import Dense, Layer, from_config
from .losses import Loss
from .losses import get as get_loss
from .validation import as_model_input, check_features

Array = Any
_DTYPES = ("float32", "float64")


class Sequential:
    """A stack of layers applied in order.

    Args:
        layers: the layers; the first one must be a :class:`Dense` (it fixes
            the input width) and consecutive widths must agree.
        dtype: ``"float32"`` (default) or ``"float64"`` for every parameter
            and every computation.
        seed: initialisation seed; the same seed gives bit-identical initial
            parameters on every backend.
        backend: backend name for the parameters (default: the current one).

    ``model.params`` is a list with one dict per layer (``{}`` for
    parameter-free layers; Dense has ``"W"`` ``(in, out)`` and ``"b"`` ``(out,)``).
    It is live: assign ``model.params[i]["W"] = arr`` and the next call uses it.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
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
                    "use e.g. tinynet.Dense(2, 64) or tinynet.ReLU()"
                )
        if not isinstance(layers[0], Dense):
            raise ValueError(
                f"Sequential: layer 0 must be Dense (it fixes the input width), "
                f"received {type(layers[0]).__name__}"
            )
        width: int | None = None
        for i, layer in enumerate(layers):
            width = layer.output_features(width, i)
        if dtype not in _DTYPES:
            raise ValueError(
                f"Sequential: dtype must be one of {_DTYPES}, received dtype={dtype!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Sequential: seed must be an int, received seed={seed!r}")
        self.layers = layers
        self.dtype = dtype
        self.seed = seed
        self.backend = backends.get_backend(backend)
        self.input_features: int = layers[0].in_features
        self.output_features: int | None = width
        self.params = self.initial_params(seed)
        self._compiled: dict[Any, Any] = {}
        self.optimizer = None
        self.opt_state = None
        self.epoch = 0  # epochs trained so far (fit continues counting)
        self.step = 0  # optimizer steps taken so far
        self.fit_seed = 0  # seed of the data order / dropout of the last fit
        self.history = None
        self.stop_training = False
        self.stop_reason: str | None = None

    # ------------------------------------------------------------ parameters

    def initial_params(self, seed: int) -> list[dict[str, Array]]:
        """Fresh parameters for ``seed`` (layer ``i`` uses ``fold_in(key, i)``)."""
        dtype = self.backend.dtype(self.dtype)
        layers = self.layers

        def init_all(key: Array) -> list[dict[str, Array]]:
            params, width = [], None
            for i, layer in enumerate(layers):
                params.append(
                    layer.init(random.fold_in(key, i), width, dtype) if layer.has_params else {}
                )
                width = layer.output_features(width, i)
            return params

        # one compiled program on JAX instead of hundreds of tiny dispatches
        return self.backend.jit(init_all)(random.key(seed, self.backend))

    def to_backend(self, name: str) -> Sequential:
        """Move parameters (and optimizer state) to another backend, in place."""
        target = backends.load(name)
        convert = lambda a: target.asarray(backends.backend_of(a).to_numpy(a))  # noqa: E731
        self.params = [{k: convert(v) for k, v in p.items()} for p in self.params]
        if self.opt_state is not None:
            from .tree import tree_map

            self.opt_state = tree_map(convert, self.opt_state)
        self.backend = target
        self._compiled.clear()
        return self

    def snapshot_params(self) -> list[dict[str, Array]]:
        """A copy of the parameters that later steps cannot touch (even when
        a compiled step donates the live buffers)."""
        xp = self.backend.xp
        return [{k: xp.asarray(v, copy=True) for k, v in p.items()} for p in self.params]

    @property
    def num_params(self) -> int:
        return sum(int(_prod(a.shape)) for p in self.params for a in p.values())

    # ------------------------------------------------------------ maths

    def _cached(self, key: Any, build: Any) -> Any:
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = build()
        return fn

    def _input(self, x: Any, where: str) -> Array:
        x = as_model_input(x, self.backend, self.dtype, where)
        check_features(x, self.input_features, where)
        if x.shape[0] == 0:
            raise ValueError(f"{where}: the batch is empty (0 samples)")
        return x

    def predict(self, x: Any, batch_size: int | None = None) -> Array:
        """Outputs for inputs ``x`` of shape ``(n, in_features)``.

        Returns an array of the model's backend, shape ``(n, out_features)``
        (``tinynet.to_numpy`` makes it a NumPy array).
        """
        from .training import predict

        return predict(self, x, batch_size=batch_size)

    def __call__(self, x: Any) -> Array:
        return self.predict(x)

    def loss_and_grads(self, x: Any, y_true: Any, loss: Loss | str) -> tuple[Array, list]:
        """``(mean loss, grads)`` for one batch; ``grads`` is shaped like ``params``."""
        loss = get_loss(loss)
        x = self._input(x, "Sequential.loss_and_grads")
        y = self._targets(y_true, loss, x.shape[0], "Sequential.loss_and_grads")
        fn = self._cached(
            ("loss_and_grads", loss), lambda: core.make_loss_and_grads(self.layers, loss)
        )
        return fn(self.params, x, y, None, False)

    def _targets(self, y: Any, loss: Loss, n: int, where: str) -> Array:
        from .training import prepare_targets

        return prepare_targets(self, y, loss, n, where)

    # ------------------------------------------------------------ training API

    def fit(self, x: Any, y: Any, **kwargs: Any):
        """Train; see :func:`tinynet.training.fit` for the arguments."""
        from .training import fit

        return fit(self, x, y, **kwargs)

    def evaluate(self, x: Any, y: Any, **kwargs: Any) -> dict[str, float]:
        """Loss and metrics on ``(x, y)``; see :func:`tinynet.training.evaluate`."""
        from .training import evaluate

        return evaluate(self, x, y, **kwargs)

    def save(self, path: str) -> None:
        """Write a safetensors checkpoint atomically (see :mod:`tinynet.checkpoint`)."""
        from .checkpoint import save

        save(self, path)

    # ------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            "layers": [layer.get_config() for layer in self.layers],
            "dtype": self.dtype,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: str | None = None) -> Sequential:
        layers = [from_config(c) for c in config["layers"]]
        return cls(
            layers,
            dtype=config.get("dtype", "float32"),
            seed=config.get("seed", 0),
            backend=backend,
        )

    def summary(self) -> str:
        lines = [f"Sequential on {self.backend.name} ({self.dtype}), {self.num_params} parameters"]
        for i, (layer, p) in enumerate(zip(self.layers, self.params, strict=True)):
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in p.items())
            lines.append(f"  {i}: {layer!r}" + (f"  [{shapes}]" if shapes else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, dtype={self.dtype!r})"


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def build_mlp(
    in_features: int,
    classes: int,
    hidden: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    dtype: str = "float32",
    seed: int = 0,
    backend: str | None = None,
) -> Any:
    """The MLP ``tinynet train`` builds: Dense + activation (+ Dropout) per
    hidden width, then Dense + Softmax."""
    from . import layers as tl

    stack: list[Any] = []
    width = in_features
    for h in hidden:
        init = "he_uniform" if activation == "relu" else "glorot_uniform"
        stack += [tl.Dense(width, h, init=init), tl.activation(activation)]
        if dropout:
            stack.append(tl.Dropout(dropout))
        width = h
    stack += [tl.Dense(width, classes), tl.Softmax()]
    return Sequential(stack, dtype=dtype, seed=seed, backend=backend)
