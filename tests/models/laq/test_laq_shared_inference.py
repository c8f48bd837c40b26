"""The LAQ stage's evaluation shared among CPU ranks: each rank infers / validates its share of the pairs and
rank 0 gets what one process alone computes (same codes, same losses up to float rounding), also when a rank's
share is empty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import distributed
from pipeline.eval.laq_metrics import infer_codes, infer_codes_shared
from pipeline.models.laq import LAQ, LAQConfig
from pipeline.train.laq import FeaturePairs, evaluate_loss

CONFIG = dict(in_channels=6, dim=32, heads=4, spatial_depth=1, temporal_depth=1, decoder_depth=1,
              codebook_size=16, code_seq_len=4, quant_dim=8)
CPU = torch.device("cpu")


def model_and_pairs(n_pairs: int) -> tuple[LAQ, FeaturePairs]:
    """A seeded model (the same in every process) and ``n_pairs`` random pairs over n_pairs + 3 frames."""
    torch.manual_seed(0)
    model = LAQ(LAQConfig(**CONFIG)).eval()
    gen = torch.Generator().manual_seed(1)
    frames, tokens = n_pairs + 3, 10
    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs) + 3], 1)
    data = FeaturePairs(torch.randn(frames, tokens, 6, generator=gen), torch.randn(frames, tokens, 3, generator=gen) * 5,
                        torch.rand(frames, tokens, generator=gen) > 0.2, torch.randn(frames, 6, generator=gen), pairs,
                        ["s"] * n_pairs, ["c"] * n_pairs, pairs.numpy().copy())
    return model, data


def _shared(n_pairs: int) -> tuple[dict[str, np.ndarray] | None, float]:
    """One rank: its share of the codes (all of them on rank 0) and the validation loss."""
    distributed.init_distributed("cpu")
    model, data = model_and_pairs(n_pairs)
    codes = infer_codes_shared(model, data, CPU)
    return codes, evaluate_loss(model, data, CPU, batch=4)


@pytest.mark.parametrize(("ranks", "n_pairs"), [(2, 11), (3, 2)])  # uneven shares; one rank with none
def test_shared_inference_and_validation_match_one_process(ranks, n_pairs):
    codes, loss = distributed.run_cpu_ranks(_shared, ranks, n_pairs)
    model, data = model_and_pairs(n_pairs)
    alone = infer_codes(model, data, CPU)
    assert codes is not None and set(codes) == set(alone)
    np.testing.assert_array_equal(codes["indices"], alone["indices"])
    for key in alone:
        assert codes[key].shape == alone[key].shape
        np.testing.assert_allclose(codes[key], alone[key], rtol=1e-5, atol=1e-6, err_msg=key)
    with torch.no_grad():
        manual = np.mean([float(model(*data.batch(torch.tensor([i]), CPU)).loss) for i in range(n_pairs)])
    assert loss == pytest.approx(manual, rel=1e-5)
    assert evaluate_loss(model, data, CPU, batch=4) == pytest.approx(manual, rel=1e-5)


def test_a_share_of_the_pairs_only_holds_those_pairs():
    model, data = model_and_pairs(9)
    alone = infer_codes(model, data, CPU)
    part = infer_codes(model, data, CPU, pairs=range(3, 7))
    for key in alone:
        np.testing.assert_allclose(part[key], alone[key][3:7], rtol=1e-5, atol=1e-6, err_msg=key)


def test_codes_without_the_decoder_are_the_same_codes():
    model, data = model_and_pairs(7)
    full = infer_codes(model, data, CPU, mirror=False)
    encoded = infer_codes(model, data, CPU, predict=False)
    assert set(full) - set(encoded) == {"mse", "copy_mse"}
    for key in encoded:
        np.testing.assert_array_equal(encoded[key], full[key], err_msg=key)
