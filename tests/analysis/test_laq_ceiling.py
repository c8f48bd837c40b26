"""The motion codes of the LAQ ceiling analysis (pipeline/analysis/laq_ceiling.py) against hand computations."""

import numpy as np

from pipeline.analysis.laq_ceiling import bin_means, forward_and_yaw, kmeans_centroids


def test_bin_means_replace_each_value_by_its_bins_mean():
    train = np.stack([np.arange(32, dtype=float), np.arange(32, dtype=float)[::-1] * 2], 1)
    held_out = np.array([[-5.0, 100.0], [3.2, 0.0]])
    coded_train, coded_held = bin_means(train, held_out, levels=16)
    expected = (np.arange(32) // 2) * 2 + 0.5  # equal-count bins of two values each: their mean
    np.testing.assert_allclose(coded_train[:, 0], expected)
    np.testing.assert_allclose(coded_train[:, 1], (expected * 2)[::-1])
    np.testing.assert_allclose(coded_held, [[0.5, 61.0], [2.5, 1.0]])  # outside the range: the end bins


def test_tied_values_leave_no_empty_bin_undefined():
    train = np.zeros((40, 1))
    train[:5, 0] = np.arange(1, 6)  # most values tie at 0: most cuts coincide
    coded_train, coded_held = bin_means(train, np.array([[0.0], [7.0]]), levels=16)
    assert np.isfinite(coded_train).all() and np.isfinite(coded_held).all()
    np.testing.assert_allclose(coded_train[5:, 0], 0.0)


def test_kmeans_centroids_and_forward_and_yaw():
    rng = np.random.default_rng(0)
    centres = np.arange(16, dtype=float)[:, None] * np.array([[10.0, -3.0, 1.0]])
    train = np.repeat(centres, 5, 0) + rng.normal(0, 0.01, (80, 3))
    coded_train, coded_held = kmeans_centroids(train, centres + 0.02)
    np.testing.assert_allclose(coded_held, centres, atol=0.05)
    assert len(np.unique(coded_train, axis=0)) == 16
    a, b = forward_and_yaw(train, centres)
    assert a.shape == (80, 2) and b.shape == (16, 2) and np.array_equal(a, train[:, :2])
