"""Per-frame refinement: the ``chamfer`` objective lowers the evaluation's own Chamfer-L1 of a frame; the optional
stretch decodes to the analytic ellipsoid and fits proportions the prototype blend cannot reach; refining the
parts of a merged object fits one primitive per cluster."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from pipeline.config import load_params, parse_section
from pipeline.data.frames import FrameRecord, anchors_from_clusters
from pipeline.eval.scene_metrics import frame_metrics
from pipeline.io.synthia import Intrinsics
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.eval.phase1_eval import predict_meshes, refinement_merge
from pipeline.models.slots.batch import anchors_of, make_batch, model_merge, predict, slot_groups
from pipeline.models.slots.losses import loss_weights, refine_weights
from pipeline.models.slots.model import EULER_CONVENTION
from pipeline.models.slots.refine import refine_vectors
from pipeline.params.train import Phase1Params


def flat_box_frame() -> tuple[FrameRecord, SlotSceneModel, dict]:
    """One long flat box (a car side seen from the front-left) as a frame with one cluster, an untrained one-slot
    model and its batch."""
    rng = np.random.default_rng(0)
    points = (rng.uniform(-1, 1, (600, 3)) * [2.0, 0.7, 0.05] + [0.0, 0.5, 12.0]).astype(np.float32)
    anchors = anchors_from_clusters(points, np.zeros(len(points), int), points.mean(0, keepdims=True))
    depth = np.full((48, 64), np.inf, np.float32)
    record = FrameRecord("S", "cam", 0, depth, Intrinsics(30.0, 32.0, 24.0, 0.0), points, np.ones(len(points), int),
                         np.ones(len(points), int), anchors)
    torch.manual_seed(0)
    model = SlotSceneModel(SlotModelConfig(slots=1, prototypes=2, ico_level=2, input_height=48, input_width=64,
                                           channels=(8, 8, 8, 8), hidden=16)).eval()
    return record, model, make_batch([record], 1, None, torch.device("cpu"), model_merge(model))


def evaluated_chamfer(record: FrameRecord, model: SlotSceneModel, verts: torch.Tensor) -> float:
    return frame_metrics(record.points, record.instance, verts[0].detach().numpy(), model.faces, record.depth,
                         record.intrinsics)["chamfer_l1_m"]


def test_refinement_on_the_chamfer_objective_lowers_the_evaluated_chamfer():
    """The slot starts as the anchor's sphere blend; 40 refinement steps on the two-sided Chamfer bring the
    frame's evaluated Chamfer-L1 (exact point -> surface plus surface samples -> points) down by more than a
    tenth, and with the stretch (three more free proportions) below what the vectors alone reach."""
    params = parse_section(load_params(), "train", Phase1Params).model_copy(update={"refine_objective": "chamfer"})
    assert refine_weights(params).free_space == 0 and refine_weights(params).compact == 1.0
    assert refine_weights(params.model_copy(update={"refine_objective": "loss"})) == loss_weights(params)
    record, model, batch = flat_box_frame()
    with torch.no_grad():
        start = predict(model, batch)
    fitted = {}
    for stretch in (False, True):
        vectors, log_stretch = refine_vectors(model, batch, anchors_of(batch), start.vector, 40, params.refine_lr,
                                              refine_weights(params), params.samples_per_slot, stretch=stretch)
        assert (log_stretch is None) == (not stretch)
        fitted[stretch] = evaluated_chamfer(record, model, model.decode(vectors, anchors_of(batch),
                                                                        stretch=log_stretch).verts)
    assert fitted[False] < 0.9 * evaluated_chamfer(record, model, start.verts)
    assert fitted[True] < 0.9 * fitted[False]


def test_stretch_scales_the_shape_along_the_slots_own_axes():
    """With zero stretch the decode is unchanged; with log factors (a, b, c) every vertex, taken back to the
    slot's axes (minus centre, times R^T, over scale), is the unstretched one times (e^a, e^b, e^c); an alias
    slot of a merged cluster takes its parent's stretch."""
    _, model, batch = flat_box_frame()
    anchors = anchors_of(batch)
    with torch.no_grad():
        vector = predict(model, batch).vector
        plain = model.decode(vector, anchors)
        assert torch.equal(model.decode(vector, anchors, stretch=torch.zeros(1, 1, 3)).verts, plain.verts)
        factors = torch.tensor([[[0.3, -0.2, 0.5]]])
        stretched = model.decode(vector, anchors, stretch=factors)
    rotation = torch.as_tensor(Rotation.from_euler(EULER_CONVENTION, plain.euler[0, 0].numpy()).as_matrix(),
                               dtype=torch.float32)

    def local(params) -> torch.Tensor:
        return (params.verts[0, 0] - params.centre[0, 0]) @ rotation / params.scale[0, 0]

    torch.testing.assert_close(local(stretched), local(plain) * torch.exp(factors[0, 0]), atol=1e-4, rtol=1e-4)
    two = {k: torch.cat([v, v], dim=1) if v.dim() > 1 else v for k, v in anchors.items()}
    two["parent"] = torch.tensor([[0, 0]])
    with torch.no_grad():
        merged = model.decode(torch.cat([vector, vector * 0], dim=1), two,
                              stretch=torch.cat([factors, torch.zeros(1, 1, 3)], dim=1))
    torch.testing.assert_close(merged.verts[0, 1], merged.verts[0, 0])


