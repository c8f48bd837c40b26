"""Which prototype each object class uses: usage, class <-> prototype table and its NMI.

For every frame, each slot that owns (nearest surface) at least ``min_points`` ground-truth object
points is matched to the class of the majority of those points (car / pedestrian / bicycle); its
prototype is the argmax of its blend weights. The table counts (class, prototype) pairs over all
frames; NMI (arithmetic-mean normaliser, as scikit-learn's) between the two labels.
Usage ("blend mass") is the mean blend weight per prototype over the model's distinct slots of all frames:
with ``train.merge_geometry: shared`` a group of merged k-means clusters is one slot (its clusters carry copies
of one vector and one mesh), so it counts once, not once per cluster; with ``parts`` every cluster is a slot.
``prototype_usage_per_cluster`` keeps the count over every cluster (copies included; a car that k-means split
into three clusters weighs three times), the measure of the reports before 2026-12-03.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.frames import FrameRecord
from pipeline.eval.partition_agreement import normalized_mutual_information
from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.io.synthia import CLASS_NAMES


def class_prototype_stats(records: list[FrameRecord], predictions: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                          faces: torch.Tensor, min_points: int = 20, slots: list[np.ndarray] | None = None) -> dict:
    """``predictions`` per record: (verts (K, V, 3), centres (K, 3), weights (K, P)); ``slots`` per record: the
    indices of its distinct slots (:func:`distinct_slots`; None = every cluster is a slot)."""
    prototypes = predictions[0][2].shape[-1]
    classes, protos = [], []
    for record, (verts, _, weights) in zip(records, predictions, strict=True):
        _, owner = nearest_slot(record.points, verts, faces)
        fg = record.instance > 0
        for k in range(len(verts)):
            mine = fg & (owner == k)
            if mine.sum() < min_points:
                continue
            values, counts = np.unique(record.class_id[mine], return_counts=True)
            classes.append(int(values[np.argmax(counts)]))
            protos.append(int(np.argmax(weights[k])))
    per_cluster = np.concatenate([w for _, _, w in predictions]).mean(0)
    usage = per_cluster if slots is None else np.concatenate(
        [w[index] for (_, _, w), index in zip(predictions, slots, strict=True)]).mean(0)
    table = {CLASS_NAMES.get(c, str(c)): [int(np.sum((np.array(classes) == c) & (np.array(protos) == p)))
                                          for p in range(prototypes)] for c in sorted(set(classes))}
    return {"prototype_usage": [round(float(u), 4) for u in usage],
            "prototype_usage_per_cluster": [round(float(u), 4) for u in per_cluster],
            "prototypes_over_10pct": int(np.sum(usage >= 0.1)),
            "class_prototype_table": table, "matched_slots": len(classes),
            "class_prototype_nmi": round(float(normalized_mutual_information(classes, protos)), 4) if classes else None}


def distinct_slots(groups: np.ndarray, shared: bool) -> np.ndarray:
    """Indices of the distinct slots among K clusters: one per group (its first cluster) when merged groups share
    one vector (``shared``), else every cluster. ``groups`` (K,): each cluster's group as the index of the group's
    first cluster (:func:`pipeline.models.slots.batch.slot_groups`)."""
    return np.unique(groups) if shared else np.arange(len(groups))
