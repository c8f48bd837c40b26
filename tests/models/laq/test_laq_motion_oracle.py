"""The motion-oracle decoder (pipeline/train/laq_motion_oracle.py) on the fixture whose token changes come from the
camera motion alone: told the true motion it must beat a shuffled motion; a constant code carries nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from laq_fixtures import write_features

from pipeline.data.features_cache import load_manifest
from pipeline.data.splits import split_sequences
from pipeline.eval.laq_actions import motion_components
from pipeline.eval.laq_metrics import pair_motion
from pipeline.models.laq import LAQConfig
from pipeline.train.laq import GEOMETRY_CHANNELS, channel_stats, load_feature_pairs, standardise
from pipeline.eval.laq_metrics import derangement
from pipeline.train.laq_motion_oracle import held_out_errors, train_motion_decoder
from tests.conftest import repo_params

PARAMS = repo_params("laq", dim=32, heads=2, spatial_depth=1, temporal_depth=1, decoder_depth=1, codebook_size=8,
                     code_seq_len=4, quant_dim=8, frame_offset=2, steps=300, batch_size=8, lr=2e-3, mirror=0.0,
                     device="cpu")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    write_features(root, sequences=6, frames=24, n_side=4, channels=6, seed=3, frequency=0.3)
    features = root / "data/features"
    manifest = load_manifest(features)
    splits = split_sequences(manifest["sequences"], 0, 2)
    train, test = (load_feature_pairs(features, splits[s], PARAMS.frame_offset, manifest) for s in ("train", "test"))
    mean, std = channel_stats(train.tokens, train.mask)
    standardise(train, mean, std)
    standardise(test, mean, std)
    motion = [motion_components(pair_motion(root / "data/raw", p.sequence, p.camera, p.frames), 0.4)
              for p in (train, test)]
    mu, sd = motion[0].mean(0), motion[0].std(0) + 1e-9
    config = LAQConfig(in_channels=train.tokens.shape[-1], geometry_channels=GEOMETRY_CHANNELS, **PARAMS.model_kwargs())
    return train, test, [(m - mu) / sd for m in motion], config


def errors(pairs, m_train, m_test):
    train, test, _, config = pairs
    decoder = train_motion_decoder(train, m_train, config, PARAMS, progress=False)
    return held_out_errors(decoder, test, m_test, derangement(len(test), np.random.default_rng(0)))


def test_the_true_motion_helps_the_decoder_and_a_constant_code_does_not(pairs):
    m_train, m_test = pairs[2]
    told = errors(pairs, m_train, m_test)
    assert told.true < told.copy  # it learned something at all
    assert told.shuffled_gain > 0.2, told  # the motion explains the tokens' change here
    assert told.zero > told.true
    assert errors(pairs, m_train, m_test) == told  # one machine, one seed: bit-identical
    blind = errors(pairs, np.zeros_like(m_train), np.zeros_like(m_test))
    assert blind.true == blind.shuffled == blind.zero and blind.shuffled_gain == 0.0
    assert blind.true > told.true
