"""The functional core: a model's forward, gradients and training step as
pure functions of arrays (nothing touches the host, so ``ops.jit`` compiles
a whole step), built once from its layers and the backend's ops; see
docs/DESIGN.md, section 3."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import random
from .layers import (
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    Layer,
    MaxPool1D,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
)
from .losses import BinaryCrossentropy, CategoricalCrossentropy, Loss, SparseCategoricalCrossentropy

Array = Any
Params = list[dict[str, Array]]
_FUSED = {
    Softmax: (CategoricalCrossentropy, SparseCategoricalCrossentropy),
    Sigmoid: (BinaryCrossentropy,),
}


def fused_head(layers: Sequence[Layer], loss: Loss) -> Loss | None:
    """The from-logits loss replacing a last ``Softmax`` + (sparse) categorical CE or
    ``Sigmoid`` + binary CE (stable, gradient ``probs - targets``), else None."""
    if getattr(loss, "from_logits", True) or type(loss) not in _FUSED.get(type(layers[-1]), ()):
        return None
    return type(loss)(from_logits=True)


def _body_and_head(layers: Sequence[Layer], loss: Loss) -> tuple[tuple[Layer, ...], Loss]:
    """The layers the forward runs and the loss on their output (fused if possible)."""
    head = fused_head(layers, loss)
    return (tuple(layers), loss) if head is None else (tuple(layers[:-1]), head)


_MAX_POOLS = (MaxPool1D, MaxPool2D, GlobalMaxPool1D, GlobalMaxPool2D)


def run_order(layers: Sequence[Layer], ops: Any) -> list[int]:
    """The indices of ``layers`` in the order they run: their own, but on eager
    backends a ``ReLU`` right before a max pooling runs after it.  ``pool(relu(x))
    == relu(pool(x))`` and both give the gradient to a window's first maximum if it
    is positive, else nothing: the same numbers (to a sum's rounding), the ReLU on
    the smaller array.  A compiler (XLA) fuses the ReLU itself and did worse swapped."""
    order = list(range(len(layers)))
    if ops.compiles:
        return order
    for i in range(len(layers) - 1):
        if type(layers[i]) is ReLU and type(layers[i + 1]) in _MAX_POOLS:
            order[i], order[i + 1] = i + 1, i
    return order


def make_forward(layers: Sequence[Layer], ops: Any) -> Callable[..., tuple]:
    """``forward(params, state, x, key=None, training=False) -> (y, state)``."""
    layers = tuple(layers)
    keyed = frozenset(i for i, layer in enumerate(layers) if layer.needs_key)
    order = run_order(layers, ops)

    def forward(params, state, x, key=None, training=False):
        h, new_state = x, list(state)
        for i in order:
            layer = layers[i]
            k = random.fold_in(key, i) if (training and i in keyed) else None
            h, new_state[i], _ = layer.forward(params[i], state[i], h, ops, training, k)
        return h, new_state

    return forward


def make_loss_and_grads(
    layers: Sequence[Layer], loss: Loss, ops: Any, record: bool = False
) -> Callable[..., tuple]:
    """``fn(params, state, x, y, key=None, training=True) -> (loss, grads, state, out)``:
    ``out`` is the head's input (the logits if the loss is fused); with ``record``
    a fifth item holds every layer's output and input gradient (``compare-backends``)."""
    layers = tuple(layers)
    body, head = _body_and_head(layers, loss)
    keyed = frozenset(i for i, layer in enumerate(body) if layer.needs_key)
    regularized = tuple((i, layer) for i, layer in enumerate(layers) if layer.regularized)
    n_layers = len(layers)
    # The first layer with parameters needs no input gradient (nor any before it).
    first = 0 if record else next((i for i, ly in enumerate(layers) if ly.has_params), n_layers)
    # record: every layer's own output, so the order as written
    order = list(range(len(body))) if record else run_order(body, ops)
    xp = ops.xp

    def loss_and_grads(params, state, x, y, key=None, training=True):
        h, new_state, backs, outputs = x, list(state), {}, []
        for i in order:
            k = random.fold_in(key, i) if (training and i in keyed) else None
            h, new_state[i], backs[i] = body[i].forward(params[i], state[i], h, ops, training, k)
            if record:
                outputs.append(h)
        value, d_head = head.value_and_grad(xp, y, h)
        dh = d_head
        grads: Params = [{} for _ in range(n_layers)]
        grad_in = [None] * n_layers
        for i in reversed(order):  # swapped pairs have no parameters: first is not in one
            if i < first:
                break
            dh, grads[i] = backs[i](dh, i > first or record)
            grad_in[i] = dh
        for i, layer in regularized:
            penalty, extra = layer.penalty(params[i], xp)
            value = value + penalty
            grads[i] = {name: g + extra[name] for name, g in grads[i].items()}
        if record:
            return value, grads, new_state, h, {"outputs": outputs, "grad_in": grad_in,
                                                "grad_head": d_head}  # fmt: skip
        return value, grads, new_state, h

    return loss_and_grads


def make_train_step(
    layers: Sequence[Layer], loss: Loss, optimizer: Any, ops: Any
) -> Callable[..., tuple]:
    """``step(params, state, opt_state, x, y, key=None) -> (params, state, opt_state, loss)``."""
    loss_and_grads = make_loss_and_grads(layers, loss, ops)
    update = optimizer.update

    def train_step(params, state, opt_state, x, y, key=None):
        value, grads, state, _ = loss_and_grads(params, state, x, y, key, True)
        params, opt_state = update(grads, opt_state, params)
        return params, state, opt_state, value

    return train_step


def make_fit_step(
    layers: Sequence[Layer], loss: Loss, optimizer: Any, ops: Any, metric: Any = None
) -> Callable[..., tuple]:
    """``step(params, state, opt_state, sums, x, y, key) -> (params, state, opt_state, sums)``:
    adding the batch's loss times its size and its metric count to the 0-d ``sums``."""
    loss_and_grads = make_loss_and_grads(layers, loss, ops)
    update = optimizer.update
    xp = ops.xp

    def fit_step(params, state, opt_state, sums, x, y, key=None):
        value, grads, state, out = loss_and_grads(params, state, x, y, key, True)
        params, opt_state = update(grads, opt_state, params)
        loss_sum = sums[0] + value * x.shape[0]
        count = sums[1] if metric is None else sums[1] + metric.count(xp, y, out)
        return params, state, opt_state, (loss_sum, count)

    return fit_step


def make_eval_step(
    layers: Sequence[Layer], loss: Loss, ops: Any, metric: Any = None
) -> Callable[..., tuple]:
    """``step(params, state, x, y) -> (loss * batch, metric count)`` for evaluation."""
    body, head = _body_and_head(layers, loss)
    forward = make_forward(body, ops)
    xp = ops.xp

    def eval_step(params, state, x, y):
        out, _ = forward(params, state, x)
        value = head.value(xp, y, out) * x.shape[0]
        count = metric.count(xp, y, out) if metric is not None else value * 0
        return value, count

    return eval_step
