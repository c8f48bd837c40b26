"""LAQ metrics on videos without ground truth (``download.source: videos``), optionally against video labels.

No camera poses, so the probe to camera motion and the motion-class NMI of ``pipeline/eval/laq_metrics.py``
are skipped (the metrics say so in ``skipped``). Reported on the held-out pairs: code usage (perplexity per
position, pooled and joint; active codes), the decoder's next-token MSE with the inferred codes vs copying
frame t, with shuffled and with random codes. With labels (video -> action, e.g. Something-Something-v2's
templates): NMI / AMI of the code tuples (and of each position) against the labels of the labelled held-out
pairs, beside the same for shuffled labels, and :func:`label_usage_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.eval.laq_metrics import decoder_metrics, infer_codes, mutual_information, tuple_ids, usage_stats
from pipeline.io import atomic
from pipeline.models.laq import LAQ

SKIPPED_NOTE = ("videos have no camera poses: the probe to camera motion and the motion-class NMI are skipped; "
                "code usage and decoder errors are reported")
MAX_FIGURE_LABELS = 20


def label_metrics(indices: np.ndarray, labels: list[str | None], rng: np.random.Generator) -> dict[str, Any]:
    """NMI / AMI of code tuples and of each position vs ``labels`` (one per pair, None = unlabelled, ignored);
    the tuple scores against a permutation of the labels are the chance reference."""
    keep = np.asarray([label is not None for label in labels], dtype=bool)
    names = np.asarray([label for label in labels if label is not None])
    if keep.sum() < 2:
        return {"labelled_pairs": int(keep.sum()), "note": "fewer than 2 labelled held-out pairs"}
    classes = np.unique(names, return_inverse=True)[1]
    tuples = tuple_ids(indices[keep])
    return {"labelled_pairs": int(keep.sum()), "labels": int(classes.max() + 1),
            "tuple": mutual_information(tuples, classes),
            "tuple_shuffled_labels": mutual_information(tuples, classes[rng.permutation(len(classes))]),
            "per_position": [mutual_information(indices[keep, s], classes) for s in range(indices.shape[1])]}


def evaluate_laq_videos(model: LAQ, train, held_out, labels: dict[str, str], *, device: torch.device,
                        seed: int = 0) -> tuple[dict, dict]:
    """Metrics on ``held_out`` pairs (:class:`pipeline.train.laq.FeaturePairs`; sequence = video name) and the
    figure arrays: ``indices`` per split, and ``labels`` of the held-out pairs (None where unlabelled).

    ``labels``: video name -> label (``data/videos/labels.json``; {} = no labels file)."""
    if len(held_out) < 2:
        raise ValueError("need at least 2 held-out pairs for the LAQ metrics (val/test videos too short?)")
    rng = np.random.default_rng(seed)
    size = model.config.codebook_size
    codes_train, codes_eval = infer_codes(model, train, device), infer_codes(model, held_out, device)
    idx = codes_eval["indices"]
    pair_labels = [labels.get(s) for s in held_out.sequence]
    metrics = {
        "pairs": {"train": len(train), "held_out": len(held_out)},
        "usage_held_out": usage_stats(idx, size), "usage_train": usage_stats(codes_train["indices"], size),
        **decoder_metrics(model, held_out, codes_eval, rng, device),
        "skipped": ["probe", "probe_feature_diff_reference", "nmi (motion classes)"], "skipped_note": SKIPPED_NOTE,
    }
    if labels:
        metrics["labels"] = label_metrics(idx, pair_labels, rng)
    return metrics, {"indices": {"train": codes_train["indices"], "held_out": idx}, "labels": pair_labels}


def headline_videos(metrics: dict[str, Any]) -> str:
    """One log line: held-out perplexity per position, ΔMSE with shuffled codes, label AMI when present."""
    usage = metrics["usage_held_out"]
    line = (f"held-out perplexity per position {[round(p, 2) for p in usage['perplexity_per_position']]}, "
            f"dMSE shuffled {metrics['controllability']['delta_mse_shuffled']:.4f} (no poses: probe skipped)")
    if "tuple" in metrics.get("labels", {}):
        line += f", AMI(code tuple, label) {metrics['labels']['tuple']['ami']:.3f}"
    return line


def label_usage_figure(indices: np.ndarray, labels: list[str | None], codebook_size: int, path: Path,
                       title: str = "LAQ code usage per label (held-out pairs)") -> None:
    """PNG: per label (rows; the :data:`MAX_FIGURE_LABELS` most frequent) the share of each code (columns: the
    codes used by labelled pairs, pooled over positions), so codes specific to an action stand out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = [i for i, label in enumerate(labels) if label is not None]
    names, counts = np.unique([labels[i] for i in keep], return_counts=True)
    names = names[np.argsort(-counts, kind="stable")][:MAX_FIGURE_LABELS]
    used = np.unique(indices[keep]) if keep else np.zeros(0, dtype=np.int64)
    share = np.zeros((len(names), len(used)))
    for r, name in enumerate(names):
        rows = [i for i in keep if labels[i] == name]
        hist = np.bincount(indices[rows].ravel(), minlength=codebook_size)[used]
        share[r] = hist / max(1, hist.sum())
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.25 * max(1, len(used))), 1.2 + 0.35 * max(1, len(names))))
    if len(names):
        im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.03, label="share of the label's codes")
        ax.set_yticks(range(len(names)), [n if len(n) <= 48 else n[:45] + "..." for n in names], fontsize=7)
        ax.set_xticks(range(len(used)), [str(c) for c in used], fontsize=6, rotation=90)
    else:
        ax.text(0.5, 0.5, "no labelled held-out pair", ha="center", va="center")
    ax.set_xlabel("codebook index (codes used by labelled held-out pairs, all positions)")
    ax.set_title(title)
    fig.tight_layout()
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
