"""Which pruner pays: ``python -m bench.pruning`` (about 30 minutes per seed) writes bench/pruning.json.

An unpruned study's values after each epoch do not depend on the pruner, so each seed's learning curves are
recorded once, by an unpruned study of the benchmark's size (``bench.run`` full mode: 2,000 training images,
4 epochs) but with params.yaml's 16 trials, in a scratch workspace of its own (base.seed changes the split).
Every candidate pruner is then replayed against those curves (:mod:`bench.replay`) on the first 10
trials, the benchmark's study, and on all 16, the size of ``make sweep``. With 10 trials, TPE's 10 random
start-up trials make a pruned study sample the very parameters of the unpruned one, so the replay is exact;
trials 11 to 16 would be sampled from a different history, so the 16-trial figures are an approximation.

``--curves FILE`` replays the curves of an earlier pruning.json instead of recording them again.
bench/intermediate_nll.py replays the same candidates to judge a cheaper estimate before the last epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from bench import pipeline, sweeps
from bench.processes import run_measured

log = logging.getLogger("bench")

PROJECT = Path(__file__).resolve().parents[1]
SEEDS = (42, 7, 2024)
TRIALS = 16  # params.yaml's sweep.n_trials
BENCH_TRIALS = 10  # bench.run's full mode
EPOCHS = 4
MAX_TRAIN = 2000
# Issue 14's goals: at most this share of the unpruned study's epochs, for a best value at most this much worse.
EPOCHS_GOAL = 0.5
GAP_GOAL = 0.02


def record_curves(seed: int, scratch: Path) -> list[dict]:
    """Run an unpruned study with ``base.seed=seed`` and return its trials: parameters, curve, final value."""
    work = pipeline.make_workspace(PROJECT, scratch / f"seed-{seed}", {"base.seed": seed}, fake_raw=None)
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = pipeline.stage_env(work)
    preprocess = pipeline.stage_commands(work)["preprocess"]
    run_measured(preprocess, cwd=work, env=env, log=logs / f"preprocess-{seed}.log", timeout=pipeline.STAGE_TIMEOUT)
    name = f"curves-{seed}"
    sweeps.run_study(work, logs, name, trials=TRIALS, epochs=EPOCHS, max_train=MAX_TRAIN, pruner="none")
    trials = sweeps.read_trials(work, work / "sweeps" / f"{name}.journal", name)
    return [{"number": t["number"], "params": t["params"], "curve": t["curve"]} for t in trials]


def candidates() -> dict[str, dict]:
    """Candidate name -> its params.yaml sweep settings; every row of the table is a setting users can choose."""
    found: dict[str, dict] = {"none": {"pruner": "none"}}
    # The more cautious settings first, so that ties go to them (see choose).
    for startup in (5, 3, 2, 1):
        for first in (2, 1):
            found[f"median s{startup} e{first}"] = {"pruner": "median", "pruner_startup_trials": startup, "pruner_min_epochs": first}
            for percentile in (40.0, 25.0, 10.0):
                found[f"percentile {percentile:g} s{startup} e{first}"] = {
                    "pruner": "percentile",
                    "pruner_percentile": percentile,
                    "pruner_startup_trials": startup,
                    "pruner_min_epochs": first,
                }
    for kind in ("successive_halving", "hyperband"):
        for factor in (2, 3, 4):
            for first in (2, 1):
                found[f"{kind} r{factor} e{first}"] = {"pruner": kind, "pruner_reduction_factor": factor, "pruner_min_epochs": first}
    return found


def score(config, curves: list[list[float]], study_name: str) -> dict:
    """A candidate against the unpruned study of ``curves``: its epochs fraction and best value's relative gap."""
    from bench.replay import replay_pruner

    pruned = replay_pruner(config, curves, study_name)
    unpruned_best = min(curve[-1] for curve in curves)
    gap = None if pruned.best_value is None else (pruned.best_value - unpruned_best) / abs(unpruned_best)
    fraction = pruned.epochs_spent / sum(len(curve) for curve in curves)
    return {
        "epochs_fraction": fraction,
        "best_value_gap": gap,
        "meets_goals": fraction <= EPOCHS_GOAL and gap is not None and gap <= GAP_GOAL,
        "epochs": pruned.epochs,
    }


def table(curves_by_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Candidate -> seed -> trials (10, 16) -> score, each seed's curves replayed in trial order."""
    from vaelab.config.load import load_config, with_overrides

    base = load_config(PROJECT / "params.yaml", {"sweep.epochs": EPOCHS})
    rows: dict[str, dict] = {}
    for name, settings in candidates().items():
        config = with_overrides(base, {f"sweep.{key}": value for key, value in settings.items()})
        rows[name] = {
            seed: {
                str(n): score(config, [t["curve"] for t in sorted(trials, key=lambda t: t["number"])[:n]], "bench-pruned")
                for n in (BENCH_TRIALS, TRIALS)
                if len(trials) >= n
            }
            for seed, trials in curves_by_seed.items()
        }
    return rows


def choose(rows: dict[str, dict]) -> str | None:
    """The candidate that spends the fewest epochs on average among those within the best-value goal on every replay.

    Ties go to the earlier candidate in :func:`candidates`, the less aggressive setting. Whether it also meets
    the epochs goal is for the reader of the table to see.
    """
    fractions = {
        name: [figures["epochs_fraction"] for by_trials in by_seed.values() for figures in by_trials.values()]
        for name, by_seed in rows.items()
        if all(_within_gap(figures) for by_trials in by_seed.values() for figures in by_trials.values())
    }
    return min(fractions, key=lambda name: sum(fractions[name]) / len(fractions[name]), default=None)


def _within_gap(figures: dict) -> bool:
    return figures["best_value_gap"] is not None and figures["best_value_gap"] <= GAP_GOAL


def markdown(rows: dict[str, dict]) -> str:
    """The table as Markdown: per seed, epochs fraction / best-value gap with 10 trials, then with 16."""
    seeds = list(next(iter(rows.values())))
    header = "| candidate | " + " | ".join(f"seed {seed}: 10 trials | seed {seed}: 16 trials" for seed in seeds) + " |"
    lines = [header, "|" + " --- |" * (1 + 2 * len(seeds))]
    for name, by_seed in rows.items():
        cells = [_cell(by_seed[seed].get(str(n))) for seed in seeds for n in (BENCH_TRIALS, TRIALS)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(figures: dict | None) -> str:
    if figures is None:
        return "not recorded"
    gap = figures["best_value_gap"]
    return f"{figures['epochs_fraction']:.0%} / " + ("all pruned" if gap is None else f"{gap:+.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/vaelab-pruning"), help="workspaces of the recording studies")
    parser.add_argument("--curves", type=Path, help="replay the curves of this pruning.json instead of recording them")
    parser.add_argument("--out", type=Path, default=PROJECT / "bench" / "pruning.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.curves:
        curves = json.loads(args.curves.read_text(encoding="utf-8"))["curves"]
    else:
        curves = {str(seed): record_curves(seed, args.scratch) for seed in SEEDS}
    rows = table(curves)
    chosen = choose(rows)
    settings = {"trials": [BENCH_TRIALS, TRIALS], "epochs": EPOCHS, "max_train": MAX_TRAIN}
    figures = {"settings": settings, "candidates": candidates(), "chosen": chosen, "table": rows, "curves": curves}
    args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(markdown(rows))
    print(f"chosen: {chosen}")


if __name__ == "__main__":
    main()
