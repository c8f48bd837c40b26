"""Per-frame refinement: the ``chamfer`` objective lowers the evaluation's own Chamfer-L1 of a frame."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import load_params, parse_section
from pipeline.data.frames import FrameRecord, anchors_from_clusters
from pipeline.eval.scene_metrics import frame_metrics
from pipeline.io.synthia import Intrinsics
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.batch import anchors_of, make_batch, model_merge, predict
from pipeline.models.slots.losses import loss_weights, refine_weights
from pipeline.models.slots.refine import refine_vectors
from pipeline.params.train import Phase1Params


def test_refinement_on_the_chamfer_objective_lowers_the_evaluated_chamfer():
    """One long flat box (a car side seen from the front-left) fitted by one untrained slot: the slot starts as
    the anchor's sphere blend; 40 refinement steps on the two-sided Chamfer bring the frame's evaluated
    Chamfer-L1 (exact point -> surface plus surface samples -> points) down by more than a tenth."""
    params = parse_section(load_params(), "train", Phase1Params).model_copy(update={"refine_objective": "chamfer"})
    assert refine_weights(params).free_space == 0 and refine_weights(params).compact == 1.0
    assert refine_weights(params.model_copy(update={"refine_objective": "loss"})) == loss_weights(params)
    rng = np.random.default_rng(0)
    points = (rng.uniform(-1, 1, (600, 3)) * [2.0, 0.7, 0.05] + [0.0, 0.5, 12.0]).astype(np.float32)
    anchors = anchors_from_clusters(points, np.zeros(len(points), int), points.mean(0, keepdims=True))
    depth = np.full((48, 64), np.inf, np.float32)
    record = FrameRecord("S", "cam", 0, depth, Intrinsics(30.0, 32.0, 24.0, 0.0), points, np.ones(len(points), int),
                         np.ones(len(points), int), anchors)
    torch.manual_seed(0)
    model = SlotSceneModel(SlotModelConfig(slots=1, prototypes=2, ico_level=2, input_height=48, input_width=64,
                                           channels=(8, 8, 8, 8), hidden=16)).eval()
    batch = make_batch([record], 1, None, torch.device("cpu"), model_merge(model))
    with torch.no_grad():
        start = predict(model, batch)
    refined = model.decode(refine_vectors(model, batch, anchors_of(batch), start.vector, 40, params.refine_lr,
                                          refine_weights(params), params.samples_per_slot), anchors_of(batch))

    def chamfer(verts: torch.Tensor) -> float:
        return frame_metrics(points, record.instance, verts[0].detach().numpy(), model.faces, depth,
                             record.intrinsics)["chamfer_l1_m"]

    assert chamfer(refined.verts) < 0.9 * chamfer(start.verts)
