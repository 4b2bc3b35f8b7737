"""Where a sweep trial's time goes, part by part, for two versions of the code side by side: bench/objective_cost.json.

``python -m bench.objective_cost --version before=/tmp/old --version after=. --rounds 2``, run in a project
whose data has been through the preprocess stage. A version is a folder with ``src/`` and ``params.yaml`` (a
checkout of a commit: ``git worktree add /tmp/old <commit>``); each round runs every version in turn, so a
busy machine slows them alike. A version runs ``--trials`` trials of its params.yaml's sweep (with ``--set``
overrides, and pruning off so every trial runs all its epochs) in fresh interpreters of
``sweep.trials_per_process`` trials each, as `vaelab sweep` would, into a scratch MLflow store and an in-memory
Optuna study whose seeded sampler gives every version the same parameters.

Inside a trial the parts are timed with ``time.perf_counter`` around the functions that do them (each part
counts only its own time, not that of the parts it calls): the objective (``estimate_nll``), the pictures
(``upload_trial_pictures``), MLflow (``vaelab.tracking.runs`` and the epoch logger), model build and the first
batch (``train()`` until its first batch ends: building, compiling and tracing the train step), and the rest
of ``train()``, the training epochs. A process's start (interpreter and imports, then config, data and the
``Objective``) is shared by its trials. Resident memory after each trial shows whether a process grows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
OUT = PROJECT / "bench" / "objective_cost.json"
INTERPRETER = "process start: interpreter start and exit"
STARTUP = "process start: imports"
DATA = "process start: config, data, Objective"
BUILD = "model build and first batch (tracing)"
TRAINING = "training epochs (incl. Keras validation loss)"
OBJECTIVE = "objective: validation NLL"
PICTURES = "pictures to the artifact store"
MLFLOW = "MLflow logging"
OTHER = "rest of the trial (sampling, clean-up)"
PER_PROCESS = (INTERPRETER, STARTUP, DATA)
PARTS = (INTERPRETER, STARTUP, DATA, BUILD, TRAINING, OBJECTIVE, PICTURES, MLFLOW, OTHER)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # CPU: both cores' work, steadier on a shared machine


def _now() -> dict[str, float]:
    return {kind: clock() for kind, clock in CLOCKS.items()}


@dataclass
class _Open:
    started: dict[str, float]
    inside: dict[str, float]  # seconds of the parts timed inside this one, by clock


class Clock:
    """Wall and CPU seconds per part; a part timed inside another is taken out of the outer one's."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {kind: dict.fromkeys(PARTS, 0.0) for kind in CLOCKS}
        self._open: list[_Open] = []

    @contextmanager
    def part(self, name: str):
        frame = _Open(_now(), dict.fromkeys(CLOCKS, 0.0))
        self._open.append(frame)
        try:
            yield
        finally:
            self._open.pop()
            now = _now()
            for kind in CLOCKS:
                spent = now[kind] - frame.started[kind]
                self.seconds[kind][name] += spent - frame.inside[kind]
                if self._open:
                    self._open[-1].inside[kind] += spent

    def split_open_part(self, name: str) -> None:
        """Book the innermost open part's own time so far to ``name`` instead (model build, up to now)."""
        frame, now = self._open[-1], _now()
        for kind in CLOCKS:
            spent = now[kind] - frame.started[kind] - frame.inside[kind]
            self.seconds[kind][name] += spent
            frame.inside[kind] += spent

    def timed(self, name: str, function):
        def wrapper(*args, **kwargs):
            with self.part(name):
                return function(*args, **kwargs)

        return wrapper


def instrument(clock: Clock) -> None:
    """Wrap the functions that do each part of a trial (module attributes the trial looks up when it runs)."""
    import keras

    from vaelab import training
    from vaelab.evaluation import likelihood
    from vaelab.sweep import objective
    from vaelab.tracking import epochs, runs

    likelihood.estimate_nll = clock.timed(OBJECTIVE, likelihood.estimate_nll)
    objective.upload_trial_pictures = clock.timed(PICTURES, objective.upload_trial_pictures)
    for name in ("log_params", "log_metrics", "set_tags"):
        setattr(runs, name, clock.timed(MLFLOW, getattr(runs, name)))
    for name in ("on_train_begin", "on_epoch_end"):
        setattr(epochs.MlflowEpochLogger, name, clock.timed(MLFLOW, getattr(epochs.MlflowEpochLogger, name)))
    start_run = runs.start_run

    @contextmanager
    def timed_start_run(*args, **kwargs):
        with clock.part(MLFLOW):
            context = start_run(*args, **kwargs)
            run = context.__enter__()
        try:
            yield run
        except BaseException:
            with clock.part(MLFLOW):
                if not context.__exit__(*sys.exc_info()):
                    raise
        else:
            with clock.part(MLFLOW):
                context.__exit__(None, None, None)

    runs.start_run = timed_start_run

    class FirstBatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seen = False

        def on_train_batch_end(self, batch, logs=None):
            if not self.seen:
                self.seen = True
                clock.split_open_part(BUILD)

    train = training.train

    def timed_train(config, splits, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), FirstBatch()]
        with clock.part(TRAINING):
            return train(config, splits, **kwargs)

    training.train = timed_train


