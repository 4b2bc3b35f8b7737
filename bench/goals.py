"""The issue's goals for the benchmark: vaelab >= 1.5x both references at batch 32 and 128, >= 50% of the
matmul peak, a no-op ``dvc repro`` <= 3 s, train start-up to first step <= 10 s, and a pruned sweep with
<= 50% of the unpruned sweep's epochs whose best value is within 2%."""

from __future__ import annotations

from bench.stats import goal


def judge_goals(results: dict, batches: tuple[int, ...]) -> dict:
    """Every goal of the issue, judged on the medians in ``results`` (see bench.stats.goal)."""
    out = {}
    for batch in batches:
        figures = results["throughput"][f"batch_{batch}"]
        out[f"vaelab_over_keras_reference_batch_{batch}"] = goal(
            f"vaelab / plain Keras, batch {batch}", figures["vaelab_over_keras_reference"], ">=", 1.5, "×"
        )
        out[f"vaelab_over_torch_eager_batch_{batch}"] = goal(
            f"vaelab / PyTorch eager, batch {batch}", figures["vaelab_over_torch_eager"], ">=", 1.5, "×"
        )
        out[f"fraction_of_matmul_peak_batch_{batch}"] = goal(
            f"share of matmul peak, batch {batch}", figures["vaelab_fraction_of_peak"], ">=", 0.5, ""
        )
    pipeline_figures = results["pipeline"]
    out["noop_dvc_repro_s"] = goal("no-op dvc repro", pipeline_figures["noop_dvc_repro_s"], "<=", 3.0, " s")
    out["startup_to_first_step_s"] = goal("train start-up to first step", pipeline_figures["startup_to_first_step_end_s"], "<=", 10.0, " s")
    status = results["sweeps"]["status"]
    out["pruned_sweep_epochs_fraction"] = goal(
        "pruned sweep epochs / unpruned", {"median": results["sweeps"]["epochs_fraction"], "status": status}, "<=", 0.5, ""
    )
    out["pruned_best_value_gap"] = goal(
        "pruned best value, relative gap", {"median": results["sweeps"]["best_value_gap"], "status": status}, "<=", 0.02, ""
    )
    return out
