"""ARI and NMI of `pipeline.eval.partition_agreement` against scikit-learn (the independent reference)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from pipeline.eval.partition_agreement import adjusted_rand_index, contingency, normalized_mutual_information

CASES = {
    "empty": (np.array([], int), np.array([], int)),
    "one_item": (np.array([3]), np.array([7])),
    "both_one_group": (np.zeros(9, int), np.full(9, 4)),
    "one_side_one_group": (np.zeros(9, int), np.arange(9) % 3),
    "all_singletons": (np.arange(7), np.arange(7)[::-1]),
    "relabelled_copy": (np.array([0, 0, 1, 1, 2, 2]), np.array([5, 5, 9, 9, -1, -1])),
    "independent": (np.repeat([0, 1], 6), np.tile([0, 1], 6)),
    "split_group": (np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_limit_cases_match_sklearn(name):
    a, b = CASES[name]
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert normalized_mutual_information(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_random_labellings_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    a = rng.integers(0, rng.integers(1, 12), n)
    b = np.where(rng.random(n) < rng.random(), a * 3 + 1, rng.integers(0, rng.integers(1, 30), n))  # partly agreeing
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert normalized_mutual_information(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    assert adjusted_rand_index(b, a) == pytest.approx(adjusted_rand_index(a, b), abs=1e-12)  # symmetric


def test_contingency_counts_pairs_and_rejects_mismatched_lengths():
    assert contingency(np.array([1, 1, 5]), np.array([0, 2, 2])).tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="different lengths"):
        contingency(np.zeros(3), np.zeros(4))