def run_process(params: str, overrides: list[str], trials: int, first_number: int, scratch: Path) -> dict:
    """``trials`` default trials in this fresh process: seconds per part, and resident MB after each trial."""
    clock = Clock()
    with clock.part(STARTUP):
        import keras  # noqa: F401
        import mlflow  # noqa: F401
        import optuna

        from vaelab.config.load import load_config
        from vaelab.data.processed import load_splits
        from vaelab.sweep.objective import Objective
        from vaelab.sweep.storage import open_artifact_store

        instrument(clock)
    with clock.part(DATA):
        changes = dict(item.split("=", 1) for item in overrides)
        config = load_config(params, {key: _value(text) for key, text in {**changes, "sweep.pruner": "none"}.items()})
        objective = Objective(config, load_splits(config.paths.processed), artifact_store=open_artifact_store(scratch / "artifacts"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # The same seeded sampler in every process and version: trial i gets the same parameters everywhere.
    sampler = optuna.samplers.RandomSampler(seed=config.base.seed)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=optuna.pruners.NopPruner())
    per_trial: dict[str, list[dict[str, float]]] = {kind: [] for kind in CLOCKS}
    rss_mb = []
    for number in range(first_number + trials):
        trial = study.ask()
        if number < first_number:  # draw and drop the earlier trials' parameters: this one gets its own
            objective.suggest(trial)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        before = {kind: dict(seconds) for kind, seconds in clock.seconds.items()}
        with clock.part(OTHER):
            study.tell(trial, objective(trial))
        for kind, seconds in clock.seconds.items():
            per_trial[kind].append({name: seconds[name] - before[kind][name] for name in PARTS if name not in PER_PROCESS})
        rss_mb.append(_rss_mb())
    result: dict[str, Any] = {
        kind: {"process": {name: seconds[name] for name in PER_PROCESS}, "trials": per_trial[kind]}
        for kind, seconds in clock.seconds.items()
    }
    return {**result, "rss_mb": rss_mb}


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_version(folder: Path, overrides: list[str], trials: int, workdir: Path, scratch: Path) -> dict:
    """``trials`` trials of one version, in processes of its ``sweep.trials_per_process`` trials."""
    per_process = _trials_per_process(folder, overrides, trials)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder / "src"), str(PROJECT)]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["MLFLOW_TRACKING_URI"] = _store_uri(scratch)
    processes = []
    for first in range(0, trials, per_process):
        command = [sys.executable, "-m", "bench.objective_cost", "--child", "--params", str(folder / "params.yaml")]
        command += ["--trials", str(min(per_process, trials - first)), "--first", str(first), "--scratch", str(scratch)]
        command += [f"--set={item}" for item in overrides]
        before, started = os.times(), time.perf_counter()
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        after, wall = os.times(), time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{folder}: the trial process failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        # The interpreter's own start and exit happen outside the clock.
        for kind, total in (("wall", wall), ("cpu", cpu)):
            timed = result[kind]
            timed["process"][INTERPRETER] = total - sum(timed["process"].values()) - sum(sum(t.values()) for t in timed["trials"])
        processes.append(result)
    return {"trials_per_process": per_process, "processes": processes}


def _create_store(scratch: Path) -> None:
    """The scratch MLflow store, created before any trial so that no version's first trial pays for it."""
    code = f"import mlflow; mlflow.MlflowClient({_store_uri(scratch)!r}).search_experiments()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _store_uri(scratch: Path) -> str:
    return f"sqlite:///{scratch / 'mlflow.db'}"


