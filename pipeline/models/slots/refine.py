"""Per-frame refinement of slot vectors by gradient descent on the phase-one loss.

The encoder proposes slot vectors in one pass (amortised inference); ``refine_vectors`` then takes
``steps`` Adam steps on the vectors alone (encoder and prototypes fixed) against the Chamfer, free-space,
reverse, completeness and scale terms with the given weights. It is used (a) at inference, reported
separately from the single pass, with :func:`pipeline.models.slots.losses.refine_weights` (by default the
two-sided Chamfer alone), and (b) in training with the training loss's weights, where the refined vectors
are regression targets for the encoder (distillation), a much less noisy signal than the loss gradient
alone.

With ``stretch`` (evaluation only, ``train.refine_stretch``) the refinement also fits three log factors per
slot that stretch its blended shape along the slot's own axes (:meth:`SlotSceneModel.decode`): the network's
shape space is a blend of P prototypes, which need not contain a given object's proportions (an ellipsoid
fit has three free extents); the stretch starts at zero, so the first step is the single pass's geometry.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.models.optim import Adam
from pipeline.models.slots.losses import LossWeights, chamfer_term, free_space_term


def refine_vectors(model, batch: dict[str, Tensor], anchors: dict[str, Tensor], vectors: Tensor, steps: int,
                   lr: float, weights: LossWeights, samples: int, seed: int = 0,
                   stretch: bool = False) -> tuple[Tensor, Tensor | None]:
    """Refined copies of ``vectors`` (B, K, 7 + P) and, with ``stretch``, the fitted log stretch (B, K, 3) (else
    None); pass both to ``model.decode``. No gradient reaches the model."""
    v = vectors.detach().clone().requires_grad_(True)
    s = torch.zeros(*v.shape[:2], 3, device=v.device, requires_grad=True) if stretch else None
    if steps <= 0:
        return v.detach(), None if s is None else s.detach()
    variables = [v] if s is None else [v, s]
    optimizer = Adam(variables, lr=lr)
    generator = torch.Generator(device=v.device)
    for step in range(steps):
        generator.manual_seed(seed + step)
        params = model.decode(v, anchors, stretch=s)
        chamfer, _, _ = chamfer_term(batch["points"], batch["mask"], params.verts, model.faces)
        free, reverse, compact, _ = free_space_term(params.verts, model.faces, batch["depth"], batch["focal_cx_cy"],
                                                    batch["points"], samples, weights, generator, batch["mask"])
        scale = torch.log(params.scale / anchors["radius"]).pow(2).mean()
        loss = (weights.chamfer * chamfer + weights.free_space * free + weights.reverse * reverse
                + weights.compact * compact + weights.scale * scale)
        grads = torch.autograd.grad(loss, variables)
        optimizer.zero_grad(set_to_none=True)
        for variable, grad in zip(variables, grads, strict=True):
            variable.grad = grad
        optimizer.step()
    return v.detach(), None if s is None else s.detach()
