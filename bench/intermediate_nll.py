"""Whether pruning on a cheaper NLL estimate before the last epoch stops the same trials: writes bench/intermediate_nll.json.

``python -m bench.intermediate_nll record --seed 42 --seed 7`` (30-45 minutes a seed on a busy 2-core machine) runs an unpruned study
per seed in this process, on the project's processed data, and records after every epoch the validation NLL
(``evaluate.nll_samples`` draws) of each of the ``evaluate.nll_images`` scored images. A cheaper estimate at an
intermediate epoch is the mean over the first ``n`` of those images (``sweep.pruning_nll_images``), so one
recording gives its value for every ``n``: each image's figure does not depend on which others are estimated
with it (its draws are seeded by its index).

``python -m bench.intermediate_nll judge`` then replays every candidate pruner of :mod:`bench.pruning` on each
seed's curves twice, through :mod:`bench.replay`: with the full estimate at every epoch, as today, and with the
mean over the first ``n`` images before the last epoch. A size is accepted for a pruner when every replay stops
the same trials after the same epochs; the last epoch's value is the full estimate in both, so the best value
is the same too.

Like bench/pruning.py (whose settings it shares: 4 epochs, 2,000 training images, its first 10 trials, where TPE
samples at random so a pruned study would sample the same parameters), but the recorded values are the NLL,
the objective since then, and all seeds share the project's validation split (base.seed seeds the sampler,
weights and shuffling here, not the split).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
from pathlib import Path

import numpy as np

from bench.pruning import BENCH_TRIALS, EPOCHS, MAX_TRAIN, PROJECT, candidates

log = logging.getLogger("bench")

SIZES = (50, 100, 200, 250, 500)  # candidate sweep.pruning_nll_images
OUT = PROJECT / "bench" / "intermediate_nll.json"
MAX_DECODED = 5000  # latent points per decoder pass; a figure does not depend on it (vaelab.evaluation.likelihood)


def record(seed: int, trials: int = BENCH_TRIALS, params: Path = PROJECT / "params.yaml") -> list[dict]:
    """An unpruned study's trials: number, params and, per scored-image count, the curve of mean NLLs."""
    import keras
    import optuna

    from vaelab.config.load import load_config
    from vaelab.data.processed import load_splits
    from vaelab.evaluation.likelihood import importance_sampled_nll, subset_indices
    from vaelab.sweep.objective import Objective
    from vaelab.sweep.storage import make_sampler
    from vaelab.training import train

    config = load_config(params, {"base.seed": seed, "sweep.epochs": EPOCHS, "sweep.max_train": MAX_TRAIN, "sweep.pruner": "none"})
    objective = Objective(config, load_splits(config.paths.processed))
    evaluate = config.evaluate
    x_val = objective.splits.x_val
    chosen = subset_indices(len(x_val), evaluate.nll_images, seed)
    images = np.asarray(x_val[chosen], dtype=np.float32)
    sizes = [n for n in SIZES if n < len(chosen)] + [len(chosen)]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="minimize", sampler=make_sampler(config, seed))
    recorded = []
    for _ in range(trials):
        trial = study.ask()
        curves: dict[str, list[float]] = {str(n): [] for n in sizes}

        class Recorder(keras.callbacks.Callback):
            def __init__(self, curves: dict[str, list[float]]) -> None:
                super().__init__()
                self.curves = curves

            def on_epoch_end(self, epoch, logs=None):
                per_image = importance_sampled_nll(self.model, images, evaluate.nll_samples, seed, MAX_DECODED, indices=chosen)
                for n in sizes:
                    self.curves[str(n)].append(float(np.mean(per_image[:n])))

        trial_config = objective.trial_config(objective.suggest(trial))
        train(trial_config, objective.splits, callbacks=[Recorder(curves)], verbose=0)
        study.tell(trial, curves[str(len(chosen))][-1])
        recorded.append({"number": trial.number, "params": trial.params, "curves": curves})
        log.info("seed %d trial %d: %s", seed, trial.number, [round(v, 2) for v in curves[str(len(chosen))]])
        keras.backend.clear_session()
        gc.collect()
    return recorded


def mixed_curve(curves: dict[str, list[float]], n: str, full: str) -> list[float]:
    """The curve a trial reports with the ``n``-image estimate before its last epoch and the full one at it."""
    return [*curves[n][:-1], curves[full][-1]]


def judge(recorded: dict[str, list[dict]], params: Path = PROJECT / "params.yaml") -> dict[str, dict]:
    """Candidate pruner -> size -> whether every seed's replay stopped the same trials after the same epochs."""
    from bench.replay import replay_pruner
    from vaelab.config.load import load_config, with_overrides

    base = load_config(params, {"sweep.epochs": EPOCHS})
    verdicts: dict[str, dict] = {}
    for name, settings in candidates().items():
        config = with_overrides(base, {f"sweep.{key}": value for key, value in settings.items()})
        verdicts[name] = {}
        for seed, trials in recorded.items():
            full = max(trials[0]["curves"], key=int)
            reference = replay_pruner(config, [t["curves"][full] for t in trials], "bench-pruned").epochs
            for n in trials[0]["curves"]:
                if n == full:
                    continue
                epochs = replay_pruner(config, [mixed_curve(t["curves"], n, full) for t in trials], "bench-pruned").epochs
                verdicts[name].setdefault(n, {})[seed] = {"same": epochs == reference, "epochs": epochs, "full_epochs": reference}
    return verdicts


def smallest_same(verdicts: dict[str, dict], pruner: str) -> int | None:
    """The fewest images whose replays match the full estimate's on every seed for ``pruner``, with every larger size too."""
    sizes = sorted(verdicts[pruner], key=int, reverse=True)
    accepted = None
    for n in sizes:
        if not all(figures["same"] for figures in verdicts[pruner][n].values()):
            break
        accepted = int(n)
    return accepted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intermediate_nll", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "judge"))
    parser.add_argument("--seed", type=int, action="append", help="record: base.seed of a study (repeatable)")
    parser.add_argument("--trials", type=int, default=BENCH_TRIALS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    figures = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    if args.action == "record":
        recorded = figures.setdefault("curves", {})
        for seed in args.seed or [42]:
            recorded[str(seed)] = record(seed, args.trials)
            figures["settings"] = {"epochs": EPOCHS, "max_train": MAX_TRAIN, "trials": args.trials, "sizes": list(SIZES)}
            args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    else:
        verdicts = judge(figures["curves"])
        from vaelab.config.load import load_config

        default = load_config(PROJECT / "params.yaml").sweep
        name = next(n for n, s in candidates().items() if _is_default(s, default))
        figures["judged"] = verdicts
        figures["default_pruner"] = name
        figures["smallest_same_for_default_pruner"] = smallest_same(verdicts, name)
        args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        for pruner in verdicts:
            print(f"{pruner}: {smallest_same(verdicts, pruner)}")
        print(f"default ({name}): {figures['smallest_same_for_default_pruner']}")


def _is_default(settings: dict, sweep) -> bool:
    return all(getattr(sweep, key) == value for key, value in settings.items())


if __name__ == "__main__":
    main()
