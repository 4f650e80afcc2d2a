"""Reference: PyTorch eager, the idiomatic way: ``nn.Sequential`` of
``nn.Linear``/``nn.ReLU``, ``F.cross_entropy`` on the logits, ``loss.backward()``
and ``torch.optim.SGD`` / ``torch.optim.Adam`` (default foreach
implementation).  2 intra-op threads on the CPU.

Note: torch's Adam adds epsilon to the bias-corrected ``sqrt(v_hat)``, Keras
(and the other implementations here) to the uncorrected one; the cost is the
same.
"""

from __future__ import annotations

import os


def available(device: str) -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed (pip install torch==2.13.0)"
    if device == "gpu" and not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    return True, ""


class Runner:
    def __init__(self, config, opt, x, y, params, device="cpu"):
        import torch
        from torch import nn

        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        self.torch = torch
        self.dev = torch.device("cuda" if device == "gpu" else "cpu")
        layers = []
        for i, (W, b) in enumerate(params):
            lin = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if i < len(params) - 1:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers).to(self.dev)
        self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.spec = opt
        self.reset()
        self.x = torch.from_numpy(x).to(self.dev)
        self.y = torch.from_numpy(y).to(self.dev)
        self.loss_fn = nn.functional.cross_entropy

    def reset(self) -> None:
        """Back to the initial parameters and a fresh optimizer state."""
        torch, opt = self.torch, self.spec
        self.model.load_state_dict(self.initial)
        if opt.name == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=opt.lr)
        else:
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
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()
        return float(loss.detach())
