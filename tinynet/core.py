"""The functional core: a model's forward, gradients and training step as
pure functions of arrays, built once from its layers.

``loss_and_grads(params, x, y, key, training) -> (loss, grads)``
``train_step(params, opt_state, x, y, key) -> (params, opt_state, loss)``

Nothing here touches the host or writes into an array, so
``backend.jit`` can compile a whole training step into one XLA program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import backends

from . import random
from .layers import Layer, Sigmoid, Softmax
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    SparseCategoricalCrossentropy,
)

Array = Any
Params = list[dict[str, Array]]


def fused_head(layers: Sequence[Layer], loss: Loss) -> Loss | None:
    """The from-logits loss that replaces ``last layer + loss``, if any.

    ``Softmax`` + (sparse) categorical CE and ``Sigmoid`` + binary CE are
    fused: the loss is taken from the logits (stable log-softmax /
    log-sigmoid) and the gradient is ``probs - targets``.
    """
    last = layers[-1]
    if getattr(loss, "from_logits", True):
        return None
    if type(last) is Softmax and type(loss) in (
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
    ):
        return type(loss)(from_logits=True)
    if type(last) is Sigmoid and type(loss) is BinaryCrossentropy:
        return BinaryCrossentropy(from_logits=True)
    return None


def make_forward(layers: Sequence[Layer]) -> Callable[..., Array]:
    """``forward(params, x, key=None, training=False) -> y``."""
    layers = tuple(layers)
    keyed = frozenset(i for i, layer in enumerate(layers) if layer.needs_key)

    def forward(params: Params, x: Array, key: Array = None, training: bool = False) -> Array:
        xp = backends.namespace(x)
        h = x
        for i, layer in enumerate(layers):
            k = random.fold_in(key, i) if (training and i in keyed) else None
            h, _ = layer.forward(params[i], h, xp, training, k)
        return h

    return forward


def make_loss_and_grads(
    layers: Sequence[Layer], loss: Loss, return_output: bool = False
) -> Callable[..., tuple]:
    """``loss_and_grads(params, x, y, key=None, training=True) -> (loss, grads)``.

    ``grads`` has exactly the structure of ``params``.  Regularisation
    penalties of the layers are included in both.  With ``return_output``
    the head's input is returned too: ``(loss, grads, out)`` (logits when
    the last activation is fused into the loss).
    """
    layers = tuple(layers)
    head = fused_head(layers, loss)
    body = layers[:-1] if head is not None else layers
    head = head or loss
    keyed = frozenset(i for i, layer in enumerate(body) if layer.needs_key)
    regularized = tuple(
        (i, layer) for i, layer in enumerate(layers) if getattr(layer, "regularized", False)
    )
    n_layers = len(layers)
    n_body = len(body)
    # The first layer that has parameters needs no input gradient (nor any before it).
    first_param = next((i for i, layer in enumerate(layers) if layer.has_params), n_layers)

    def loss_and_grads(
        params: Params, x: Array, y: Array, key: Array = None, training: bool = True
    ):
        xp = backends.namespace(x)
        h = x
        backs = []
        for i in range(n_body):
            k = random.fold_in(key, i) if (training and i in keyed) else None
            h, back = body[i].forward(params[i], h, xp, training, k)
            backs.append(back)
        value, dh = head.value_and_grad(xp, y, h)
        grads: Params = [{} for _ in range(n_layers)]
        for i in range(n_body - 1, first_param - 1, -1):
            dh, grads[i] = backs[i](dh, i > first_param)
        for i, layer in regularized:
            penalty, extra = layer.penalty(params[i], xp)
            value = value + penalty
            grads[i] = {name: g + extra[name] for name, g in grads[i].items()}
        if return_output:
            return value, grads, h
        return value, grads

    return loss_and_grads


def make_train_step(layers: Sequence[Layer], loss: Loss, optimizer: Any) -> Callable[..., tuple]:
    """``step(params, opt_state, x, y, key) -> (params, opt_state, loss)``."""
    loss_and_grads = make_loss_and_grads(layers, loss)
    update = optimizer.update

    def train_step(params: Params, opt_state: Any, x: Array, y: Array, key: Array = None):
        value, grads = loss_and_grads(params, x, y, key, True)
        params, opt_state = update(grads, opt_state, params)
        return params, opt_state, value

    return train_step


def make_fit_step(
    layers: Sequence[Layer], loss: Loss, optimizer: Any, metric: Any = None
) -> Callable[..., tuple]:
    """The step ``fit`` runs: it also adds the batch's loss (times its size)
    and metric count to running sums kept on the device.

    ``step(params, opt_state, sums, x, y, key) -> (params, opt_state, sums)``
    with ``sums = (loss_sum, metric_sum)`` 0-d arrays.
    """
    loss_and_grads = make_loss_and_grads(layers, loss, return_output=True)
    update = optimizer.update

    def fit_step(
        params: Params, opt_state: Any, sums: tuple, x: Array, y: Array, key: Array = None
    ):
        value, grads, out = loss_and_grads(params, x, y, key, True)
        params, opt_state = update(grads, opt_state, params)
        loss_sum = sums[0] + value * x.shape[0]
        if metric is None:
            return params, opt_state, (loss_sum, sums[1])
        xp = backends.namespace(x)
        return params, opt_state, (loss_sum, sums[1] + metric.count(xp, y, out))

    return fit_step


def make_indexed_step(
    fit_step: Callable[..., tuple],
    size: int,
    stride: int,
    has_key: bool,
    shard: Callable[[Array], Array] | None = None,
    contiguous: bool = False,
) -> Callable:
    """A fit step that slices its own batch out of the whole (shuffled) data
    set by a step counter held on the device: no host work per step.

    ``step(params, opt_state, sums, i, x, y, order, key) -> (params, opt_state, sums, i + 1)``
    takes rows ``order[i * stride : i * stride + size]`` of ``x`` and ``y``
    (``size < stride`` for the ragged last batch of an epoch), or with
    ``contiguous`` rows ``i * stride : i * stride + size`` themselves (data
    in epoch order already; ``order`` is ignored): a slice instead of three
    gathers, which on XLA's CPU runtime saves ~15 us per step.  ``shard``, if
    given, is applied to the batch (data parallelism: split it over devices).
    """

    def indexed_step(params, opt_state, sums, i, x, y, order, key):
        start = i * stride
        if contiguous:
            backend = backends.backend_of(x)
            xb, yb = backend.rows(x, start, size), backend.rows(y, start, size)
        else:
            xp = backends.namespace(x)
            rows = xp.take(order, start + xp.arange(size, dtype=order.dtype))
            xb = xp.take(x, rows, axis=0)
            yb = xp.take(y, rows, axis=0)
        if shard is not None:
            xb, yb = shard(xb), shard(yb)
        k = random.fold_in(key, i) if has_key else None
        params, opt_state, sums = fit_step(params, opt_state, sums, xb, yb, k)
        return params, opt_state, sums, i + 1

    return indexed_step


def make_eval_step(layers: Sequence[Layer], loss: Loss, metric: Any = None) -> Callable[..., tuple]:
    """``step(params, x, y) -> (loss * batch, metric count)`` for evaluation."""
    head = fused_head(layers, loss)
    forward = make_forward(layers[:-1] if head is not None else layers)
    head = head or loss

    def eval_step(params: Params, x: Array, y: Array):
        xp = backends.namespace(x)
        out = forward(params, x)
        value = head.value(xp, y, out) * x.shape[0]
        count = metric.count(xp, y, out) if metric is not None else value * 0
        return value, count

    return eval_step
