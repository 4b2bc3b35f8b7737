"""Training throughput of vaelab, the plain Keras reference and PyTorch (eager and compiled), and this CPU's matmul peaks.

One *segment* trains ``warmup`` untimed steps and then ``steps`` timed ones, on random images in memory
(the content does not change the arithmetic). Throughput is timed images / seconds from the end of the
last warm-up step to the end of the last timed step. Rounds interleave the segments of every
implementation and batch size (in a rotating order) with one measurement of each matmul peak, so a machine
that slows down mid-run slows all of them alike; round 0 warms everything up and is discarded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from bench.processes import BenchError

if TYPE_CHECKING:  # Keras loads only when a benchmark builds a model
    import keras

log = logging.getLogger("bench")

IMAGE_SHAPE = (28, 28, 1)
TORCH_START_SECONDS = 120


def steps_for(batch: int, timed_images: int) -> int:
    return max(1, math.ceil(timed_images / batch))


def rate_from_step_ends(ends: list[tuple[int, float]], warmup: int, batch: int) -> float:
    """Images/s after the warm-up, from ``(steps finished, time)`` at the end of each execution.

    Timing starts at the first execution end with at least ``warmup`` steps done (warmup >= 1); with several
    steps per execution that can be a little later than step ``warmup`` itself.
    """
    start = next((i for i, (done, _) in enumerate(ends) if done >= warmup), None) if warmup >= 1 else None
    if start is None or start == len(ends) - 1:
        raise BenchError(
            f"need at least one warm-up and one timed execution; got {ends[-1][0] if ends else 0} steps "
            f"in {len(ends)} executions with warmup={warmup}"
        )
    (done_first, first), (done_last, last) = ends[start], ends[-1]
    return (done_last - done_first) * batch / (last - first)


def _step_clock():
    import keras

    class StepClock(keras.callbacks.Callback):
        """(steps finished, time) at each batch end. With several steps per execution Keras reports only
        the execution's end, so the optimizer's step counter says how many steps really ran."""

        def __init__(self):
            super().__init__()
            self.ends: list[tuple[int, float]] = []
            self._first = 0

        def on_train_begin(self, logs=None):
            self._first = int(self.model.optimizer.iterations.numpy())

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append((int(self.model.optimizer.iterations.numpy()) - self._first, time.perf_counter()))

    return StepClock()


class Vaelab:
    """vaelab's own path: ``vaelab.training.train`` (model, input pipeline, callbacks) with a step clock added.

    A segment is one short epoch, so ``train`` would choose its steps per execution from the segment's
    length; it runs with the count a full epoch of the project's dataset gets at that batch size instead
    (``vaelab_steps_per_execution`` in the results), which is what a user's training runs with. The segment
    is lengthened to a whole number of executions, as ``train`` requires.
    """

    name = "vaelab"

    def __init__(self, config, images: np.ndarray, epoch_images: int):
        self.config = config
        self.images = images
        self.epoch_images = epoch_images  # training images in one epoch of the project's dataset

    def steps_per_execution(self, batch: int) -> int:
        from vaelab.training import default_steps_per_execution

        return default_steps_per_execution(math.ceil(self.epoch_images / batch))

    def segment(self, batch: int, warmup: int, steps: int) -> float:
        from vaelab.config.load import with_overrides
        from vaelab.data.processed import Splits
        from vaelab.training import train

        config = with_overrides(self.config, {"train.batch_size": batch, "train.epochs": 1})
        count = self.steps_per_execution(batch)
        n = math.ceil((warmup + steps) / count) * count * batch
        if n > len(self.images):
            raise BenchError(f"a segment of {n} images at batch {batch} needs more than the {len(self.images)} generated")
        splits = Splits(
            x_train=self.images[:n],
            y_train=np.zeros(n, dtype="uint8"),
            x_val=self.images[:batch],
            y_val=np.zeros(batch, dtype="uint8"),
            x_test=self.images[:batch],
            y_test=np.zeros(batch, dtype="uint8"),
            image_shape=IMAGE_SHAPE,
            class_names=("0",),
        )
        clock = _step_clock()
        train(config, splits, callbacks=[clock], verbose=0, steps_per_execution=count)
        return rate_from_step_ends(clock.ends, warmup, batch)


class KerasReference:
    """One plain Keras model per batch size, kept between segments, trained with ``fit`` on a NumPy array.

    ``policy`` is the Keras dtype policy of bench.keras_reference ("float32" or "mixed_bfloat16").
    """

    def __init__(self, seed: int, images: np.ndarray, policy: str = "float32", name: str = "keras_reference"):
        self.seed = seed
        self.images = images
        self.policy = policy
        self.name = name
        self.models: dict[int, keras.Model] = {}  # batch size -> its compiled model

    def segment(self, batch: int, warmup: int, steps: int) -> float:
        from bench.keras_reference import build_reference_vae

        if batch not in self.models:
            self.models[batch] = build_reference_vae(self.seed, policy=self.policy)
        clock = _step_clock()
        self.models[batch].fit(self.images[: (warmup + steps) * batch], batch_size=batch, epochs=1, verbose=0, callbacks=[clock])
        return rate_from_step_ends(clock.ends, warmup, batch)


class PeerSkipped(BenchError):
    """The peer cannot run on this machine (torch.compile without a working compiler): skipped, not failed."""


class TorchPeer:
    """bench/torch_reference.py --serve in the interpreter that has torch; idle while the others run.

    ``precision`` is "float32" or "bfloat16" (CPU autocast), as bench/torch_reference.py takes it; ``compiled``
    asks for ``torch.compile``. ``compile_seconds`` maps each batch size to its model's compile time.
    """

    def __init__(self, python: str, precision: str = "float32", name: str = "torch_eager", compiled: bool = False):
        self.precision = precision
        self.name = name
        self.compiled = compiled
        self.compile_seconds: dict[int, float] = {}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the subprocess; closed in close()
        script = Path(__file__).with_name("torch_reference.py")
        self.process = subprocess.Popen(
            [python, str(script), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # both asked for as PIPE above
        self._requests: IO[str] = self.process.stdin
        self._replies: IO[str] = self.process.stdout
        self.info = self._reply()

    def segment(self, batch: int, warmup: int, steps: int) -> float:
        request = {"batch": batch, "warmup": warmup, "steps": steps, "precision": self.precision, "compile": self.compiled}
        self._requests.write(json.dumps(request) + "\n")
        self._requests.flush()
        reply = self._reply()
        if "skipped" in reply:
            raise PeerSkipped(reply["skipped"])
        if reply.get("compile_seconds") is not None:
            self.compile_seconds[batch] = float(reply["compile_seconds"])
        return float(reply["images_per_second"])

    def close(self) -> None:
        if self.process.poll() is None:
            self._requests.write("\n")
            self._requests.flush()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def _reply(self) -> dict:
        line = self._replies.readline()
        if not line:
            self.process.wait()
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            raise BenchError(f"the PyTorch reference stopped (exit code {self.process.returncode}): {lines[-1] if lines else 'no message'}")
        return json.loads(line)


def find_torch_python(requested: str | None) -> tuple[str | None, str]:
    """(interpreter with torch, "") or (None, why the PyTorch reference is skipped)."""
    candidates = [requested] if requested else []
    candidates.append(sys.executable)
    for python in candidates:
        if not (python and os.access(python, os.X_OK)):
            continue
        found = subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=TORCH_START_SECONDS)
        if found.returncode == 0:
            return python, ""
    where = f"{requested} does not exist or lacks torch, and " if requested else ""
    return None, f"skipped: {where}torch is not importable here; `make bench-torch` installs torch==2.13.0 (CPU) into .venv-torch"


def matmul_gflops(size: int, calls: int = 3) -> float:
    """The fastest of ``calls`` NumPy float32 products of two size x size matrices, in GFLOP/s (2 n^3 FLOPs each)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # the first call pays for thread start-up
    return 2 * size**3 / _fastest(lambda: a @ b, calls) / 1e9


