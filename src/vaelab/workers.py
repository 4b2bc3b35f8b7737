"""`vaelab train --workers N`: one training on N processes of this machine, as a TensorFlow cluster.

Each process is the ordinary train stage with a ``TF_CONFIG`` that lists all N on free 127.0.0.1 ports
and gives it its index, so it trains under ``MultiWorkerMirroredStrategy`` (see :mod:`vaelab.distribute`):
every worker computes the gradients of its share of each global batch and the shares are all-reduced.
Worker 0 is the chief; it alone opens the MLflow run and writes the model, the history and checkpoints
(:func:`vaelab.stages.run_train`); the others run :func:`train_as_worker`, and their output is shown
with a ``[worker i]`` prefix.

Across machines there is no launcher: set ``TF_CONFIG`` on each machine by hand and run the stage
(README, "Several machines"). This module only adds what one machine can do for the user: pick the
ports, start the processes, and clean up when one of them dies. A lost worker leaves the others
waiting in the next all-reduce, so the launcher stops them at once, ends the chief's MLflow run FAILED,
and says in one line what happened; the same command then resumes from the last checkpointed epoch in
the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import IO

from vaelab.config.schema import Config

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
POLL_SECONDS = 0.2


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports that were free a moment ago (held open together, so none repeats)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def cluster_config(addresses: Sequence[str], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``addresses`` (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def launch_training(config: Config, workers: int, stage_args: Sequence[str]) -> int:
    """Run the train stage on ``workers`` processes of this machine; return the exit code for the command.

    ``stage_args`` are the stage's own arguments (``--params``, ``--set`` ...), passed to every worker.
    """
    from vaelab.data.processed import check_made_from

    # The checks every worker would repeat, done once here so a mistake is one line, not N.
    check_made_from(config.paths.processed, config.split_settings())
    addresses = [f"{HOST}:{port}" for port in free_ports(workers)]
    command = [sys.executable, "-m", "vaelab.cli", "train", *stage_args]
    processes: list[subprocess.Popen] = []
    relays: list[threading.Thread] = []
    # `kill` (or a DVC queue stopping its worker) sends SIGTERM: stop the workers as for Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for index in range(workers):
            env = {**os.environ, "TF_CONFIG": cluster_config(addresses, index)}
            # The chief's output is the command's own; the others' goes through a prefixing relay.
            pipe = None if index == 0 else subprocess.PIPE
            process = subprocess.Popen(
                command, env=env, stdout=pipe, stderr=subprocess.STDOUT if pipe else None, text=True, preexec_fn=_die_with_parent
            )
            processes.append(process)
            if process.stdout is not None:  # a worker other than the chief, whose output is piped
                relays.append(_relay(process.stdout, f"[worker {index}] ", sys.stderr))
        log.info(
            "training on %d workers: %s",
            workers,
            ", ".join(
                f"{address} (pid {p.pid}{', chief' if i == 0 else ''})"
                for i, (address, p) in enumerate(zip(addresses, processes, strict=True))
            ),
        )
        failed = _wait_for_all_or_first_failure(processes)
    except KeyboardInterrupt:
        _stop(processes)
        _fail_orphaned_runs(config)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed is None:
        for relay in relays:
            relay.join(timeout=5)
        return 0
    index, code = failed
    _stop(processes)
    for relay in relays:
        relay.join(timeout=5)
    _fail_orphaned_runs(config)
    if code == 2:  # a user mistake, already explained in one line by the worker itself
        return 2
    role = "the chief" if index == 0 else f"worker {index}"
    print(
        f"vaelab: error: {role} of {workers} (pid {processes[index].pid}) {_how_it_ended(code)}; stopped the other "
        f"workers; run the same command again to resume from the last completed epoch",
        file=sys.stderr,
    )
    return 1


def train_as_worker(config: Config) -> None:
    """The train stage in a cluster's other worker: reads the chief's checkpoint to resume, logs and writes nothing."""
    from vaelab.data.processed import load_splits
    from vaelab.distribute import worker_label
    from vaelab.training import train

    # verbose=0: the chief reports the epochs; the same lines again from every worker would only repeat them.
    train(config, load_splits(config.paths.processed), checkpoint_dir=config.paths.checkpoints / "train", verbose=0)
    log.info("%s: training done; the chief logs the run and writes the outputs", worker_label())


def _wait_for_all_or_first_failure(processes: Sequence[subprocess.Popen]) -> tuple[int, int] | None:
    """None once every process exited 0; else (index, exit code) of the process whose failure came first.

    When one worker dies the others fail soon after, having lost it; among the failures seen at one poll,
    a process killed by a signal is the cause, then one that failed on its own (not with the user-error code 2
    that a worker which lost contact ends with).
    """
    while True:
        codes = [process.poll() for process in processes]
        failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return min(failed, key=lambda item: (item[1] >= 0, item[1] == 2, item[0]))
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_SECONDS)


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every live process, then SIGKILL what is left after STOP_GRACE_SECONDS."""
    alive = [process for process in processes if process.poll() is None]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in alive:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _fail_orphaned_runs(config: Config) -> None:
    """End FAILED the chief's MLflow run if it was killed before closing it (the next stage would do it too)."""
    from vaelab.tracking.experiments import fail_orphaned_runs_of

    fail_orphaned_runs_of(config.base.experiment)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In a worker, before it runs: a launcher killed outright (SIGKILL) takes its workers with it (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _relay(source: IO[str], prefix: str, target: IO[str]) -> threading.Thread:
    def copy() -> None:
        for line in source:
            target.write(prefix + line)
            target.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread
