"""The benchmark's goals (issues 14 and 26, and the pipeline goals of earlier issues), judged on the medians.

vaelab in mixed bfloat16 >= 1.5x the float32 plain Keras reference at batch 32 and 128 (a goal for bfloat16
only: on a CPU without it there is nothing to gain over float32), with the quality check within 1%; at equal
precision >= 1.2x the Keras reference and >= 1.2x the faster of PyTorch eager and compiled; >= 50% of the
measured matmul peak of the precision vaelab trains in; a no-op ``dvc repro`` <= 3 s; train start-up to first
step <= 10 s; the evaluate stage <= 50% of a training epoch; sweep memory growing <= 2 MB per trial; a pruned
sweep with <= 50% of the unpruned sweep's epochs and a best value within 2%.
"""

from __future__ import annotations

from bench.stats import goal, missing
from bench.sweeps import FLAT_MB_PER_TRIAL

NO_NATIVE_BF16 = "not applicable: no native bfloat16 on this machine"


def judge_goals(results: dict, batches: tuple[int, ...]) -> dict:
    """Every goal, judged on the medians in ``results`` (see bench.stats.goal)."""
    out = {}
    bf16 = results["throughput"]["vaelab_precision"] == "mixed_bfloat16"
    for batch in batches:
        figures = results["throughput"][f"batch_{batch}"]
        over_float32 = figures["vaelab_over_keras_reference"] if bf16 else missing(NO_NATIVE_BF16, "ratio")
        out[f"vaelab_over_keras_reference_batch_{batch}"] = goal(
            f"vaelab in mixed bfloat16 / float32 Keras reference, batch {batch}", over_float32, ">=", 1.5, "×"
        )
        out[f"vaelab_over_keras_reference_equal_precision_batch_{batch}"] = goal(
            f"vaelab / Keras reference at equal precision, batch {batch}",
            figures["vaelab_over_keras_reference_equal_precision"],
            ">=",
            1.2,
            "×",
        )
        best = (figures.get("best_torch_equal_precision") or "best PyTorch").replace("_bf16", "").replace("_", " ")
        out[f"vaelab_over_best_torch_equal_precision_batch_{batch}"] = goal(
            f"vaelab / {best} (the faster PyTorch) at equal precision, batch {batch}",
            figures["vaelab_over_best_torch_equal_precision"],
            ">=",
            1.2,
            "×",
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
        "evaluate stage / one training epoch", pipeline_figures["evaluate_fraction_of_epoch"], "<=", 0.5, ""
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
