"""One training on 1 and on 2 worker processes of this machine, side by side: time per epoch and loss agreement.

``python -m bench.workers --out bench/workers.json`` (about 10 minutes at the defaults on 2 cores) trains the
chapter's model at params.yaml's settings on the first ``--train-images`` of the project's processed training
split (run the download and preprocess stages first; validation and test splits whole) with ``vaelab train``
and with ``vaelab train --workers 2``, each for ``--epochs`` epochs into its own SQLite store. An epoch's
time is the gap between the MLflow timestamps of consecutive epochs' metrics (so it includes validation
and logging, as a user waits for it); the first epoch, which also compiles, is left out. On one 2-core
machine two workers share the same cores: this is a correctness check of the multi-worker path with its
cost, not a speed-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from mlflow.tracking import MlflowClient

PROJECT = Path(__file__).resolve().parents[1]


def measure(workers: int, epochs: int, images: int, folder: Path) -> dict:
    """Train in ``folder`` (a project from :func:`project_copy`) on ``workers`` processes."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    command = [sys.executable, "-m", "vaelab.cli", "train", "--set", f"train.epochs={epochs}", "--set", f"data.max_train={images}"]
    if workers > 1:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - started
    client = MlflowClient(uri)
    (run,) = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda metric: metric.step)
    val = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda metric: metric.step)
    gaps = [(later.timestamp - earlier.timestamp) / 1000 for earlier, later in itertools.pairwise(history)]
    return {
        "workers": workers,
        "seconds_per_epoch": gaps,
        "median_seconds_per_epoch": statistics.median(gaps),
        "wall_seconds": wall,
        "loss": [metric.value for metric in history],
        "val_loss": [metric.value for metric in val],
    }


def project_copy(root: Path, processed: Path) -> Path:
    """A scratch project: params.yaml as it is, ``processed`` linked as its processed data, nothing else."""
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    (folder / "data").mkdir()
    (folder / "data/processed").symlink_to(processed.resolve())
    (folder / "params.yaml").write_text((root / "params.yaml").read_text())
    return folder


def training_subset(root: Path, images: int) -> Path:
    """The project's processed data with the training split cut to its first ``images``, recorded as data.max_train."""
    from vaelab.data.processed import load_splits, read_meta, write_splits

    splits, meta = load_splits(root / "data/processed"), read_meta(root / "data/processed")
    arrays = {"x_train": np.asarray(splits.x_train[:images]), "y_train": splits.y_train[:images]}
    arrays.update({f"{kind}_{split}": getattr(splits, f"{kind}_{split}") for split in ("val", "test") for kind in ("x", "y")})
    arrays.update({f"x_{split}": np.asarray(arrays[f"x_{split}"]) for split in ("val", "test")})
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-data-"))
    kept = {key: value for key, value in meta.items() if key not in ("shards", "counts")}
    write_splits(folder, arrays, {**kept, "max_train": images})
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training; the first is not timed (default: %(default)s)")
    parser.add_argument("--train-images", type=int, default=12_000, help="training images (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=PROJECT / "bench/workers.json", help="results file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (PROJECT / "data/processed/meta.json").exists():
        sys.exit("bench.workers: no data/processed here; run `python pipeline/download.py && python pipeline/preprocess.py` first")

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    meta = json.loads((PROJECT / "data/processed/meta.json").read_text())
    processed = training_subset(PROJECT, args.train_images)
    results = [measure(workers, args.epochs, args.train_images, project_copy(PROJECT, processed)) for workers in (1, 2)]
    one, two = results
    agreement = max(abs(b - a) / abs(a) for a, b in zip(one["loss"] + one["val_loss"], two["loss"] + two["val_loss"], strict=True))
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "dataset": meta.get("dataset"),
        "train_images": args.train_images,
        "batch_size": params["train"]["batch_size"],
        "epochs": args.epochs,
        "runs": results,
        "epoch_time_ratio_2_to_1": two["median_seconds_per_epoch"] / one["median_seconds_per_epoch"],
        "largest_relative_loss_difference": agreement,
    }
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(args.out)
    for run in results:
        print(f"{run['workers']} worker(s): {run['median_seconds_per_epoch']:.1f} s per epoch, losses {[round(v, 2) for v in run['loss']]}")
    print(f"2 workers / 1: {summary['epoch_time_ratio_2_to_1']:.2f}x the time per epoch; losses within {agreement:.2%}")


if __name__ == "__main__":
    main()
