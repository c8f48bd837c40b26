"""Model selection on validation data: keep the best snapshot of a training run, step 0 included.

A candidate is scored by the evaluation's own metrics on the validation frames: Chamfer-L1 (metres,
lower is better) decides; candidates within ``tolerance_m`` of each other are ordered by FG-ARI
(higher is better). Offering the untrained model first (step 0) means a run never ends worse, on
validation, than where it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ModelSelector:
    """Tracks the best (step, scores, weights) offered so far; checkpoint-safe (tensors, plain types)."""

    tolerance_m: float = 0.002
    step: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)

    def better(self, scores: dict[str, float]) -> bool:
        """Whether ``scores`` (``chamfer_l1_m``, optional ``fg_ari``) beat the current best."""
        if self.step is None:
            return True
        gap = scores["chamfer_l1_m"] - self.scores["chamfer_l1_m"]
        if abs(gap) > self.tolerance_m:
            return gap < 0
        return (scores.get("fg_ari") or 0.0) > (self.scores.get("fg_ari") or 0.0)

    def offer(self, step: int, scores: dict[str, float], state_dict: dict[str, torch.Tensor]) -> bool:
        """Keep a CPU copy of ``state_dict`` if ``scores`` are the best so far; returns whether kept."""
        if not self.better(scores):
            return False
        self.step, self.scores = step, dict(scores)
        self.weights = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
        return True

    def state(self) -> dict[str, Any]:
        return {"tolerance_m": self.tolerance_m, "step": self.step, "scores": self.scores, "weights": self.weights}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelSelector:
        return cls(state["tolerance_m"], state["step"], dict(state["scores"]), dict(state["weights"]))
