"""The charts of the saved training-runs view: what a user compares across runs, laid out once for every browser.

MLflow 3.17's runs page keeps its chart view in two lists of its UI state, both stored in the saved view
(see :mod:`.ui`):

- ``compareRunSections``: collapsible sections, each ``{uuid, name, display, isReordered, deleted, isGenerated}``;
- ``compareRunCharts``: chart cards, each with a ``type`` (``LINE``, ``BAR``, ``PARALLEL``, ...), its section's
  uuid as ``metricSectionId`` and the fields of the page's card class for that type (the JS classes behind its
  "Add chart" dialog). A line card draws every key of ``selectedMetricKeys`` on one axis; a parallel-coordinates
  card draws one axis per ``selectedParams`` and ``selectedMetrics`` entry.

The page adds a card of its own for each logged metric that no card names as ``metricKey`` (into sections named
after the metric's prefix, "Model metrics" and "System metrics"), so the per-metric charts stay below ours.
Section and card uuids are fixed strings: the page only needs them unique, and fixed ones keep the saved view
equal from one run to the next, so it is rewritten only when its content changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SECTION_UUID = "vaelab-compare"
SECTION_NAME = "Compare runs (vaelab)"
# Shown first: the page lists custom sections by name before its own "Model metrics" and "System metrics".

# Each line chart: a training metric and its validation twin, as Keras names them (training.HISTORY_KEYS). The
# page titles a card of several metrics itself ("loss vs val_loss"), a bar card by its metric and a
# parallel-coordinates card "Parallel Coordinates", so the cards carry no displayName.
LINE_CHARTS = (
    ("loss", "val_loss"),
    ("reconstruction_loss", "val_reconstruction_loss"),
    ("kl_loss", "val_kl_loss"),
)
# The page shows the first N runs of the table in a card; 10 is its own default.
RUNS_SHOWN = 10


def chart_sections() -> list[dict[str, Any]]:
    """The one section that holds vaelab's cards."""
    return [{"uuid": SECTION_UUID, "name": SECTION_NAME, "display": True, "isReordered": False, "deleted": False, "isGenerated": False}]


def chart_cards(headline: Sequence[str], swept_params: Sequence[str], nll_metric: str) -> list[dict[str, Any]]:
    """Line charts of each loss with its validation twin, a bar chart per headline metric, and the swept params
    against ``nll_metric`` in parallel coordinates; in that order, which is the order the section shows."""
    cards = [_line_card(f"line-{metrics[0]}", metrics) for metrics in LINE_CHARTS]
    cards += [_bar_card(f"bar-{metric}", metric) for metric in headline]
    cards.append(_parallel_card("parallel-swept-params", swept_params, nll_metric))
    return cards


def _card(suffix: str, chart_type: str) -> dict[str, Any]:
    return {
        "uuid": f"vaelab-{suffix}",
        "type": chart_type,
        "metricSectionId": SECTION_UUID,
        "runsCountToCompare": RUNS_SHOWN,
        "deleted": False,
        "isGenerated": False,
    }


def _line_card(suffix: str, metrics: Sequence[str]) -> dict[str, Any]:
    return {
        **_card(suffix, "LINE"),
        # metricKey also tells the page this metric has its card; selectedMetricKeys are the lines drawn.
        "metricKey": metrics[0],
        "selectedMetricKeys": list(metrics),
        "xAxisKey": "step",  # steps are 1-based epochs (tracking/epochs.py)
        "selectedXAxisMetricKey": "",
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "range": {},
        "lineSmoothness": 0,
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }


def _bar_card(suffix: str, metric: str) -> dict[str, Any]:
    return {**_card(suffix, "BAR"), "metricKey": metric}


def _parallel_card(suffix: str, params: Sequence[str], metric: str) -> dict[str, Any]:
    # The page titles this card "Parallel Coordinates" whatever its displayName.
    return {**_card(suffix, "PARALLEL"), "selectedParams": list(params), "selectedMetrics": [metric], "showAllRuns": False}
