"""Where the evaluate stage's time goes, phase by phase, for one or more versions of the code side by side.

``python -m bench.evaluate_cost --src src --src /tmp/old/src --rounds 2``, run in a project that has been
through the train and classifier stages (it reads params.yaml, the processed data, the model, the classifier
and the MLflow run like the stage does, and registers a model version in that run's store each time: use a
scratch project). Each round runs every ``--src`` once, in turn, as a fresh interpreter with that folder on
PYTHONPATH, so a busy machine slows all of them alike; the table gives the median per phase, wall and CPU
seconds (CPU adds up both cores' work: on a shared machine it is the steadier figure), and each version's
total against the first one's. Only functions that every version has are called, phase by phase in the
stage's order; "start-up" is the interpreter and the imports the stage needs before it computes anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


class Phases:
    """Wall and CPU seconds since the previous :meth:`mark`, by name."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def mark(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.rows[name] = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


def measure_phases(params: str) -> dict[str, tuple[float, float]]:
    """One evaluation of the project's model, split into phases; run in a fresh process."""
    phases = Phases()
    import keras
    import matplotlib.pyplot  # noqa: F401 - the plots module's import, counted with the start-up
    import mlflow  # noqa: F401

    import vaelab.model  # noqa: F401 - registers the layers load_model looks up
    from vaelab.config.load import load_config
    from vaelab.data.processed import load_splits
    from vaelab.evaluation import likelihood, metrics, quality, report

    phases.mark("start-up: imports (TensorFlow, MLflow, matplotlib)")
    config = load_config(params)
    ev, seed = config.evaluate, config.base.seed
    splits = load_splits(config.paths.processed)
    model = keras.models.load_model(config.paths.model, safe_mode=True)
    phases.mark("load config, data and model")
    _, test_means = metrics.loss_terms(model, splits.x_test, ev.batch_size, seed)
    phases.mark("test loss, negative ELBO, MSE, KL (encode + 2 decodes)")
    metrics.latent_classifier_accuracies(model, splits, test_means, config)
    phases.mark("latent 5-NN and logistic regression (encode train images)")
    nll = likelihood.estimate_nll(model, splits.x_test, ev.nll_samples, ev.nll_images, seed, ev.batch_size)
    phases.mark(f"test NLL (K={ev.nll_samples} on {ev.nll_images} images)")
    judge = report.load_classifier(config, splits)
    if judge is not None:
        binary = config.data.binarize != "none"
        quality.sample_quality(
            judge, model, splits.x_test, ev.quality_samples, seed, ev.batch_size, binary=binary, **_real_statistics(config, splits)
        )
    phases.mark(f"sample quality ({ev.quality_samples} samples, and the test images if the classifier stage saved no statistics)")
    report.write_plots(model, splits, config)
    phases.mark("plots")
    _log_and_register(config, nll)
    phases.mark("MLflow: start run, log metrics and plots, register the model")
    return phases.rows


def _real_statistics(config, splits) -> dict:
    """The test images' saved feature statistics, as the evaluate stage reads them, in a version that saves them."""
    try:
        from vaelab.evaluation import real_features
    except ImportError:  # older code passes the test images through the classifier in every evaluation
        return {}
    return {"real_statistics": real_features.load(config.paths.classifier, "test", splits.x_test)}


def _log_and_register(config, nll: float) -> None:
    from vaelab.metric_names import evaluate_nll_metric
    from vaelab.tracking import runs
    from vaelab.tracking.registry import register_evaluated_model
    from vaelab.tracking.run_info import read_run_info

    run_id = read_run_info(config.paths.run_info)
    scores = {evaluate_nll_metric(config): nll}
    with runs.start_run(config, run_id=run_id):
        runs.log_metrics(scores)
        for png in sorted(config.paths.plots.glob("*.png")):
            runs.log_artifact(png, "plots")
        register_evaluated_model(run_id, config, scores)


def run_child(src: Path, params: str) -> dict[str, tuple[float, float]]:
    """The phases of one fresh interpreter with ``src`` on PYTHONPATH; start-up counts from before it starts."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(PROJECT)]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.evaluate_cost", "--child", "--params", params], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - started
    after = os.times()
    rows = {name: tuple(value) for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    child_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    # The interpreter's own start and exit happen outside the phases: add them to the start-up.
    name = next(iter(rows))
    rows[name] = (rows[name][0] + wall - sum(w for w, _ in rows.values()), rows[name][1] + child_cpu - sum(c for _, c in rows.values()))
    return rows


def table(sources: list[Path], results: dict[Path, list[dict[str, tuple[float, float]]]]) -> str:
    """Median wall and CPU seconds per phase and version, then totals and each total against the first version's."""
    names = list(results[sources[0]][0])
    header = "| phase | " + " | ".join(f"{src}: wall s / CPU s" for src in sources) + " |"
    lines = [header, "|---" * (len(sources) + 1) + "|"]
    totals = {}
    for name in names:
        cells = []
        for src in sources:
            wall = statistics.median(run[name][0] for run in results[src] if name in run)
            cpu = statistics.median(run[name][1] for run in results[src] if name in run)
            cells.append(f"{wall:.1f} / {cpu:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for src in sources:
        totals[src] = (
            statistics.median(sum(w for w, _ in run.values()) for run in results[src]),
            statistics.median(sum(c for _, c in run.values()) for run in results[src]),
        )
    lines.append("| **total** | " + " | ".join(f"{totals[src][0]:.1f} / {totals[src][1]:.1f}" for src in sources) + " |")
    first_wall, first_cpu = totals[sources[0]]
    ratios = (f"{wall / first_wall:.2f} / {cpu / first_cpu:.2f}" for wall, cpu in totals.values())
    lines.append("| total / first version's | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, help="a vaelab source folder (repeatable; default: this repository's src)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every version, interleaved (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="the project's params file (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_phases(args.params)))
        return
    sources = args.src or [PROJECT / "src"]
    results: dict[Path, list[dict[str, tuple[float, float]]]] = {src: [] for src in sources}
    for _ in range(args.rounds):
        for src in sources:
            results[src].append(run_child(src.resolve(), args.params))
    print(table(sources, results))


if __name__ == "__main__":
    main()
