"""Features cache (pipeline/data/features_cache.py): round trip, manifest, and errors that name the file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pipeline.data import features_cache as fc

SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"


def _arrays(t: int = 4, n: int = 5, c: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((t, n), dtype=bool)
    mask[1, 3:] = False
    return {"frames": np.array([0, 1, 2, 5][:t], dtype=np.int64), "global_": rng.normal(size=(t, c)),
            "tokens": rng.normal(size=(t, n, c)), "token_xyz": rng.normal(size=(t, n, 3)), "token_mask": mask}


def _manifest(**changes) -> dict:
    base = {"weights_source": "random-init (no checkpoint)", "random_weights": True, "preset": "tiny", "channels": 3,
            "tokens": 5, "pooling": "mean", "points_from": "pointclouds", "grid_size": 0.02, "camera": [CAM],
            "sequences": [SEQ]}
    return {**base, **changes}


def test_round_trip(tmp_path) -> None:
    a = _arrays()
    path = fc.features_path(tmp_path, SEQ, CAM)
    assert path == tmp_path / SEQ / "Stereo_Left_Omni_F.npz"
    fc.write_features(path, a["frames"], a["global_"], a["tokens"], a["token_xyz"], a["token_mask"])
    fc.write_manifest(tmp_path, _manifest(extra_key="kept"))
    got = fc.load_features(tmp_path, SEQ, CAM)
    assert sorted(got) == sorted(fc.ARRAYS)
    assert got["frames"].dtype == np.int32 and got["frames"].tolist() == [0, 1, 2, 5]
    np.testing.assert_allclose(got["time_s"], [0.0, 0.2, 0.4, 1.0], rtol=1e-6)  # 5 FPS
    np.testing.assert_array_equal(got["global"], a["global_"].astype(np.float32))
    np.testing.assert_array_equal(got["tokens"], a["tokens"].astype(np.float32))
    np.testing.assert_array_equal(got["token_xyz"], a["token_xyz"].astype(np.float32))
    np.testing.assert_array_equal(got["token_mask"], a["token_mask"])
    assert {k: got[k].dtype for k in got} == {k: np.dtype(v) for k, v in fc.DTYPES.items()}
    manifest = fc.load_manifest(tmp_path)
    assert manifest == _manifest(extra_key="kept")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporaries left


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(tokens=a["tokens"][:, :4]), r"'token_xyz' has shape \(4, 5, 3\), expected \(4, 4, 3\)"),
    (lambda a: a.update(global_=a["global_"][:3]), r"'global' has shape \(3, 3\), expected \(4, 3\)"),
    (lambda a: a["tokens"].__setitem__((0, 0, 0), np.nan), r"'tokens' contains NaN"),
    (lambda a: a.update(frames=np.array([0, 2, 1, 3])), r"strictly increasing"),
    (lambda a: a.update(frames=np.array([0.0, 1.0, 2.0, 3.0])), r"'frames' must be integers"),
    (lambda a: a["token_mask"].__setitem__(slice(None), False), r"no frame has a valid token"),
])
def test_writer_rejects_bad_arrays(tmp_path, change, message) -> None:
    a = _arrays()
    change(a)
    path = fc.features_path(tmp_path, SEQ, CAM)
    with pytest.raises(fc.FeaturesCacheError, match=re.escape(str(path)) + ".*" + message):
        fc.write_features(path, a["frames"], a["global_"], a["tokens"], a["token_xyz"], a["token_mask"])
    assert not path.exists() and not list(path.parent.glob(".*"))


def test_reader_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "manifest.json"))):
        fc.load_manifest(tmp_path)
    missing = fc.features_path(tmp_path, SEQ, CAM)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        fc.load_features(tmp_path, SEQ, CAM)

    a = _arrays()
    fc.write_features(missing, a["frames"], a["global_"], a["tokens"], a["token_xyz"], a["token_mask"])
    fc.write_manifest(tmp_path, _manifest(channels=7))
    with pytest.raises(fc.FeaturesCacheError, match=re.escape(str(missing)) + ": 3 channels, manifest says 7"):
        fc.load_features(tmp_path, SEQ, CAM)
    assert fc.load_features(tmp_path, SEQ, CAM, check_manifest=False)["tokens"].shape == (4, 5, 3)

    (tmp_path / "manifest.json").write_text(json.dumps({k: v for k, v in _manifest().items() if k != "pooling"}))
    with pytest.raises(fc.FeaturesCacheError, match=r"manifest\.json: missing key 'pooling'"):
        fc.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(random_weights="yes")))
    with pytest.raises(fc.FeaturesCacheError, match=r"manifest\.json: 'random_weights' = 'yes' should be bool"):
        fc.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: not valid JSON"):
        fc.load_manifest(tmp_path)

    missing.write_bytes(b"not a zip file")
    with pytest.raises(fc.FeaturesCacheError, match=re.escape(str(missing)) + ": not a readable .npz"):
        fc.load_features(tmp_path, SEQ, CAM, check_manifest=False)
    np.savez(missing, frames=np.arange(2, dtype=np.int32))
    with pytest.raises(fc.FeaturesCacheError, match=re.escape(str(missing)) + r": missing array\(s\)"):
        fc.load_features(tmp_path, SEQ, CAM, check_manifest=False)
    good = _arrays()
    np.savez(missing, frames=good["frames"].astype(np.int32), time_s=np.zeros(4, np.float32),
             **{"global": good["global_"]}, tokens=good["tokens"].astype(np.float32),
             token_xyz=good["token_xyz"].astype(np.float32), token_mask=good["token_mask"])
    with pytest.raises(fc.FeaturesCacheError, match=re.escape(str(missing)) + r": 'global' has dtype float64"):
        fc.load_features(tmp_path, SEQ, CAM, check_manifest=False)
