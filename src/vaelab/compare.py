"""`vaelab compare`: the runs of an MLflow experiment side by side, as a table and a picture.

What one does in the MLflow UI's comparison view, scriptable: the chosen metrics of every run that has
them, next to the params that vary (``train.z_dim``, ``train.r_loss_factor``), written as
``compare.csv``, ``compare.png`` (each metric against each param) and a self-contained ``compare.html``.
Runs come from :func:`vaelab.tracking.queries.experiment_runs` (``mlflow.search_runs``'s table); nothing here talks
to MLflow directly.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaelab.errors import VaelabError
from vaelab.files import atomic_path, ensure_dir, write_text


def default_metrics(config) -> tuple[str, ...]:
    """NLL and negative ELBO under their names for ``config`` (K, data), sample FID and the 5-NN accuracy."""
    from vaelab.metric_names import evaluate_neg_elbo_metric, evaluate_nll_metric

    return (evaluate_nll_metric(config), evaluate_neg_elbo_metric(config), "sample_fid_classifier", "latent_knn_accuracy")


AXES = ("train.z_dim", "train.r_loss_factor")
# Metrics where larger is better; the rest (losses, distances) are better when smaller.
HIGHER_IS_BETTER = ("accuracy", "confidence", "entropy")


def runs_table(runs: pd.DataFrame, metrics: Sequence[str], params: Sequence[str] = AXES) -> pd.DataFrame:
    """One row per run holding at least one of ``metrics``: ``run``, ``status``, the ``params``, the ``metrics``.

    ``runs`` is ``mlflow.search_runs``'s table. Param values become numbers where they are numbers (MLflow
    stores them as text); a missing value is NaN. The index is the run id; rows keep the runs' order.
    """

    def column(name: str) -> pd.Series:
        return runs[name] if name in runs else pd.Series(math.nan, index=runs.index, dtype=object)

    values = pd.DataFrame({name: pd.to_numeric(column(f"metrics.{name}"), errors="coerce") for name in metrics}, index=runs.index)
    table = pd.DataFrame({"run": column("tags.mlflow.runName"), "status": column("status")})
    for name in params:
        table[name] = [_number_or_text(value if isinstance(value, str) else None) for value in column(f"params.{name}")]
    table = pd.concat([table, values], axis=1)[values.notna().any(axis=1)]
    return table.set_index(pd.Index(column("run_id")[table.index], name="run_id"))


def logged_metrics(runs: pd.DataFrame) -> list[str]:
    """The metric names that any of ``runs`` (``mlflow.search_runs``'s table) has a value for."""
    return sorted(name.removeprefix("metrics.") for name in runs.columns if name.startswith("metrics.") and runs[name].notna().any())


def plot_comparison(table: pd.DataFrame, metrics: Sequence[str], axes: Sequence[str], path: Path | str) -> None:
    """A grid of plots, one row per metric and one column per param, each point a run.

    Runs that share the values of the other params are joined by a line (one line per ``r_loss_factor``
    in the ``z_dim`` column, and the reverse), so a trend is read along a line, not across them.
    """
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    numbers = table[list(dict.fromkeys([*axes, *metrics]))].apply(pd.to_numeric, errors="coerce")
    figure, grid = plt.subplots(len(metrics), len(axes), figsize=(4.4 * len(axes), 2.7 * len(metrics)), dpi=80, squeeze=False)
    for col, param in enumerate(axes):
        others = [other for other in axes if other != param]
        groups = list(numbers.groupby(others, dropna=False)) if others else [((), numbers)]
        for row, metric in enumerate(metrics):
            ax = grid[row][col]
            for key, group in groups:
                shown = group[[param, metric]].dropna().sort_values(param)
                label = ", ".join(f"{name.split('.')[-1]}={value:g}" for name, value in zip(others, np.atleast_1d(key), strict=True))
                ax.plot(shown[param], shown[metric], marker="o", markersize=5, alpha=0.85, label=label or None)
            _param_axis(ax, numbers[param].dropna())
            ax.set_xlabel(param if row == len(metrics) - 1 else "")
            ax.set_ylabel(f"{metric}\n({'higher' if _higher_is_better(metric) else 'lower'} is better)", fontsize=8)
            ax.grid(alpha=0.3)
            if row == 0 and others and len(groups) > 1:
                ax.legend(fontsize=7)
    figure.suptitle(f"{len(table)} runs: each metric against each param")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def write_report(table: pd.DataFrame, metrics: Sequence[str], axes: Sequence[str], out_dir: Path | str, title: str) -> dict[str, Path]:
    """``compare.csv``, ``compare.png`` and ``compare.html`` (the table above the picture, the PNG embedded) in ``out_dir``."""
    out_dir = ensure_dir(out_dir)
    paths = {kind: out_dir / f"compare.{kind}" for kind in ("csv", "png", "html")}
    write_text(paths["csv"], table.to_csv())
    plot_comparison(table, metrics, axes, paths["png"])
    picture = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
    page = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n{table.to_html(float_format=lambda v: f'{v:.4g}', na_rep='')}\n"
        f"<p><img alt='metrics against params' src='data:image/png;base64,{picture}'></p>\n</body></html>\n"
    )
    write_text(paths["html"], page)
    return paths


def compare(experiment: str, metrics: Sequence[str], out_dir: Path | str, axes: Sequence[str] = AXES) -> pd.DataFrame:
    """Read ``experiment``'s runs from the tracking store, write the report into ``out_dir``, return the table."""
    from vaelab.tracking.queries import experiment_runs

    runs = experiment_runs(experiment)
    table = runs_table(runs, metrics, axes)
    if table.empty:
        logged = logged_metrics(runs)
        raise VaelabError(
            f"none of the {len(runs)} runs of experiment {experiment!r} has any of the metrics {', '.join(metrics)}; "
            f"metrics logged there: {', '.join(logged) or 'none'} (choose with --metrics)"
        )
    write_report(table, metrics, axes, out_dir, f"MLflow experiment {experiment}")
    return table


def _number_or_text(value: str | None) -> Any:
    if value is None:
        return math.nan
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def _param_axis(ax, values: pd.Series) -> None:
    """Log scale for params spanning a factor of 10 or more; ticks at the values themselves when few."""
    if len(values) and values.min() > 0 and values.max() >= 10 * values.min():
        ax.set_xscale("log")
    distinct = sorted(set(values))
    if 0 < len(distinct) <= 8:
        ax.set_xticks(distinct, [f"{value:g}" for value in distinct])
        ax.minorticks_off()


def _higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)
