"""Pipeline overhead, stage memory and the evaluate stage's cost, measured on a scratch copy of the project.

The scratch folder holds the project's files as a clone would (DVC hashes the code as dependencies),
a params.yaml derived from the project's, the raw data (the project's real download, or in tiny mode a
random MNIST-shaped set written in the raw format) and its own DVC repository and MLflow store. Each
round runs the stages of dvc.yaml as child processes (train through bench/probe_train.py, for the time
to its first step), records their outputs with ``dvc commit``, and then times ``dvc repro``, which finds
nothing to do.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from bench.processes import BenchError, Measured, run_measured

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
PREPOPULATED = "download"  # its output, the raw data, is put in place instead of downloaded
MEASURED_STAGES = ("preprocess", "train", "evaluate")
UP_TO_DATE = "Data and pipelines are up to date."
PIPELINE = "dvc.yaml"
STAGE_TIMEOUT = 3600


def make_workspace(project: Path, work: Path, overrides: dict, fake_raw: tuple[int, int] | None) -> Path:
    """Fill ``work`` (emptied first) with a runnable, DVC-initialised copy of the project; return it.

    ``overrides`` for keys params.yaml does not have are dropped, so renamed settings cannot stop the benchmark.
    """
    from vaelab.config.load import load_config
    from vaelab.config.schema import Config
    from vaelab.files import write_text

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for relative in project_files(project):
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / relative, work / relative)

    known = Config().flat()
    config = load_config(project / "params.yaml", {key: value for key, value in overrides.items() if key in known})
    write_text(work / "params.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    raw = work / config.paths.raw / config.data.dataset
    if fake_raw:
        _write_fake_raw(raw, config.data.dataset, *fake_raw, seed=config.base.seed)
    else:
        source = project / config.paths.raw / config.data.dataset
        if not (source / "manifest.json").exists():
            raise BenchError(f"{source} holds no downloaded data; run `make repro` (or `dvc repro download`) first")
        shutil.copytree(source, raw)
    _run([*dvc_command(), "init", "--no-scm", "-q"], work)
    return work


def project_files(project: Path) -> list[str]:
    """What a clone would hold (tracked and new, not ignored files), without the Git and DVC repositories."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=project, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    skipped = (".dvc/", ".git", ".venv")  # .venv-torch/ too, should .gitignore not list it
    return [p for p in listed if p and not p.startswith(skipped) and (project / p).is_file()]


def measure_rounds(work: Path, rounds: int, logs: Path) -> dict[str, list[float]]:
    """Per round: stage peak RSS, train start-up and epoch time, evaluate time and a no-op ``dvc repro``.

    Round 1 runs every stage of dvc.yaml but download (its output is already there), in file order;
    later rounds only the measured ones, whose outputs come out byte-identical, so the rest stay valid.
    """
    env = stage_env(work)
    stages = stage_commands(work)
    figures: dict[str, list[float]] = {
        key: []
        for key in (
            "preprocess_peak_rss_mb",
            "train_peak_rss_mb",
            "startup_to_first_step_begin_s",
            "startup_to_first_step_end_s",
            "train_epoch_s",
            "evaluate_s",
            "evaluate_fraction_of_epoch",
            "noop_dvc_repro_s",
        )
    }
    for index in range(1, rounds + 1):
        runs, events = {}, {}
        for name, command in stages.items():
            if name == PREPOPULATED or (index > 1 and name not in MEASURED_STAGES):
                continue
            if name == "train":
                events_path = work / "probe-events.json"
                events_path.unlink(missing_ok=True)
                command = [sys.executable, str(BENCH_DIR / "probe_train.py"), str(events_path), *command[2:]]
            runs[name] = run_measured(command, cwd=work, env=env, log=logs / f"{name}-{index}.log", timeout=STAGE_TIMEOUT)
            if name == "train":
                events = json.loads(events_path.read_text(encoding="utf-8"))
        epoch_seconds = events["epochs"][0]["steady_seconds"]

        noop = commit_then_repro(work, env, logs / f"dvc-repro-{index}.log")

        started = runs["train"].started
        figures["preprocess_peak_rss_mb"].append(runs["preprocess"].peak_rss_mb)
        figures["train_peak_rss_mb"].append(runs["train"].peak_rss_mb)
        figures["startup_to_first_step_begin_s"].append(events["first_step_begin"] - started)
        figures["startup_to_first_step_end_s"].append(events["first_step_end"] - started)
        figures["train_epoch_s"].append(epoch_seconds)
        figures["evaluate_s"].append(runs["evaluate"].wall_seconds)
        figures["evaluate_fraction_of_epoch"].append(runs["evaluate"].wall_seconds / epoch_seconds)
        figures["noop_dvc_repro_s"].append(noop.wall_seconds)
        log.info(
            "stages round %d/%d: first step after %.1f s, epoch %.1f s, evaluate %.1f s, no-op dvc repro %.2f s",
            index,
            rounds,
            figures["startup_to_first_step_end_s"][-1],
            epoch_seconds,
            runs["evaluate"].wall_seconds,
            noop.wall_seconds,
        )
    return figures


