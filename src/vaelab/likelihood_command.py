"""`vaelab likelihood`: the paper-grade test NLL, K = 5000 importance samples on every test image by default.

The figure VAE papers report (Burda et al. 2016) costs K decoder passes per image: 50 million for MNIST's
10,000 test images, tens of minutes on a laptop CPU. So the evaluate stage estimates with fewer samples,
and this command gives the full figure for the model the pipeline trained (``paths.model``):

- compiled and batched (:mod:`vaelab.evaluation.likelihood`), memory bounded by ``--batch`` latent points at a time;
- progress shown (a bar on a terminal, a line every half minute in a log);
- resumable: finished images are saved to ``<out>.partial.npz`` every half minute, and a re-run with the
  same model and settings continues from there, with the same result an uninterrupted run gives (each
  image's draws depend only on the seed and the image's number);
- written to ``--out`` (JSON: the metric, its standard error, K, images, seconds) and logged to the model's
  MLflow run under the metric's name, e.g. ``test_nll_k5000_binarized_nats``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vaelab import logs
from vaelab.cli_common import add_config_arguments, config_from_args, run_guarded
from vaelab.errors import DataError

log = logging.getLogger(__name__)

SAVE_EVERY_SECONDS = 30.0
DESCRIPTION = "the paper-grade test NLL of the trained model (K = 5000 importance samples, all test images); resumable"


def main(argv: Sequence[str] | None = None) -> None:
    """`vaelab likelihood [--samples K] [--images N|all] [--batch B] [--out FILE] [--no-mlflow]`."""
    parser = argparse.ArgumentParser(
        prog="vaelab likelihood",
        description=DESCRIPTION,
        epilog="Example: vaelab likelihood --samples 5000 --images all  (resume by running it again)",
    )
    add_config_arguments(parser)
    parser.add_argument("--samples", type=_positive, default=5000, help="K, importance samples per image (default: %(default)s)")
    parser.add_argument("--images", type=_images, default=None, metavar="N|all", help="test images: a seeded subset of N, or all (default)")
    parser.add_argument("--batch", type=_positive, default=2500, help="latent points decoded at once; bounds memory (default: %(default)s)")
    parser.add_argument("--out", default="reports/likelihood.json", help="result file (default: %(default)s)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the figure to the model's MLflow run")
    args = parser.parse_args(argv)
    logs.configure()
    sys.exit(run_guarded(lambda: run(args)))


def run(args: argparse.Namespace) -> dict:
    from vaelab.data.processed import check_made_from

    config = config_from_args(args)
    check_made_from(config.paths.processed, config.split_settings())  # before TensorFlow loads
    if config.data.binarize == "none":
        log.warning("data.binarize is none: this is a cross-entropy of grey levels, not a likelihood papers report")

    import keras

    import vaelab.model  # noqa: F401 - registers the custom layers load_model looks up
    from vaelab.data.processed import load_splits
    from vaelab.evaluation.likelihood import importance_sampled_nll, subset_indices
    from vaelab.files import write_json
    from vaelab.metric_names import nll_metric

    model_path = Path(config.paths.model)
    if not model_path.is_file():
        raise DataError(f"{model_path}: no trained model; run `dvc repro train` first")
    model = keras.models.load_model(model_path, safe_mode=True)
    x_test = load_splits(config.paths.processed).x_test
    seed, k = config.base.seed, args.samples
    indices = subset_indices(len(x_test), args.images, seed)
    out = Path(args.out)
    partial = Partial(out.with_name(out.name + ".partial.npz"), _identity(model_path, k, seed, indices))
    done = partial.load()
    if len(done):
        log.info("resuming: %d of %d images were estimated before (%s)", len(done), len(indices), partial.path)

    started = time.monotonic()
    progress = _Progress(len(indices), len(done))
    results = list(done)
    block = max(1, args.batch // k) * 8  # images between two chances to save
    last_save = time.monotonic()
    for first in range(len(done), len(indices), block):
        chosen = indices[first : first + block]
        nll = importance_sampled_nll(model, x_test[chosen], k, seed, args.batch, indices=chosen, progress=progress.after(first))
        results.extend(nll.tolist())
        if time.monotonic() - last_save > SAVE_EVERY_SECONDS:
            partial.save(results)
            last_save = time.monotonic()
    progress.finish()

    values = np.asarray(results, dtype=np.float64)
    name = nll_metric("test", k, config.data.binarize)
    result = {
        name: float(values.mean()),
        "standard_error_nats": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None,
        "importance_samples": k,
        "images": len(values),
        "test_images": len(x_test),
        "binarize": config.data.binarize,
        "seed": seed,
        "model": str(model_path),
        "seconds_this_run": round(time.monotonic() - started, 1),
    }
    write_json(out, result)
    partial.path.unlink(missing_ok=True)
    print(
        f"{name}: {result[name]:.2f} nats (standard error {result['standard_error_nats'] or 0:.2f}) "
        f"on {len(values):,} test images; written to {out}"
    )
    if not args.no_mlflow:
        _log_to_run(config, {name: result[name]}, out)
    return result


class Partial:
    """Per-image NLLs finished so far, saved atomically with what they were computed for."""

    def __init__(self, path: Path, identity: str):
        self.path = path
        self.identity = identity

    def load(self) -> list[float]:
        if not self.path.exists():
            return []
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                if str(saved["identity"]) != self.identity:
                    log.warning("ignoring %s: it was computed for another model, K, seed or image set", self.path)
                    return []
                return saved["nll"].tolist()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("ignoring %s: unreadable (%s)", self.path, err)
            return []

    def save(self, results: list[float]) -> None:
        from vaelab.files import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, identity=np.array(self.identity), nll=np.asarray(results, dtype=np.float64))


class _Progress:
    """A Keras progress bar on a terminal; in a log, one line every half minute with the rate and time left."""

    def __init__(self, total: int, done: int):
        self.total, self.start_done = total, done
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if sys.stdout.isatty():
            import keras

            self.bar = keras.utils.Progbar(total, unit_name="image")
            self.bar.update(done)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)
            return
        now = time.monotonic()
        if now - self.last_line >= SAVE_EVERY_SECONDS:
            self.last_line = now
            rate = (done - self.start_done) / max(now - self.started, 1e-9)
            left = (self.total - done) / rate if rate > 0 else float("inf")
            log.info("%d/%d images, %.1f images/s, about %.0f min left", done, self.total, rate, left / 60)

    def after(self, first: int) -> Callable[[int], None]:
        """``update`` for a block that starts ``first`` images in, called with the block's images done."""
        return lambda n: self.update(first + n)

    def finish(self) -> None:
        if self.bar is None:
            log.info("%d/%d images in %.0f s", self.total, self.total, time.monotonic() - self.started)


def _identity(model_path: Path, k: int, seed: int, indices: np.ndarray) -> str:
    from vaelab.data.raw import sha256_file

    digest = hashlib.sha256(sha256_file(model_path).encode())
    digest.update(json.dumps({"k": k, "seed": seed}).encode())
    digest.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _log_to_run(config, metrics: dict[str, float], out: Path) -> None:
    from vaelab.tracking import runs
    from vaelab.tracking.run_info import read_run_info

    if not Path(config.paths.run_info).exists():
        log.warning("no %s: the figure is not logged to MLflow (the model has no recorded run)", config.paths.run_info)
        return
    run_id = read_run_info(config.paths.run_info)
    with runs.start_run(config, run_id=run_id):
        runs.log_metrics(metrics)
        runs.log_artifact(out)
    log.info("logged %s to MLflow run %s", ", ".join(metrics), run_id)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _images(text: str) -> int | None:
    return None if text == "all" else _positive(text)
