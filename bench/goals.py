"""The benchmark's goals (issue 14, and the pipeline goals of earlier issues), judged on the medians.

vaelab in its fastest setting >= 1.5x the float32 plain Keras reference at batch 32 and 128, with the
quality check within 1%; at equal precision >= 1.1x the Keras reference and >= 1.5x PyTorch eager;
>= 50% of the measured matmul peak of the precision vaelab trains in; a no-op ``dvc repro`` <= 3 s; train
start-up to first step <= 10 s; the evaluate stage <= 20% of a training epoch; sweep memory growing
<= 2 MB per trial; a pruned sweep with <= 50% of the unpruned sweep's epochs and a best value within 2%.
"""

from __future__ import annotations

from bench.stats import goal
from bench.sweeps import FLAT_MB_PER_TRIAL


def judge_goals(results: dict, batches: tuple[int, ...]) -> dict:
    """Every goal, judged on the medians in ``results`` (see bench.stats.goal)."""
    out = {}
    for batch in batches:
        figures = results["throughput"][f"batch_{batch}"]
        out[f"vaelab_over_keras_reference_batch_{batch}"] = goal(
            f"vaelab / float32 Keras reference, batch {batch}", figures["vaelab_over_keras_reference"], ">=", 1.5, "×"
        )
        out[f"vaelab_over_keras_reference_equal_precision_batch_{batch}"] = goal(
            f"vaelab / Keras reference at equal precision, batch {batch}",
            figures["vaelab_over_keras_reference_equal_precision"],
            ">=",
            1.1,
            "×",
        )
        out[f"vaelab_over_torch_eager_equal_precision_batch_{batch}"] = goal(
            f"vaelab / PyTorch eager at equal precision, batch {batch}", figures["vaelab_over_torch_eager_equal_precision"], ">=", 1.5, "×"
        )
        out[f"fraction_of_matmul_peak_batch_{batch}"] = goal(
            f"share of the matmul peak of its precision, batch {batch}", figures["vaelab_fraction_of_peak"], ">=", 0.5, ""
        )
    quality = results["quality"]
    gap = None if quality["gap"] is None else abs(quality["gap"])
    out["quality_gap"] = goal(
        "quality check: test neg. ELBO gap to float32 (either way)", {"median": gap, "status": quality["status"]}, "<=", 0.01, ""
    )
    pipeline_figures = results["pipeline"]
    out["noop_dvc_repro_s"] = goal("no-op dvc repro", pipeline_figures["noop_dvc_repro_s"], "<=", 3.0, " s")
    out["startup_to_first_step_s"] = goal("train start-up to first step", pipeline_figures["startup_to_first_step_end_s"], "<=", 10.0, " s")
    out["evaluate_fraction_of_epoch"] = goal(
        "evaluate stage / one training epoch", pipeline_figures["evaluate_fraction_of_epoch"], "<=", 0.2, ""
    )
    memory = results["memory"]
    out["sweep_growth_mb_per_trial"] = goal(
        f"sweep memory growth per trial ({memory['sweep_trials']} trials)",
        {"median": memory["sweep_growth_mb_per_trial"], "status": memory["status"]},
        "<=",
        FLAT_MB_PER_TRIAL,
        " MB",
    )
    status = results["sweeps"]["status"]
    out["pruned_sweep_epochs_fraction"] = goal(
        "pruned sweep epochs / unpruned", {"median": results["sweeps"]["epochs_fraction"], "status": status}, "<=", 0.5, ""
    )
    out["pruned_best_value_gap"] = goal(
        "pruned best value, relative gap", {"median": results["sweeps"]["best_value_gap"], "status": status}, "<=", 0.02, ""
    )
    return out
