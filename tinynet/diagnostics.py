"""Finding where a step went non-finite: re-run it eagerly, layer by layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backends, core, random


def _finite(a: Any) -> bool:
    if isinstance(a, (int, float)):  # e.g. the 0.0 penalty of an unregularised parameter
        return bool(np.isfinite(a))
    return bool(np.isfinite(backends.backend_of(a).to_numpy(a)).all())


def first_nonfinite(
    model: Any, loss: Any, x: Any, y: Any, order: Any, step: int, batch_size: int, step_key: Any
) -> str:
    """Describe what is first non-finite in batch ``step`` of an epoch whose row
    order is ``order`` (``None``: as in ``x``): the input batch, each layer's parameters
    and forward output, the loss, the penalties, the gradients (last layer first)."""
    ops = model.backend
    xp = ops.xp
    start = step * batch_size
    stop = min(start + batch_size, x.shape[0])
    if order is None:
        xb, yb = x[start:stop, ...], y[start:stop, ...]
    else:
        rows = order[start:stop]
        xb, yb = xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)
    if not _finite(xb):
        return "the input batch"
    head = core.fused_head(model.layers, loss)
    body = model.layers[:-1] if head is not None else model.layers
    head = head or loss
    key = random.fold_in(step_key, step) if step_key is not None else None
    h, backs = xb, []
    for i, layer in enumerate(body):
        for name, p in model.params[i].items():
            if not _finite(p):
                return f"parameter {name} of layer {i} ({type(layer).__name__})"
        k = random.fold_in(key, i) if (key is not None and layer.needs_key) else None
        h, _, back = layer.forward(model.params[i], model.state[i], h, ops, True, k)
        backs.append(back)
        if not _finite(h):
            return f"forward output of layer {i} ({type(layer).__name__})"
    value, dh = head.value_and_grad(xp, yb, h)
    if not _finite(value) or not _finite(dh):
        return f"the loss {type(loss).__name__}"
    for i, layer in enumerate(model.layers):
        if layer.regularized:
            penalty, grads = layer.penalty(model.params[i], xp)
            if not _finite(penalty) or not all(_finite(g) for g in grads.values()):
                return f"the regularization penalty of layer {i} ({type(layer).__name__})"
    for i in range(len(body) - 1, -1, -1):
        dh, grads = backs[i](dh, True)
        for name, g in grads.items():
            if not _finite(g):
                return f"gradient of {name} in layer {i} ({type(body[i]).__name__})"
        if dh is not None and not _finite(dh):  # None: integer input (Embedding)
            return f"input gradient of layer {i} ({type(body[i]).__name__})"
    return "the optimizer update (every forward value and gradient was finite)"