def tf_matmul_gflops(dtype: str, size: int, calls: int = 3) -> float:
    """The fastest of ``calls`` TensorFlow products of two size x size ``dtype`` matrices, in GFLOP/s.

    NumPy has no bfloat16 product, so the bfloat16 peak is TensorFlow's (oneDNN's kernels, as in training).
    """
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    product = tf.function(lambda: tf.matmul(a, b))
    product().numpy()  # traces and warms up
    return 2 * size**3 / _fastest(lambda: product().numpy(), calls) / 1e9


def _fastest(call, calls: int) -> float:
    best = math.inf
    for _ in range(calls):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def measure(implementations: list, batches: list[int], *, rounds: int, warmup: int, timed_images: int, peaks: dict) -> dict:
    """Interleaved rounds of every segment and every peak (``peaks``: name -> function returning GFLOP/s).

    Returns {"images_per_second": {impl: {batch: [per round]}}, "peak_gflops": {peak: [per round]},
    "failures": {impl: reason}}.
    """
    rates: dict[str, dict[int, list[float]]] = {impl.name: {batch: [] for batch in batches} for impl in implementations}
    peak_rates: dict[str, list[float]] = {name: [] for name in peaks}
    failures: dict[str, str] = {}
    for round_index in range(rounds + 1):
        label = "warm-up round" if round_index == 0 else f"round {round_index}/{rounds}"
        shift = round_index % len(implementations)
        order = implementations[shift:] + implementations[:shift]
        for batch in batches:
            for impl in order:
                if impl.name in failures:
                    continue
                try:
                    rate = impl.segment(batch, warmup, steps_for(batch, timed_images))
                except PeerSkipped as err:
                    failures[impl.name] = f"skipped: {err}"
                    log.info("%s skipped: %s", impl.name, err)
                    continue
                except Exception as err:  # one implementation failing must not stop the others
                    failures[impl.name] = f"failed: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                    log.exception("%s at batch %d failed", impl.name, batch)
                    continue
                log.info("%s: batch %d %s %.1f images/s", label, batch, impl.name, rate)
                if round_index:
                    rates[impl.name][batch].append(rate)
        for name, peak in peaks.items():
            gflops = peak()
            log.info("%s: %s matmul peak %.1f GFLOP/s", label, name, gflops)
            if round_index:
                peak_rates[name].append(gflops)
    return {"images_per_second": rates, "peak_gflops": peak_rates, "failures": failures}
