"""Resident memory of the MLflow UI as `make ui` started it before and after the lean switches, one run, one machine.

    python -m bench.ui_memory [--out bench/ui_memory.json] [--settle 30]

Each variant starts `mlflow ui` on the same fresh SQLite store, waits for /health, then until its process tree
has had the same members for ``--settle`` seconds (the job runner starts its huey consumers after the web
server answers), and sums the resident set size (RSS) of every process in the tree (psutil), sampled five
times a second apart; the median is reported. RSS counts pages that forked processes share once per process,
which is what `ps` and `top` show a user; the unique set size (USS, memory that stopping a process frees) is
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from vaelab.tracking.ui import LEAN_UI_ENV, mlflow_ui_command

MB = 1024 * 1024
SAMPLES = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/ui_memory.json"))
    parser.add_argument("--settle", type=float, default=30.0, help="seconds the process tree must stay unchanged")
    args = parser.parse_args(argv)

    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with tempfile.TemporaryDirectory(prefix="ui-memory-") as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments()  # the tables exist before either server starts: no migration in the timing
        variants = {
            # What `make ui` ran before: `mlflow ui` with its defaults.
            "before": (_free_port_command(mlflow_cli, uri, lean=False), {}),
            # What it runs now (vaelab.tracking.ui.run_mlflow_ui): one worker, no job execution or periodic tasks.
            "after": (_free_port_command(mlflow_cli, uri, lean=True), LEAN_UI_ENV),
        }
        results = {name: _measure(command, env, args.settle) for name, (command, env) in variants.items()}

    report = {
        "what": "sum of RSS over the `mlflow ui` process tree, median of 5 samples after the tree settled",
        "machine": _machine(),
        "mlflow": _mlflow_version(),
        "lean_env": LEAN_UI_ENV,
        **results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, result in results.items():
        print(f"{name:>6}: {result['rss_mb']:7.0f} MB RSS, {result['uss_mb']:6.0f} MB USS in {result['processes']} processes")


def _free_port_command(mlflow_cli: Path, uri: str, lean: bool) -> list[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if lean:
        return mlflow_ui_command(mlflow_cli, uri, "127.0.0.1", port)
    return [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]


def _measure(command: list[str], env: dict[str, str], settle: float) -> dict:
    port = command[command.index("--port") + 1]
    # The switches are removed from the "before" environment so that a shell that exported them measures the default.
    base_env = {key: value for key, value in os.environ.items() if key not in LEAN_UI_ENV}
    server = subprocess.Popen(
        command, env={**base_env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        started = time.monotonic()
        _wait_healthy(f"http://127.0.0.1:{port}/health", server)
        healthy_s = time.monotonic() - started
        tree = _settled_tree(server.pid, settle)
        samples = []
        for _ in range(SAMPLES):
            samples.append(_tree_memory(server.pid))
            time.sleep(1)
        return {
            "command": " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command)),
            "env": env,
            "processes": len(tree),
            "process_names": sorted(_names(tree)),
            "rss_mb": round(statistics.median(rss for rss, _ in samples) / MB, 1),
            "uss_mb": round(statistics.median(uss for _, uss in samples) / MB, 1),
            "healthy_after_s": round(healthy_s, 1),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow ui exited with {server.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"mlflow ui did not answer {url} within {timeout:g} s")


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _settled_tree(pid: int, settle: float, timeout: float = 300) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    members = {process.pid for process in _tree(pid)}
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < settle:
        if time.monotonic() > deadline:
            raise SystemExit(f"the process tree of {pid} kept changing for {timeout:g} s")
        time.sleep(1)
        now = {process.pid for process in _tree(pid)}
        if now != members:
            members, stable_since = now, time.monotonic()
    return _tree(pid)


def _tree_memory(pid: int) -> tuple[int, int]:
    rss = uss = 0
    for process in _tree(pid):
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        uss += info.uss
    return rss, uss


def _names(tree: list[psutil.Process]) -> set[str]:
    names = set()
    for process in tree:
        try:
            names.add(" ".join(process.cmdline()[:4])[:120])
        except psutil.Error:
            continue
    return names


def _machine() -> dict:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "amx": "amx_bf16" in flags,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
    }


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


if __name__ == "__main__":
    main()
