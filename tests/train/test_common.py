"""Generic training helpers: device pick, seeding, RNG round trip, checkpoints, single-process DDP helpers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pipeline.train import common


def test_pick_device():
    assert common.pick_device("cpu") == torch.device("cpu")
    assert common.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            common.pick_device("cuda")


def test_rng_state_round_trip_through_checkpoint(tmp_path):
    common.seed_everything(5)
    state = common.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    common.save_checkpoint(tmp_path / "ck.pt", {"rng": state, "step": 3, "name": "x"})
    random.random(), np.random.rand(), torch.rand(1)  # advance all generators
    loaded = common.load_checkpoint(tmp_path / "ck.pt")  # weights_only=True
    common.set_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert loaded["step"] == 3 and loaded["name"] == "x"


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        common.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable checkpoint"):
        common.load_checkpoint(tmp_path / "bad.pt")


def test_checkpoint_rejects_arbitrary_objects(tmp_path):
    import fractions

    torch.save({"obj": fractions.Fraction(1, 3)}, tmp_path / "obj.pt")  # not on the weights_only allow-list
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        common.load_checkpoint(tmp_path / "obj.pt")


def test_single_process_helpers_are_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = common.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(common.all_reduce_sum(t.clone()), t)
    assert torch.equal(common.all_reduce_mean(t.clone()), t)
    assert torch.equal(common.broadcast_(t.clone()), t)
    model = torch.nn.Linear(2, 2)
    assert common.unwrap(model) is model
