"""How the benchmark summarises repeated measurements and judges its goals.

Every figure is a dict with the same keys whether or not it was measured, so results.json always has
every field: ``median``, ``min``, ``max``, ``spread_percent`` ((max - min) / median), ``samples``,
``unit`` and ``status`` ("measured", or "skipped: ..." / "not measured: ..." / "failed: ..." with null numbers).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

MEASURED = "measured"


def summarize(samples: Sequence[float], unit: str) -> dict:
    values = [float(v) for v in samples]
    if not values:
        return missing("not measured: no samples", unit)
    median = statistics.median(values)
    spread = (max(values) - min(values)) / abs(median) * 100 if median else None
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread_percent": spread,
        "samples": values,
        "unit": unit,
        "status": MEASURED,
    }


def missing(status: str, unit: str) -> dict:
    return {"median": None, "min": None, "max": None, "spread_percent": None, "samples": [], "unit": unit, "status": status}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pairwise ratios of measurements taken in the same round, which cancels slow drifts of the machine."""
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d]


def goal(description: str, figure: dict | None, comparison: str, target: float, unit: str) -> dict:
    """A goal judged on a figure's median; ``shortfall`` says by how much it is missed (0 when met)."""
    actual = None if figure is None else figure.get("median")
    if actual is None:
        met = shortfall = shortfall_percent = None
        status = (figure or {}).get("status", "not measured")
    else:
        if comparison == ">=":
            shortfall = max(0.0, target - actual)
        elif comparison == "<=":
            shortfall = max(0.0, actual - target)
        else:
            raise ValueError(f"comparison must be '>=' or '<='; received {comparison!r}")
        met = shortfall == 0
        shortfall_percent = shortfall / abs(target) * 100 if target else None
        status = MEASURED
    return {
        "description": description,
        "target": target,
        "comparison": comparison,
        "actual": actual,
        "unit": unit,
        "met": met,
        "shortfall": shortfall,
        "shortfall_percent": shortfall_percent,
        "status": status,
    }


def least_squares_slope(values: Sequence[float]) -> float | None:
    """Slope of ``values`` against their index 0, 1, 2, ...; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    numerator = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    denominator = sum((i - mean_x) ** 2 for i in range(n))
    return numerator / denominator
