"""Official `.pth` round trip, strict loading and the offline error."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models.ptv3.features import extract_features
from pipeline.models.ptv3.loader import RANDOM_INIT, build_random, load_concerto, save_checkpoint

REPO = Path(__file__).resolve().parents[3]


def _cloud(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([0, 0, 0], [1.5, 1.2, 0.8], (n, 3))
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    nrm = rng.normal(size=(n, 3))
    return xyz, rgb, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)


@pytest.mark.parametrize("mask_token", [True, False])
def test_round_trip(tmp_path: Path, mask_token: bool) -> None:
    model = build_random("tiny", seed=3, mask_token=mask_token)
    assert model.weights_source == RANDOM_INIT
    path = tmp_path / "tiny.pth"
    save_checkpoint(model, path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"config", "state_dict"}
    assert ("embedding.mask_token" in raw["state_dict"]) == mask_token
    loaded = load_concerto(path)
    assert not loaded.training and loaded.weights_source == "checkpoint tiny.pth"
    assert loaded.config.enable_flash is False  # no flash_attn / CUDA here
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    cloud = _cloud()
    a = extract_features(model, *cloud, seed=5, n_spatial_tokens=8)
    b = extract_features(loaded, *cloud, seed=5, n_spatial_tokens=8)
    for key in ("point_features", "global_mean", "global_max", "spatial_tokens"):
        assert np.array_equal(a[key], b[key]), key


def test_strict_and_bad_files(tmp_path: Path) -> None:
    model = build_random("tiny")
    state = model.state_dict()
    state["enc.enc0.block0.extra"] = torch.zeros(1)
    torch.save({"config": model.config.to_official(), "state_dict": state}, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_concerto(tmp_path / "extra.pth")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "noconfig.pth")
    with pytest.raises(ValueError, match="official checkpoint"):
        load_concerto(tmp_path / "noconfig.pth")
    with pytest.raises(FileNotFoundError):
        load_concerto(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="released name"):
        load_concerto("concerto_huge")


def test_offline_not_cached_gives_one_clear_error(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)
    code = (
        "from pipeline.models.ptv3.loader import load_concerto\n"
        "try:\n    load_concerto('concerto_small')\n"
        "except FileNotFoundError as e:\n    print('ERR', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [line for line in res.stdout.splitlines() if line.startswith("ERR")]
    assert len(lines) == 1, res.stdout + res.stderr
    assert "Pointcept/Concerto/concerto_small.pth" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "\n" not in lines[0]


def test_load_encoder_default_announces_random_weights(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.models.ptv3.loader import load_encoder

    with caplog.at_level("WARNING"):
        model = load_encoder(None)
    assert model.weights_source == RANDOM_INIT and not model.training
    assert "RANDOM weights" in caplog.text
