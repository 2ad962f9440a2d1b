"""Small statistics for comparing rates: a share with its 95% confidence interval.

Pure functions, no Django: the dashboard's prompt comparison and ``evaluate_prompts`` use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the normal quantile of 97.5%: a two-sided 95% interval


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials``, with the Wilson score interval (``low``, ``high``) at 95%."""

    successes: int
    trials: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.trials

    def as_json(self) -> dict[str, float | int]:
        return {
            "successes": self.successes,
            "trials": self.trials,
            "rate": self.value,
            "low": self.low,
            "high": self.high,
        }

    def percent(self) -> str:
        """``"72% (58–83%)"``: the rate and its interval, whole percents."""
        return f"{round(100 * self.value)}% ({round(100 * self.low)}–{round(100 * self.high)}%)"


def wilson(successes: int, trials: int, z: float = Z95) -> Rate | None:
    """The share ``successes / trials`` with its Wilson score interval; None without trials.

    Wilson, not the normal approximation: it stays inside [0, 1] and is honest for small
    counts and for rates near 0 or 1 (3 of 3 is 44–100%, not 100–100%).
    """
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Rate(successes, trials, max(0.0, centre - half), min(1.0, centre + half))
