"""The real train stage, plus a Keras callback that writes when its first step began and ended and how long
each epoch's training steps took.

``python bench/probe_train.py EVENTS_JSON [pipeline/train.py options]`` behaves like ``python
pipeline/train.py``; the times (``time.time()``, comparable with the harness's clock) go to EVENTS_JSON.
The callback gets in by wrapping ``vaelab.training.train``, which ``vaelab.stages.run_train`` looks up when
it runs; vaelab offers no hook for extra callbacks in a stage.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    events_path, stage_args = sys.argv[1], sys.argv[2:]
    import keras

    import vaelab.training
    from vaelab.cli import stage_main
    from vaelab.files import write_json

    class Probe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events: dict = {"epochs": []}
            self._epoch_began = 0.0
            self._step_ends: list[tuple[int, float]] = []  # (steps done in the epoch, time)

        def on_train_batch_begin(self, batch, logs=None):
            self.events.setdefault("first_step_begin", time.time())

        def on_train_batch_end(self, batch, logs=None):
            # With several steps per execution this runs once per execution; ``batch`` is its last step.
            self._step_ends.append((batch + 1, time.time()))
            self.events.setdefault("first_step_end", self._step_ends[-1][1])

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_began = time.time()
            self._step_ends = []

        def on_epoch_end(self, epoch, logs=None):
            # Training steps only (validation runs between the last step and this call). "steady_seconds"
            # leaves out the first execution, which traces the graph in epoch 1, and scales the rest up to all steps.
            (first_done, first), (steps, last) = self._step_ends[0], self._step_ends[-1]
            steady = (last - first) * steps / (steps - first_done) if steps > first_done else last - self._epoch_began
            self.events["epochs"].append(
                {"epoch": epoch + 1, "steps": steps, "train_seconds": last - self._epoch_began, "steady_seconds": steady}
            )
            write_json(events_path, self.events)

    original_train = vaelab.training.train

    def train_with_probe(config, splits, *, callbacks=(), **options):
        return original_train(config, splits, callbacks=[Probe(), *callbacks], **options)

    vaelab.training.train = train_with_probe
    stage_main("train", stage_args)


if __name__ == "__main__":
    main()
