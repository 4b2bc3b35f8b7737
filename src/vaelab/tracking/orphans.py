"""Runs whose process died without closing them (SIGKILL, out of memory, a DVC queue worker killed) end FAILED.

A killed process cannot mark its own run, so every run records which process holds it open: tags
``vaelab.host``, ``vaelab.pid`` and ``vaelab.pid_started`` (the process's start time, which tells a dead
process from a new one that reused its pid). Whenever a stage opens its experiment, runs still RUNNING on
this host whose process is gone are ended FAILED, with the reason as ``vaelab.failure``. A run on another
host is left alone: its process cannot be checked from here, and that host's next stage will do it.

Resuming a run (a killed training in the workspace continues from its checkpoint) re-opens it and records the
new process, so a run in use is never taken for an orphan.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import partial

import psutil
from mlflow.tracking import MlflowClient

from vaelab.tracking.store import with_retries

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG, STARTED_TAG = "vaelab.host", "vaelab.pid", "vaelab.pid_started"
FAILURE_TAG = "vaelab.failure"


def owner_tags() -> dict[str, str]:
    """The tags that name this process as the one holding a run open."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        STARTED_TAG: repr(psutil.Process().create_time()),
    }


def fail_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End FAILED every RUNNING run of the experiment held by a process of this host that no longer exists."""
    host = socket.gethostname()
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    running = with_retries(lambda: client.search_runs([experiment_id], filter_string=query, max_results=1000))
    ended = []
    for run in running:
        pid, started = run.data.tags.get(PID_TAG), run.data.tags.get(STARTED_TAG)
        if pid is None or started is None or _alive(int(pid), float(started)):
            continue
        reason = f"process {pid} on {host} ended without closing the run (killed?)"
        with_retries(partial(client.set_tag, run.info.run_id, FAILURE_TAG, reason))
        with_retries(partial(client.set_terminated, run.info.run_id, status="FAILED"))
        log.warning("MLflow run %s (%s): %s; marked FAILED", run.info.run_name, run.info.run_id, reason)
        ended.append(run.info.run_id)
    return ended


def _alive(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        # A pid is reused after its process ends; the start time tells the two apart (psutil computes it the same way).
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists, and is none of ours to judge
        return True
