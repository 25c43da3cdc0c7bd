"""The four benchmarked models written directly in PyTorch: ``nn.Module``, NCHW
convolutions in channels-last memory (``torch.channels_last``, faster on this CPU than
channels-first memory: measured 2026-11-28, eager, batch 64, conv_autoencoder
1,600-1,800 -> 2,040-2,250 samples/s and toy_resnet 700-890 -> 1,000), ``nn.LSTM``
(torch's fused kernel) for the ticket router, a plain training
loop and RMSprop or Adam written with ``torch._foreach_*`` ops (as ``torch.optim``'s fast
path does), with Keras's epsilon placement. The benchmark times it twice, eager and with
the step under ``torch.compile`` (``compiled=True``), and compares the zoo with the
faster. On a machine with a GPU the model, its data and each batch's indices live on
the GPU (``DEVICE``), as the zoo's tensors do under Keras's torch backend."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.common import (
    AUTOENCODER_DECODER,
    AUTOENCODER_ENCODER,
    BETA_1,
    BETA_2,
    DEPARTMENT_WEIGHT,
    EPSILON,
    LEARNING_RATE,
    RESNET_CONVS,
    RHO,
    take,
    uses_adam,
)

CONVOLUTIONAL = ("toy_resnet", "conv_autoencoder")
# where Keras's torch backend puts tensors: the GPU when torch sees one
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


class ConvAutoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        enc, dec = (1, *AUTOENCODER_ENCODER), (1, *AUTOENCODER_DECODER)
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, 3) for i, o in pairwise(enc))
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(i, o, 3) for i, o in pairwise(dec))

    def forward(self, x):
        e, d = self.encoder, self.decoder
        x = F.max_pool2d(F.relu(e[1](F.relu(e[0](x)))), 3)
        x = F.relu(e[3](F.relu(e[2](x)))).amax(dim=(2, 3))  # GlobalMaxPooling2D
        x = x.reshape(-1, 1, 4, 4)  # Keras's Reshape((4, 4, 1)), channels first
        x = F.interpolate(F.relu(d[1](F.relu(d[0](x)))), scale_factor=3, mode="nearest")
        return F.relu(d[3](F.relu(d[2](x))))


class TicketRouter(nn.Module):
    """Keras's LSTM is torch's (gates i, f, c, o in the same order) with Keras's one bias
    as torch's input bias and the recurrent bias held at zero."""

    def __init__(self, num_words=10_000, title_units=128, body_units=32, num_tags=12):
        super().__init__()
        self.title_embedding = nn.Embedding(num_words, 64)
        self.body_embedding = nn.Embedding(num_words, 64)
        self.title_lstm = nn.LSTM(64, title_units, batch_first=True)
        self.body_lstm = nn.LSTM(64, body_units, batch_first=True)
        features = title_units + body_units + num_tags
        self.priority, self.department = nn.Linear(features, 1), nn.Linear(features, 4)
        for lstm in (self.title_lstm, self.body_lstm):
            lstm.bias_hh_l0.requires_grad_(False)
            nn.init.zeros_(lstm.bias_hh_l0)

    def forward(self, x):
        title = self.title_lstm(self.title_embedding(x["title"]))[0][:, -1]
        body = self.body_lstm(self.body_embedding(x["body"]))[0][:, -1]
        features = torch.cat([title, body, x["tags"]], dim=1)
        return self.priority(features), self.department(features)


def _keras_order(model: nn.Module) -> list[tuple[nn.Parameter, bool]]:
    """The trained parameters in the Keras model's weight order, each with whether the
    Keras weight is transposed into it ((in, out) -> (out, in); HWIO -> OIHW, and Keras's
    transposed-convolution (h, w, out, in) -> torch's (in, out, h, w), the same axes)."""
    if isinstance(model, TicketRouter):
        order = [(model.title_embedding.weight, False), (model.body_embedding.weight, False)]
        for lstm in (model.title_lstm, model.body_lstm):
            order += [
                (lstm.weight_ih_l0, True),
                (lstm.weight_hh_l0, True),
                (lstm.bias_ih_l0, False),
            ]
        for dense in (model.priority, model.department):
            order += [(dense.weight, True), (dense.bias, False)]
        return order
    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    return [
        (p, p is m.weight)
        for m in model.modules()
        if isinstance(m, layers)
        for p in (m.weight, m.bias)
    ]


