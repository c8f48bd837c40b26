"""Per-frame refinement of slot vectors by gradient descent on the phase-one loss.

The encoder proposes slot vectors in one pass (amortised inference); ``refine_vectors`` then takes
``steps`` Adam steps on the vectors alone (encoder and prototypes fixed) against the Chamfer, free-space,
reverse, completeness and scale terms with the given weights. It is used (a) at inference, reported
separately from the single pass, with :func:`pipeline.models.slots.losses.refine_weights` (by default the
two-sided Chamfer alone), and (b) in training with the training loss's weights, where the refined vectors
are regression targets for the encoder (distillation), a much less noisy signal than the loss gradient
alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.models.optim import Adam
from pipeline.models.slots.losses import LossWeights, chamfer_term, free_space_term


def refine_vectors(model, batch: dict[str, Tensor], anchors: dict[str, Tensor], vectors: Tensor, steps: int,
                   lr: float, weights: LossWeights, samples: int, seed: int = 0) -> Tensor:
    """Return refined copies of ``vectors`` (B, K, 7 + P); no gradient reaches the model."""
    v = vectors.detach().clone().requires_grad_(True)
    if steps <= 0:
        return v.detach()
    optimizer = Adam([v], lr=lr)
    generator = torch.Generator(device=v.device)
    for step in range(steps):
        generator.manual_seed(seed + step)
        params = model.decode(v, anchors)
        chamfer, _, _ = chamfer_term(batch["points"], batch["mask"], params.verts, model.faces)
        free, reverse, compact, _ = free_space_term(params.verts, model.faces, batch["depth"], batch["focal_cx_cy"],
                                           batch["points"], samples, weights, generator)
        scale = torch.log(params.scale / anchors["radius"]).pow(2).mean()
        loss = (weights.chamfer * chamfer + weights.free_space * free + weights.reverse * reverse
                + weights.compact * compact + weights.scale * scale)
        (grad,) = torch.autograd.grad(loss, [v])
        optimizer.zero_grad(set_to_none=True)
        v.grad = grad
        optimizer.step()
    return v.detach()
