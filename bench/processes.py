"""Child processes measured from outside: wall time, peak RSS (from the kernel) and an RSS time series."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_SECONDS = 0.2


class BenchError(Exception):
    """A measurement could not be made; the message says which and why, in one line."""


@dataclass
class Measured:
    command: list[str]
    started: float  # time.time() just before the process was started
    wall_seconds: float
    peak_rss_mb: float  # the kernel's high-water mark of the process (ru_maxrss), not a sample
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (time.time(), MB), if sampled
    log: Path | None = None


# Runs the command as its own child and reports that child's resource use. A process forked straight from the
# harness would inherit the harness's memory high-water mark (Linux keeps it across fork and exec), so the
# command is forked from this small launcher instead.
_LAUNCHER = """
import json, os, sys, time
started, clock = time.time(), time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
report = {"started": started, "wall_seconds": time.perf_counter() - clock, "maxrss_kib": usage.ru_maxrss, "exit_code": code}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout: float,
    sample_rss: bool = False,
) -> Measured:
    """Run ``command`` to completion with its output in ``log``; BenchError if it fails or times out."""
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_path = log.with_name(log.name + ".usage.json")
    usage_path.unlink(missing_ok=True)
    with open(log, "wb") as output:
        clock = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(usage_path), *command],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        samples: list[tuple[float, float]] = []
        while launcher.poll() is None:
            if sample_rss and (child := _only_child(launcher.pid)) and (rss := tree_rss_mb(child)) is not None:
                samples.append((time.time(), rss))
            if time.perf_counter() - clock > timeout:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
                raise BenchError(f"{' '.join(command)} took longer than {timeout:.0f} s; see {log}")
            time.sleep(SAMPLE_SECONDS)
    try:
        usage = json.loads(usage_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BenchError(f"{' '.join(command)} could not be started (exit code {launcher.returncode}): {last_line(log)}") from None
    if usage["exit_code"] != 0:
        raise BenchError(f"{' '.join(command)} exited with code {usage['exit_code']}: {last_line(log)} (see {log})")
    return Measured(list(command), usage["started"], usage["wall_seconds"], usage["maxrss_kib"] / 1024, samples, log)


def _only_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    except OSError:
        return None
    return int(children[0]) if children else None


def tree_rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and every process below it (a sweep's trials run in worker processes)."""
    own = current_rss_mb(pid)
    if own is None:
        return None
    return own + sum(current_rss_mb(child) or 0.0 for child in _descendants(pid))


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{parent}/task/{parent}/children").read_text(encoding="ascii").split()]
        except OSError:
            children = []
        found += children
        pending += children
    return found


def current_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # reported in kB
    except (OSError, ValueError):
        return None  # the process ended between two looks
    return None


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1][:300] if lines else "(no output)"