def build(architecture: str, weights: list[np.ndarray], dropout: float = 0.5) -> nn.Module:
    """The module with the Keras model's weights (convolutions in channels-last memory)."""
    model = {
        "mnist_mlp": MLP,
        "toy_resnet": lambda: ToyResNet(dropout),
        "conv_autoencoder": ConvAutoencoder,
        "ticket_router": TicketRouter,
    }[architecture]()
    with torch.no_grad():
        for (p, transpose), w in zip(_keras_order(model), weights, strict=True):
            w = w.T if transpose and w.ndim == 2 else w.transpose(3, 2, 0, 1) if transpose else w
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    model = model.to(DEVICE)
    if architecture in CONVOLUTIONAL:
        model = model.to(memory_format=torch.channels_last)
    return model


def _tensors(x):
    """Numpy data as torch tensors: images as NCHW views of the NHWC arrays (channels-last
    memory, no copy), word ids as int64."""
    if isinstance(x, dict):
        return {
            k: torch.from_numpy(v.astype("int64") if v.dtype.kind == "i" else v).to(DEVICE)
            for k, v in x.items()
        }
    x = torch.from_numpy(x).to(DEVICE)
    return x if x.ndim == 2 else x.permute(0, 3, 1, 2)


class Trainer:
    """Trains ``build(...)`` on in-memory tensors, batch by batch."""

    def __init__(self, architecture, weights, x, y, dropout=0.5, compiled=False):
        self.architecture = architecture
        self.model = build(architecture, weights, dropout)
        self.x = _tensors(x)
        self.y = (
            _tensors(y)
            if architecture in ("conv_autoencoder", "ticket_router")
            else torch.from_numpy(y).long().to(DEVICE)
        )
        self.params = [p for p, _ in _keras_order(self.model)]
        self.adam = uses_adam(architecture)
        self.slots = [torch.zeros_like(p) for p in self.params]  # RMSprop's v, Adam's m
        self.slots_2 = [torch.zeros_like(p) for p in self.params] if self.adam else []  # Adam's v
        # Adam's step count, a tensor so that compiling keeps it
        self.t = torch.zeros((), device=DEVICE)
        if compiled:
            # one graph for the whole step: dynamo traces torch.autograd.grad only under
            # trace_autograd_ops (else it breaks the graph there), as the zoo's step does
            step = torch.compile(self.step)

            def traced(idx):
                with torch._dynamo.config.patch(trace_autograd_ops=True):
                    return step(idx)

            self.step = traced

    def loss(self, idx):
        x, y = take(self.x, idx), take(self.y, idx)
        if self.architecture == "conv_autoencoder":
            return F.mse_loss(self.model(x), y)
        if self.architecture == "ticket_router":
            priority, department = self.model(x)
            return F.binary_cross_entropy_with_logits(
                priority, y["priority"]
            ) + DEPARTMENT_WEIGHT * F.cross_entropy(department, y["department"])
        return F.cross_entropy(self.model(x), y)

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        self.model.train()
        loss = self.loss(idx)
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            if self.adam:
                self.t.add_(1)
                torch._foreach_lerp_(self.slots, grads, 1 - BETA_1)
                torch._foreach_mul_(self.slots_2, BETA_2)
                torch._foreach_addcmul_(self.slots_2, grads, grads, value=1 - BETA_2)
                lr = LEARNING_RATE * torch.sqrt(1 - BETA_2**self.t) / (1 - BETA_1**self.t)
                denominators = torch._foreach_sqrt(self.slots_2)
                torch._foreach_add_(denominators, EPSILON)
                updates = torch._foreach_div(self.slots, denominators)
                torch._foreach_mul_(updates, lr)
                torch._foreach_sub_(self.params, updates)
                return loss.detach()
            torch._foreach_mul_(self.slots, RHO)
            torch._foreach_add_(self.slots, torch._foreach_mul(grads, grads), alpha=1 - RHO)
            denominators = torch._foreach_add(self.slots, EPSILON)
            torch._foreach_sqrt_(denominators)
            torch._foreach_add_(
                self.params,
                torch._foreach_div(torch._foreach_mul(grads, LEARNING_RATE), denominators),
                alpha=-1,
            )
        return loss.detach()

    def losses(self, order: np.ndarray) -> list[float]:
        """The loss of each batch of ``order`` (before its update)."""
        return [float(self.step(torch.from_numpy(idx).to(DEVICE))) for idx in order]

    def train(self, order: np.ndarray) -> float:
        """Runs one step per row of ``order`` and returns the last loss."""
        order = torch.from_numpy(order).to(DEVICE)
        for idx in order:
            loss = self.step(idx)
        return float(loss)

    def predict(self, x, batch_size: int) -> None:
        x = _tensors(x)
        n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, n, batch_size):
                out = self.model(take(x, slice(i, i + batch_size)))
        float((out[0] if isinstance(out, tuple) else out).flatten()[0])