def commit_then_repro(work: Path, env: dict[str, str], log_path: Path) -> Measured:
    """Record dvc.yaml's stage outputs with ``dvc commit``, then time ``dvc repro``; BenchError unless a no-op."""
    # dvc.yaml's stages only: a .dvc file elsewhere in the project tracks data the scratch copy does not
    # have (its outputs live in the project's DVC cache), and `dvc commit` of everything stops on it.
    _run([*dvc_command(), "commit", "-f", PIPELINE], work, env)
    noop = run_measured([*dvc_command(), "repro", PIPELINE], cwd=work, env=env, log=log_path, timeout=STAGE_TIMEOUT)
    if UP_TO_DATE not in log_path.read_text(encoding="utf-8", errors="replace"):
        raise BenchError(f"`dvc repro` after `dvc commit` was not a no-op (see {log_path})")
    return noop


def stage_commands(work: Path) -> dict[str, list[str]]:
    """dvc.yaml's stages in file order -> their commands, ``python`` being this interpreter."""
    stages = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    commands = {}
    for name, stage in stages.items():
        command = shlex.split(stage["cmd"]) if isinstance(stage.get("cmd"), str) else []
        if not command or command[0] != "python":
            raise BenchError(f"dvc.yaml stage {name!r}: expected a `python ...` command, found {stage.get('cmd')!r}")
        commands[name] = [sys.executable, *command[1:]]
    missing = [name for name in (PREPOPULATED, *MEASURED_STAGES) if name not in commands]
    if missing:
        raise BenchError(f"dvc.yaml has no stage {', '.join(missing)}; the benchmark measures these")
    if commands["train"][1:2] != ["pipeline/train.py"]:
        raise BenchError(f"dvc.yaml stage 'train' runs {stages['train']['cmd']!r}; bench/probe_train.py stands in for pipeline/train.py")
    return commands


def stage_env(work: Path) -> dict[str, str]:
    """What ``make repro`` gives a stage: the venv first on PATH, a local MLflow store, quiet TensorFlow."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["DVC_NO_ANALYTICS"] = "1"
    for key in ("VAELAB_OPTUNA_STORAGE", "DVC_EXP_NAME"):
        env.pop(key, None)
    return env


def dvc_command() -> list[str]:
    script = Path(sys.executable).parent / "dvc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dvc"]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, env=env or stage_env(cwd), capture_output=True, text=True, timeout=STAGE_TIMEOUT)
    if done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[-1]
        raise BenchError(f"{' '.join(command)} failed in {cwd}: {message}")


def _write_fake_raw(folder: Path, dataset: str, n_train: int, n_test: int, seed: int) -> None:
    from vaelab.data.raw import write_raw

    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    write_raw(folder, dataset=dataset, source="random images (benchmark tiny mode)", class_names=[str(d) for d in range(10)], arrays=arrays)
