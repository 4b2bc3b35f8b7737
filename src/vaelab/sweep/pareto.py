"""The Pareto front of a study of several objectives as a table and a picture, for ``sweeps/<study>/``.

- ``pareto_front.csv``: one row per front trial (:func:`vaelab.sweep.choice.pareto_front`), by trial number:
  ``trial``, each objective's metric, the trial's ``train.*`` params, and ``chosen`` (true for the trial the
  choice rule picked, false for the others).
- ``plots/pareto_front.png``: Optuna's Pareto-front plot (every COMPLETE trial, the front in its own colour)
  with the chosen trial marked by a gold star; two or three objectives only, as Optuna draws no more.

Part of vaelab.sweep; Optuna and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.files import atomic_path
from vaelab.sweep.choice import pareto_front

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

MAX_PLOTTED = 3  # objectives Optuna's plot_pareto_front draws without being told which


def front_rows(study: optuna.Study, metrics: tuple[str, ...], chosen: FrozenTrial | None) -> list[dict[str, Any]]:
    """One flat row per front trial: ``{"trial": 3, <metric>: value, ..., "train.<key>": value, ..., "chosen": bool}``."""
    rows = []
    for trial in pareto_front(study):
        row: dict[str, Any] = {"trial": trial.number, **dict(zip(metrics, trial.values, strict=True))}
        row.update({f"train.{key}": value for key, value in trial.params.items()})
        row["chosen"] = chosen is not None and trial.number == chosen.number
        rows.append(row)
    return rows


def write_front_table(rows: list[dict[str, Any]], path: Path) -> None:
    """``rows`` (:func:`front_rows`) as CSV; the header alone when the front is empty."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["trial", "chosen"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_front_plot(study: optuna.Study, metrics: tuple[str, ...], chosen: FrozenTrial | None, path: Path, dpi: int) -> Path:
    """Optuna's Pareto-front plot of ``study`` (2 or 3 objectives) with ``chosen`` starred, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import optuna
    from matplotlib.figure import Figure
    from optuna.visualization.matplotlib import plot_pareto_front

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna's matplotlib plots are "experimental"
        axes = plot_pareto_front(study, target_names=list(metrics))
    axes.set_title(f"Pareto front of study {study.study_name!r}: every COMPLETE trial, the front in red")
    if chosen is not None:
        star: dict[str, Any] = {"marker": "*", "s": 300, "color": "gold", "edgecolors": "black", "zorder": 5}
        star["label"] = f"chosen: trial {chosen.number}"
        axes.scatter(*([value] for value in chosen.values), **star)  # x, y and, with three objectives, z
        axes.legend()
    figure = axes.get_figure(root=True)
    assert isinstance(figure, Figure)  # plot_pareto_front draws on a new figure of its own
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path