def _trials_per_process(folder: Path, overrides: list[str], trials: int) -> int:
    """The version's sweep.trials_per_process (all trials in one process if null), read as its params.yaml says."""
    import yaml

    params = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))
    value = params.get("sweep", {}).get("trials_per_process", 1)
    for item in overrides:
        key, text = item.split("=", 1)
        if key == "sweep.trials_per_process":
            value = yaml.safe_load(text)
    return trials if value is None else min(int(value), trials)


def per_trial_seconds(run: dict, kind: str = "wall") -> dict[str, float]:
    """Mean seconds per trial and part by the ``kind`` clock, each process's start shared by its trials."""
    timed = [process[kind] for process in run["processes"]]
    trials = [trial for process in timed for trial in process["trials"]]
    seconds = {name: sum(process["process"][name] for process in timed) / len(trials) for name in PER_PROCESS}
    for name in PARTS:
        if name not in PER_PROCESS:
            seconds[name] = statistics.fmean(trial[name] for trial in trials)
    return seconds


def summarize(results: dict[str, list[dict]], kind: str = "wall") -> dict:
    """Per version: median over rounds of the ``kind`` seconds per trial and part, the total, and the shares the issue names."""
    versions: dict[str, dict[str, Any]] = {}
    for label, rounds in results.items():
        rows = [per_trial_seconds(run, kind) for run in rounds]
        medians = {name: statistics.median(row[name] for row in rows) for name in PARTS}
        totals = [sum(row.values()) for row in rows]
        total = statistics.median(totals)
        start = sum(medians[name] for name in PER_PROCESS)
        versions[label] = {
            "seconds_per_trial": medians,
            "total_seconds_per_trial": total,
            "totals_by_round": totals,
            "shares": {name: seconds / total for name, seconds in medians.items()},
            "objective_and_process_start_share": (medians[OBJECTIVE] + start) / total,
            "objective_process_start_and_build_share": (medians[OBJECTIVE] + start + medians[BUILD]) / total,
            "rss_mb_after_each_trial": [process["rss_mb"] for run in rounds for process in run["processes"]],
        }
    first = next(iter(versions.values()))
    for figures in versions.values():
        figures["total_over_first_version"] = figures["total_seconds_per_trial"] / first["total_seconds_per_trial"]
        figures["ratios_by_round"] = [
            mine / theirs for mine, theirs in zip(figures["totals_by_round"], first["totals_by_round"], strict=True)
        ]
    return versions


def markdown(versions: dict, kind: str = "wall") -> str:
    labels = list(versions)
    lines = [
        f"| part of a trial ({kind} s) | " + " | ".join(f"{label}: s (share)" for label in labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for name in PARTS:
        cells = [f"{versions[label]['seconds_per_trial'][name]:.1f} ({versions[label]['shares'][name]:.0%})" for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **total per trial** | " + " | ".join(f"{versions[label]['total_seconds_per_trial']:.1f}" for label in labels) + " |")
    lines.append(
        "| objective + process start | "
        + " | ".join(f"{versions[label]['objective_and_process_start_share']:.0%}" for label in labels)
        + " |"
    )
    lines.append(
        "| total / first version's | " + " | ".join(f"{versions[label]['total_over_first_version']:.2f}" for label in labels) + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.objective_cost", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action="append", default=[], metavar="LABEL=FOLDER", help="a folder with src/ and params.yaml (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of every version, interleaved (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=2, help="trials per version and round (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params override for every version")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_process(args.params, args.set, args.trials, args.first, args.scratch)))
        return
    from bench.report import machine

    versions = dict(item.split("=", 1) for item in args.version) or {"current": str(PROJECT)}
    results: dict[str, list[dict]] = {label: [] for label in versions}
    about = machine(None)
    with tempfile.TemporaryDirectory(prefix="vaelab-objective-cost-") as scratch:
        _create_store(Path(scratch))
        for _ in range(args.rounds):
            for label, folder in versions.items():
                results[label].append(run_version(Path(folder).resolve(), args.set, args.trials, Path.cwd(), Path(scratch)))
    about["load_average_end"] = list(os.getloadavg())
    summaries = {kind: summarize(results, kind) for kind in CLOCKS}
    tables = {kind: markdown(summary, kind) for kind, summary in summaries.items()}
    settings = {"rounds": args.rounds, "trials_per_round": args.trials, "overrides": args.set, "versions": versions}
    figures = {"machine": about, "settings": settings, "versions": summaries, "tables": tables, "runs": results}
    args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print("\n\n".join(tables.values()))


if __name__ == "__main__":
    main()
