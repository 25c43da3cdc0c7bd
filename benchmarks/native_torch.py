"""The MLP and the toy ResNet written directly in PyTorch: ``nn.Module``, NCHW
convolutions, a plain training loop and RMSprop written with ``torch._foreach_*``
ops (as ``torch.optim``'s fast path does), with Keras's epsilon placement. The
benchmark times it twice, eager and with the step under ``torch.compile``
(``compiled=True``), and compares the zoo with the faster."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.common import EPSILON, LEARNING_RATE, RESNET_CONVS, RHO


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense_1, self.dense_2, self.logits = (
            nn.Linear(784, 64),
            nn.Linear(64, 64),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.logits(F.relu(self.dense_2(F.relu(self.dense_1(x)))))


class ToyResNet(nn.Module):
    def __init__(self, dropout=0.5):
        super().__init__()
        channels = [3, 32, 64, 64, 64, 64, 64, 64]
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, 3, padding=1 if pad == "same" else 0)
            for (_, pad), cin, cout in zip(RESNET_CONVS, channels[:-1], channels[1:], strict=True)
        )
        self.dense, self.logits = nn.Linear(64, 256), nn.Linear(256, 10)
        self.dropout = dropout

    def forward(self, x):
        c = self.convs
        x = F.max_pool2d(F.relu(c[1](F.relu(c[0](x)))), 3)
        for i in (2, 4):
            x = F.relu(c[i + 1](F.relu(c[i](x)))) + x
        x = F.relu(c[6](x)).mean(dim=(2, 3))
        x = F.dropout(F.relu(self.dense(x)), self.dropout, self.training)
        return self.logits(x)


def build(architecture: str, weights: list[np.ndarray], dropout: float = 0.5) -> nn.Module:
    """The module with the Keras model's weights (Keras kernels are (in, out) and
    HWIO; torch's are (out, in) and OIHW)."""
    model = MLP() if architecture == "mnist_mlp" else ToyResNet(dropout)
    params = [
        p
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
        for p in (m.weight, m.bias)
    ]
    with torch.no_grad():
        for p, w in zip(params, weights, strict=True):
            w = w.T if w.ndim == 2 else w.transpose(3, 2, 0, 1) if w.ndim == 4 else w
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return model


class Trainer:
    """Trains ``build(...)`` on in-memory tensors, batch by batch."""

    def __init__(self, architecture, weights, x, y, dropout=0.5, compiled=False):
        self.model = build(architecture, weights, dropout)
        self.x = torch.from_numpy(x if x.ndim == 2 else x.transpose(0, 3, 1, 2).copy())
        self.y = torch.from_numpy(y).long()
        self.params = list(self.model.parameters())
        self.velocities = [torch.zeros_like(p) for p in self.params]
        if compiled:
            self.step = torch.compile(self.step)

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        self.model.train()
        loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            torch._foreach_mul_(self.velocities, RHO)
            torch._foreach_add_(self.velocities, torch._foreach_mul(grads, grads), alpha=1 - RHO)
            denominators = torch._foreach_add(self.velocities, EPSILON)
            torch._foreach_sqrt_(denominators)
            torch._foreach_add_(
                self.params,
                torch._foreach_div(torch._foreach_mul(grads, LEARNING_RATE), denominators),
                alpha=-1,
            )
        return loss.detach()

    def losses(self, order: np.ndarray) -> list[float]:
        """The loss of each batch of ``order`` (before its update)."""
        return [float(self.step(torch.from_numpy(idx))) for idx in order]

    def train(self, order: np.ndarray) -> float:
        """Runs one step per row of ``order`` and returns the last loss."""
        order = torch.from_numpy(order)
        for idx in order:
            loss = self.step(idx)
        return float(loss)

    def predict(self, x: np.ndarray, batch_size: int) -> None:
        x = torch.from_numpy(x if x.ndim == 2 else x.transpose(0, 3, 1, 2).copy())
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                out = self.model(x[i : i + batch_size])
        float(out[0, 0])
