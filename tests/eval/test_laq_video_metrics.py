"""LAQ metrics on videos without poses: label NMI/AMI against scikit-learn, unlabelled pairs ignored, figure."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from pipeline.eval.laq_video_metrics import label_metrics, label_usage_figure


def codes_and_labels(rng):
    labels = [["open", "close", "push"][i % 3] for i in range(60)]
    codes = np.stack([[{"open": 3, "close": 7, "push": 9}[l], rng.integers(0, 4), 1, 2] for l in labels])
    return codes, labels


def test_codes_that_follow_the_labels_score_against_sklearn():
    rng = np.random.default_rng(0)
    codes, labels = codes_and_labels(rng)
    with_gaps = labels[:50] + [None] * 10  # unlabelled pairs are left out
    out = label_metrics(codes, with_gaps, np.random.default_rng(1))
    assert out["labelled_pairs"] == 50 and out["labels"] == 3
    classes = np.unique(labels[:50], return_inverse=True)[1]
    tuples = np.unique(codes[:50], axis=0, return_inverse=True)[1].ravel()
    assert out["tuple"]["ami"] == pytest.approx(adjusted_mutual_info_score(classes, tuples))
    assert out["tuple"]["nmi"] == pytest.approx(normalized_mutual_info_score(classes, tuples))
    assert out["per_position"][0]["ami"] == pytest.approx(1.0)  # position 0 is the label
    assert abs(out["per_position"][2]["ami"]) < 1e-9  # a constant position says nothing
    assert out["tuple_shuffled_labels"]["ami"] < out["tuple"]["ami"]
    assert label_metrics(codes[:1], ["open"], rng)["labelled_pairs"] == 1  # too few: a note, no crash


def test_label_usage_figure(tmp_path):
    codes, labels = codes_and_labels(np.random.default_rng(0))
    label_usage_figure(codes, labels, 16, tmp_path / "usage.png")
    label_usage_figure(codes, [None] * len(labels), 16, tmp_path / "empty.png")
    assert (tmp_path / "usage.png").stat().st_size > 1000 and (tmp_path / "empty.png").is_file()
