"""The chapter's VAE in plain PyTorch, eager or under ``torch.compile``: the benchmark's second yardstick. Needs only torch.

It runs in whatever environment has torch (``make bench-torch`` makes one in .venv-torch), never imports
vaelab, and talks JSON on stdout:

- ``python bench/torch_reference.py --batch 32 --warmup 10 --steps 100 [--precision bfloat16] [--compile]``
  trains that many steps and prints one line, ``{"images_per_second": ..., "compile_seconds": ..., ...}``;
- ``python bench/torch_reference.py --serve`` prints ``{"ready": true, ...}``, then answers each stdin line
  ``{"batch": 32, "warmup": 10, "steps": 100, "precision": "float32", "compile": false}`` with one such line,
  keeping one model per batch size, precision and compile flag warm between requests so the harness can
  interleave it with the Keras runs. An empty line ends it. A model that ``torch.compile`` cannot compile
  here (no C compiler, say) is answered with ``{"skipped": "<why, one line>"}`` and the process goes on.

``compile`` wraps the forward pass and loss in ``torch.compile`` (inductor, default mode; AOTAutograd
compiles the backward pass too) while Adam stays eager. The model's first training step, which compiles
both, runs when the model is built and is reported as ``compile_seconds``, never inside the timed steps.

``bfloat16`` runs the forward pass under ``torch.autocast("cpu", dtype=torch.bfloat16)``, PyTorch's own
mixed precision for CPUs: convolutions and linear layers in bfloat16, weights, gradients and Adam in
float32. The means, log-variances, sampling, output and loss are taken back to float32, as in the Keras runs.

The layers mirror Keras' ``padding="same"``: stride-2 convolutions pad 1 (28 -> 14 -> 7) and stride-2
transposed convolutions pad 1 with output_padding 1 (7 -> 14 -> 28); LeakyReLU slope 0.3 as in Keras.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

PRECISIONS = ("float32", "bfloat16")
LEAKY_SLOPE = 0.3  # Keras' LeakyReLU default; PyTorch's is 0.01
R_LOSS_FACTOR = 1000.0
LEARNING_RATE = 0.0005
Z_DIM = 2


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        channels = 1
        for filters, stride in ((32, 1), (64, 2), (64, 2), (64, 1)):
            layers += [nn.Conv2d(channels, filters, 3, stride=stride, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
            channels = filters
        self.convs = nn.Sequential(*layers, nn.Flatten())  # (batch, 64 * 7 * 7)
        self.mu = nn.Linear(64 * 7 * 7, Z_DIM)
        self.log_var = nn.Linear(64 * 7 * 7, Z_DIM)

    def forward(self, images):
        features = self.convs(images)
        return self.mu(features), self.log_var(features)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(Z_DIM, 64 * 7 * 7)
        layers = []
        channels = 64
        for filters, stride in ((64, 1), (64, 2), (32, 2)):
            layers += [_transposed(channels, filters, stride), nn.LeakyReLU(LEAKY_SLOPE)]
            channels = filters
        self.convs = nn.Sequential(*layers, _transposed(channels, 1, 1), nn.Sigmoid())

    def forward(self, z):
        return self.convs(self.dense(z).view(-1, 64, 7, 7))  # (batch, 1, 28, 28)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, images):
        mu, log_var = self.encoder(images)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return self.decoder(z), mu, log_var


def _transposed(channels_in: int, channels_out: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(channels_in, channels_out, 3, stride=stride, padding=1, output_padding=stride - 1)


def vae_loss(images, reconstruction, mu, log_var):
    reconstruction_loss = ((images - reconstruction) ** 2).mean(dim=(1, 2, 3)).mean()
    kl = (-0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(dim=1)).mean()
    return R_LOSS_FACTOR * reconstruction_loss + kl


class CompileUnavailable(RuntimeError):
    """torch.compile cannot build kernels on this machine; the compiled peers are skipped, not failed."""


class Trainer:
    """One model, optimizer and in-memory data set for one batch size, precision and compile flag."""

    def __init__(self, batch: int, seed: int = 0, precision: str = "float32", compiled: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; received {precision!r}")
        torch.manual_seed(seed)
        self.batch = batch
        self.autocast = precision == "bfloat16"
        self.model = VAE()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.images = torch.rand(0, 1, 28, 28)
        self.forward_loss = self._forward_loss
        self.compile_seconds: float | None = None
        if compiled:
            self._compile()

    def _forward_loss(self, images):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            reconstruction, mu, log_var = self.model(images)
        return vae_loss(images, reconstruction.float(), mu.float(), log_var.float())

    def _compile(self) -> None:
        # dynamic=False: each batch size has its own model, so no step should pay for shape-generic kernels.
        self.forward_loss = torch.compile(self._forward_loss, dynamic=False)
        started = time.perf_counter()
        try:
            self._step(torch.rand(self.batch, 1, 28, 28))  # compiles forward and backward
        except Exception as err:  # inductor's errors have no common base class
            lines = str(err).strip().splitlines()
            raise CompileUnavailable(f"torch.compile failed: {type(err).__name__}: {lines[0] if lines else 'no message'}") from err
        self.compile_seconds = time.perf_counter() - started

    def _step(self, images):
        loss = self.forward_loss(images)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def run(self, warmup: int, steps: int) -> dict:
        """Train ``warmup`` untimed steps, then ``steps`` timed ones, on a fresh shuffle of in-memory images."""
        needed = (warmup + steps) * self.batch
        if len(self.images) < needed:
            self.images = torch.rand(needed, 1, 28, 28)
        shuffled = self.images[torch.randperm(len(self.images))[:needed]]
        started, loss = None, None
        for step in range(warmup + steps):
            if step == warmup:
                started = time.perf_counter()
            loss = self._step(shuffled[step * self.batch : (step + 1) * self.batch])
        seconds = time.perf_counter() - started if started is not None else 0.0
        return {
            "batch": self.batch,
            "steps": steps,
            "seconds": seconds,
            "images_per_second": steps * self.batch / seconds if seconds else None,
            "loss": None if loss is None else loss.item(),
            "compile_seconds": self.compile_seconds,
        }


def describe() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads()}


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    trainers: dict[tuple[int, str, bool], Trainer] = {}
    print(json.dumps({"ready": True, **describe()}), file=stdout, flush=True)
    for line in stdin:
        if not line.strip():
            break
        request = json.loads(line)
        key = (int(request["batch"]), request.get("precision", "float32"), bool(request.get("compile", False)))
        if key not in trainers:
            try:
                trainers[key] = Trainer(key[0], int(request.get("seed", 0)), key[1], compiled=key[2])
            except CompileUnavailable as err:
                print(json.dumps({"skipped": str(err)}), file=stdout, flush=True)
                continue
        print(json.dumps(trainers[key].run(int(request["warmup"]), int(request["steps"]))), file=stdout, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the chapter's VAE in PyTorch and report images/s as JSON.")
    parser.add_argument("--serve", action="store_true", help="answer JSON requests on stdin, one per line")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="bfloat16: CPU autocast (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass and loss (inductor)")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    trainer = Trainer(args.batch, precision=args.precision, compiled=args.compile)
    print(json.dumps({**trainer.run(args.warmup, args.steps), **describe()}))


if __name__ == "__main__":
    main()