def test_refining_parts_fits_one_primitive_per_cluster_and_keeps_the_object():
    """An L-shaped object, a long low box touching a tall narrow one, cut by k-means into its two boxes and
    merged into one object (gap 0.3 m). Refining the shared model's one slot leaves the alias on its parent's
    mesh; with ``train.refine_parts`` each slot is refined on its own cluster: two meshes, each on its box
    (most of its vertices nearer that box than the other, its centre within 0.5 m of the box's), a lower evaluated Chamfer-L1, and the object (the segmentation's group) unchanged."""
    rng = np.random.default_rng(1)
    low = rng.uniform(-1, 1, (500, 3)) * [2.0, 0.4, 0.8] + [0.0, 1.0, 12.0]
    tall = rng.uniform(-1, 1, (500, 3)) * [0.3, 1.5, 0.3] + [2.35, -0.1, 12.0]
    points = np.concatenate([low, tall]).astype(np.float32)
    cluster = np.repeat([0, 1], 500)
    anchors = anchors_from_clusters(points, cluster, np.stack([low.mean(0), tall.mean(0)]).astype(np.float32))
    record = FrameRecord("S", "cam", 0, np.full((48, 64), np.inf, np.float32), Intrinsics(30.0, 32.0, 24.0, 0.0),
                         points, np.ones(len(points), int), np.ones(len(points), int), anchors)
    torch.manual_seed(0)
    model = SlotSceneModel(SlotModelConfig(slots=2, prototypes=2, ico_level=2, input_height=48, input_width=64,
                                           channels=(8, 8, 8, 8), hidden=16, merge_gap_m=0.3,
                                           merge_max_semi_axis_m=4.0)).eval()
    assert slot_groups(record, model_merge(model)).tolist() == [0, 0]
    params = parse_section(load_params(), "train", Phase1Params).model_copy(update={"refine_stretch": True})
    assert refinement_merge(model, params.model_copy(update={"refine_parts": False})) == model_merge(model)
    fitted = {}
    for parts in (False, True):
        verts, centres, _ = predict_meshes(model, [record], params.model_copy(update={"refine_parts": parts}), 40)[0]
        fitted[parts] = (verts, centres)
    shared_verts, _ = fitted[False]
    np.testing.assert_array_equal(shared_verts[1], shared_verts[0])
    parts_verts, parts_centres = fitted[True]
    assert np.abs(parts_verts[1] - parts_verts[0]).max() > 1.0
    for k, (box, other) in enumerate(((low, tall), (tall, low))):  # each mesh on its own box
        nearer_own = cKDTree(box).query(parts_verts[k])[0] < cKDTree(other).query(parts_verts[k])[0]
        assert nearer_own.mean() >= 0.8
        assert np.linalg.norm(parts_centres[k] - box.mean(0)) < 0.5

    def chamfer(verts: np.ndarray) -> float:
        return frame_metrics(points, record.instance, verts, model.faces, record.depth, record.intrinsics,
                             group=slot_groups(record, model_merge(model)))["chamfer_l1_m"]

    assert chamfer(parts_verts) < 0.8 * chamfer(shared_verts)
