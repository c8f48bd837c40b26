"""AMI references from the true motion (pipeline/eval/laq_ami_reference.py) on hand-built motion and labels."""

import numpy as np

from pipeline.eval.laq_ami_reference import kmeans_codes, quantile_codes, true_motion_agreement


def test_quantile_codes_are_equal_count_rank_bins():
    rng = np.random.default_rng(0)
    values = rng.permutation(160).astype(float) * 0.37 - 5.0
    codes = quantile_codes(values, 16)
    ranks = np.argsort(np.argsort(values))
    np.testing.assert_array_equal(codes, ranks // 10)  # brute force: 10 values per bin, in order


def test_a_label_read_by_one_position_is_found_whole():
    rng = np.random.default_rng(1)
    forward = rng.uniform(0.0, 15.0, 320)
    components = np.stack([forward, np.zeros(320), np.zeros(320)], 1)  # no yaw, no lateral motion: one bin each
    classes = quantile_codes(forward, 16)
    out = true_motion_agreement(components, classes)
    for name in ("quantiles_forward_yaw", "quantiles_all"):
        assert out[name]["distinct_tuples"] == 16
        assert abs(out[name]["ami"] - 1.0) < 1e-9 and abs(out[name]["nmi"] - 1.0) < 1e-9


def test_kmeans_finds_separated_motion_clusters():
    rng = np.random.default_rng(2)
    corners = np.stack(np.meshgrid(np.arange(4), np.arange(2), np.arange(2)), -1).reshape(16, 3)
    centres = rng.permutation(corners) * 10.0  # 16 clusters 10 apart, every axis used (each is standardised)
    classes = np.repeat(np.arange(16), 20)
    components = centres[classes] + rng.normal(0, 0.1, (320, 3))
    codes = kmeans_codes(components, 16, seed=0)
    assert len(np.unique(codes)) == 16
    out = true_motion_agreement(components, classes)
    assert out["kmeans"]["distinct_tuples"] == 16 and abs(out["kmeans"]["ami"] - 1.0) < 1e-9


def test_labels_unrelated_to_motion_give_no_agreement_beyond_chance():
    rng = np.random.default_rng(3)
    components = rng.normal(size=(400, 3))
    classes = rng.integers(0, 8, 400)
    out = true_motion_agreement(components, classes)
    assert all(abs(v["ami"]) < 0.05 for v in out.values())
    # many distinct tuples share information with any labels by chance: the NMI is high, the AMI removes it
    assert out["quantiles_all"]["distinct_tuples"] > 300 and out["quantiles_all"]["nmi"] > 0.3


def test_a_noisy_read_loses_agreement_and_an_exact_read_is_the_kmeans_reference():
    import pytest

    from pipeline.eval.laq_ami_reference import noisy_read_agreement

    rng = np.random.default_rng(4)
    corners = np.stack(np.meshgrid(np.arange(4), np.arange(2), np.arange(2)), -1).reshape(16, 3)
    classes = np.repeat(np.arange(16), 20)
    components = corners[classes] * 3.0 + rng.normal(0, 0.1, (320, 3))
    exact = noisy_read_agreement(components, classes, 1.0)
    assert exact["ami"] == pytest.approx(true_motion_agreement(components, classes)["kmeans"]["ami"])
    assert exact["ami"] > 0.99
    blurred = noisy_read_agreement(components, classes, 0.5)
    assert blurred["ami"] < exact["ami"] - 0.3 and blurred["read_r2"] == 0.5
    with pytest.raises(ValueError, match="read_r2"):
        noisy_read_agreement(components, classes, 0.0)
