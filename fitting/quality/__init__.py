"""The quality gate's checks (issue 22): pure functions, no settings, no database.

``assess(step_input, garment, answer, category, thresholds)`` scores one answer; to score
several attempts of one step, ``prepare`` once and ``assess_answer`` per attempt. The
policy (retries, ``FITTING_QUALITY_*`` settings) lives with the pipeline, not here.
"""

from fitting.quality.checks import (
    CATEGORIES,
    CHECKS,
    Assessment,
    Outcome,
    Reference,
    Score,
    Thresholds,
    assess,
    assess_answer,
    prepare,
)

__all__ = [
    "CATEGORIES",
    "CHECKS",
    "Assessment",
    "Outcome",
    "Reference",
    "Score",
    "Thresholds",
    "assess",
    "assess_answer",
    "prepare",
]
