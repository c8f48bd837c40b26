"""Not a DVC stage: ``protoscene relog <stage>`` logs ``reports/<stage>`` to MLflow again.

For a stage whose MLflow logging failed (one warning line; its DVC outputs are fine): see
:func:`pipeline.tracking.relog`.
"""

from __future__ import annotations

from pipeline.tracking import relog


def run(stage: str) -> int:
    """Log ``reports/<stage>`` (metrics.json and curve CSVs) as a new run of ``stage``; returns the curve rows."""
    return relog(stage)
