"""A stand-in for a stage's run in training tests: collects curve rows as ``StageRun.log_step`` receives them."""

from __future__ import annotations


class Rows:
    """Every ``log_step(curve, step, values)`` call, in order, as ``(curve, step, values)``."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, dict[str, float]]] = []

    def log_step(self, curve: str, step: int, values: dict[str, float]) -> None:
        self.rows.append((curve, step, values))

    def by_step(self) -> list[tuple[str, int, dict[str, float]]]:
        """The rows sorted by (curve, step): a resumed run replays saved rows curve by curve."""
        return sorted(self.rows, key=lambda r: r[:2])
