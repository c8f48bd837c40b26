"""Which prototype each object class uses: usage, class <-> prototype table and its NMI.

For every frame, each slot that owns (nearest surface) at least ``min_points`` ground-truth object
points is matched to the class of the majority of those points (car / pedestrian / bicycle); its
prototype is the argmax of its blend weights. The table counts (class, prototype) pairs over all
frames; NMI (arithmetic-mean normaliser, as scikit-learn's) between the two labels.
Usage is the mean blend weight per prototype over all slots of all frames ("blend mass").
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.frames import FrameRecord
from pipeline.eval.partition_agreement import normalized_mutual_information
from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.io.synthia import CLASS_NAMES


def class_prototype_stats(records: list[FrameRecord], predictions: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                          faces: torch.Tensor, min_points: int = 20) -> dict:
    """``predictions`` per record: (verts (K, V, 3), centres (K, 3), weights (K, P))."""
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
    usage = np.concatenate([w for _, _, w in predictions]).mean(0)
    table = {CLASS_NAMES.get(c, str(c)): [int(np.sum((np.array(classes) == c) & (np.array(protos) == p)))
                                          for p in range(prototypes)] for c in sorted(set(classes))}
    return {"prototype_usage": [round(float(u), 4) for u in usage],
            "prototypes_over_10pct": int(np.sum(usage >= 0.1)),
            "class_prototype_table": table, "matched_slots": len(classes),
            "class_prototype_nmi": round(float(normalized_mutual_information(classes, protos)), 4) if classes else None}
