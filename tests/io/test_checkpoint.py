"""Checkpoint files: equal tensors give identical bytes; pickles with code and truncated files are one error."""

from __future__ import annotations

import pickle

import pytest
import torch

from pipeline.io import checkpoint


def payload(seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"model": {"w": torch.randn(4, 3, generator=generator)}, "step": 7, "config": {"slots": 8}}


def test_save_twice_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    checkpoint.save(a, payload(0))
    checkpoint.save(b, payload(0))
    assert a.read_bytes() == b.read_bytes()
    checkpoint.save(b, payload(1))
    assert a.read_bytes() != b.read_bytes()  # the bytes do depend on the tensors
    loaded = checkpoint.load(a)
    assert torch.equal(loaded["model"]["w"], payload(0)["model"]["w"]) and loaded["step"] == 7
    assert not [p for p in a.parent.iterdir() if p.name != "model.pt"]  # no temporary left


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_with_code_is_one_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ValueError, match=r"weights\.pth: not a readable checkpoint, refused by torch\.load"):
        checkpoint.load(path)
    assert "code ran" not in capsys.readouterr().out


def test_truncated_checkpoint_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "model.pt"
    checkpoint.save(path, payload(0))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.pt: not a readable checkpoint"):
        checkpoint.load(path)


def test_training_checkpoints_are_byte_reproducible(tmp_path):
    """What the training stages call (``model.pt`` must not change when the tensors do not)."""
    from pipeline.train.common import save_checkpoint

    save_checkpoint(tmp_path / "1" / "model.pt", payload(3))
    save_checkpoint(tmp_path / "2" / "model.pt", payload(3))
    assert (tmp_path / "1" / "model.pt").read_bytes() == (tmp_path / "2" / "model.pt").read_bytes()


def test_concerto_weights_with_code_are_refused_in_one_line(tmp_path):
    from pipeline.models.ptv3.loader import load_checkpoint_dict

    path = tmp_path / "concerto.pth"
    path.write_bytes(pickle.dumps({"config": {}, "state_dict": Payload()}))
    with pytest.raises(ValueError, match=r"concerto\.pth: not a readable checkpoint"):
        load_checkpoint_dict(path)
