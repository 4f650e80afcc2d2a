"""Reference: the reference CNN in PyTorch eager, the idiomatic way:
``nn.Sequential`` of ``nn.Conv2d`` / ``nn.ReLU`` / ``nn.MaxPool2d`` /
``nn.Flatten`` / ``nn.Linear``, ``F.cross_entropy`` on the logits,
``loss.backward()`` and ``torch.optim.Adam`` (default foreach
implementation), 2 intra-op threads (``BENCH_TORCH_THREADS``, as
``refs/torch_eager.py``).

PyTorch's images are channels-first: the batch is transposed to NCHW once
when the runner is built (untimed), conv kernels to (filters, c, kh, kw),
and Dense1's input rows to Flatten's (c, h, w) order, so the network
computes exactly what the channels-last ones do.  torch's Adam adds epsilon
to ``sqrt(v_hat)``, Keras to ``sqrt(v)``: the same arithmetic cost.
"""

from __future__ import annotations

import os

import numpy as np

from .cnn_common import dense1_rows_chw


def available() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False, "torch is not installed (pip install torch==2.13.0)"
    return True, ""


class Runner:
    def __init__(self, x, y, params, opt):
        import torch
        from torch import nn

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        self.torch, self.opt_spec = torch, opt
        (W1, b1), (W2, b2), (W3, b3), (W4, b4) = params
        self.model = nn.Sequential(
            nn.Conv2d(W1.shape[2], W1.shape[3], W1.shape[0]),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(W2.shape[2], W2.shape[3], W2.shape[0]),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(W3.shape[0], W3.shape[1]),
            nn.ReLU(),
            nn.Linear(W4.shape[0], W4.shape[1]),
        )
        values = [
            (W1.transpose(3, 2, 0, 1), b1),
            (W2.transpose(3, 2, 0, 1), b2),
            (dense1_rows_chw(W3).T, b3),
            (W4.T, b4),
        ]
        layers = [m for m in self.model if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for layer, (W, b) in zip(layers, values, strict=True):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
                layer.bias.copy_(torch.from_numpy(b))
        self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        self.y = torch.from_numpy(y)
        self.loss_fn = nn.functional.cross_entropy
        self.reset()

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        torch, opt = self.torch, self.opt_spec
        self.model.load_state_dict(self.initial)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=opt.lr, betas=(opt.beta_1, opt.beta_2), eps=opt.epsilon
        )

    def run(self, n: int) -> float:
        model, opt, x, y, loss_fn = self.model, self.opt, self.x, self.y, self.loss_fn
        loss = None
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return float(loss.detach())
