"""Loader: official file formats round trip, strict key checks, offline error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pipeline.models.vggt import build_vggt, vggt_1b, vggt_tiny
from pipeline.models.vggt.load import RANDOM_SOURCE, load_vggt

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_and_images():
    model = build_vggt(vggt_tiny(), seed=7)
    images = torch.rand(2, 3, 70, 98, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(images, heads=("camera", "depth", "point"))
    return model, images, ref


def _same_outputs(model, images, ref):
    with torch.inference_mode():
        out = model(images, heads=("camera", "depth", "point"))
    for key in ("pose_enc", "depth", "depth_conf", "world_points"):
        assert torch.equal(out[key], ref[key]), key


def test_round_trip_safetensors_dir(tmp_path, tiny_and_images):
    model, images, ref = tiny_and_images
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"img_size": 56, "patch_size": 14, "embed_dim": 64}, indent=2))
    loaded, info = load_vggt(tmp_path, vggt_tiny())
    assert info["weights_source"] == f"file:{(tmp_path / 'model.safetensors').resolve()}"
    assert not info["random_init"] and loaded.weights_source == info["weights_source"]
    assert not any(t.is_meta for t in list(loaded.parameters()) + list(loaded.buffers()))
    _same_outputs(loaded, images, ref)


@pytest.mark.parametrize("nested", [False, True])
def test_round_trip_torch_pickle(tmp_path, tiny_and_images, nested):
    model, images, ref = tiny_and_images
    sd = model.state_dict()
    torch.save({"model": sd} if nested else sd, tmp_path / "model.pt")
    loaded, _ = load_vggt(tmp_path / "model.pt", vggt_tiny())
    _same_outputs(loaded, images, ref)


def test_disabled_head_keys_are_dropped(tmp_path, tiny_and_images):
    model, images, ref = tiny_and_images
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded, info = load_vggt(tmp_path, vggt_tiny(enable_track=False))
    assert loaded.track_head is None
    assert info["dropped_keys"] == sum(k.startswith("track_head.") for k in model.state_dict())
    _same_outputs(loaded, images, ref)


def test_renamed_or_extra_key_is_a_clear_error(tmp_path, tiny_and_images):
    model, _, _ = tiny_and_images
    sd = dict(model.state_dict())
    sd["depth_head.norm.weight_renamed"] = sd.pop("depth_head.norm.weight")
    torch.save(sd, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"1 missing \[depth_head.norm.weight\], 1 unexpected"):
        load_vggt(tmp_path / "renamed.pt", vggt_tiny())
    sd = dict(model.state_dict(), extra_thing=torch.zeros(1))
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"0 missing \[\], 1 unexpected \[extra_thing\]"):
        load_vggt(tmp_path / "extra.pt", vggt_tiny())


def test_wrong_architecture_fails_the_1b_manifest_check(tmp_path, tiny_and_images):
    model, _, _ = tiny_and_images
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_vggt(tmp_path, vggt_1b())


def test_missing_path_and_random_init():
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vggt("./no/such/checkpoint.pt", vggt_tiny())
    model, info = load_vggt("random", vggt_tiny())
    assert info == {"weights_source": RANDOM_SOURCE, "random_init": True, "dropped_keys": 0}
    assert model.weights_source == RANDOM_SOURCE


def test_offline_without_cache_is_one_clear_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)
    code = ("from pipeline.models.vggt.load import load_vggt\n"
            "try:\n    load_vggt('facebook/VGGT-1B')\n"
            "except FileNotFoundError as e:\n    print('ERR', e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    lines = [l for l in res.stdout.splitlines() if l.startswith("ERR")]
    assert len(lines) == 1, res.stdout + res.stderr
    assert "facebook/VGGT-1B@860abec" in lines[0] and "not in the Hugging Face cache" in lines[0]
    assert "\n" not in lines[0]


def test_commercial_repo_needs_a_pinned_revision():
    with pytest.raises(ValueError, match="pinned revision"):
        load_vggt("facebook/VGGT-1B-Commercial")
