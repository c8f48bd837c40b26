"""Released presets built on the meta device match the reference state-dict manifests key for key."""

from pathlib import Path

import pytest
import torch

from pipeline.models.ptv3.config import PTv3Config, preset
from pipeline.models.ptv3.model import PointTransformerV3

REFERENCE = Path(__file__).resolve().parents[2] / "reference"


def read_manifest(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return rows


@pytest.mark.parametrize("name", ["concerto_small", "concerto_base", "concerto_large"])
@pytest.mark.parametrize("mask_token", [True, False])
def test_meta_model_matches_manifest(name: str, mask_token: bool) -> None:
    path = REFERENCE / f"{name}.tsv"
    ref = read_manifest(path)
    assert ref[0][0] == "embedding.mask_token"
    if not mask_token:
        ref = [r for r in ref if r[0] != "embedding.mask_token"]
    with torch.device("meta"):
        model = PointTransformerV3(preset(name, mask_token=mask_token))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == ref  # names, shapes and order
    assert all(v.is_meta for v in model.state_dict().values())


def test_parameter_counts_match_readme() -> None:
    expected = {"concerto_small": 38_648_992, "concerto_base": 108_461_376, "concerto_large": 207_667_456}
    for name, count in expected.items():
        with torch.device("meta"):
            model = PointTransformerV3(preset(name))
        assert sum(p.numel() for p in model.parameters()) == count


def test_official_config_mapping() -> None:
    official = preset("concerto_base").to_official()
    official.update(traceable=True, dec_depths=[1, 1, 1, 1], order=["z", "hilbert"])
    cfg = PTv3Config.from_official(official)
    assert cfg.enc_channels == (48, 96, 192, 384, 512) and cfg.order == ("z", "hilbert")
    assert cfg.extra["traceable"] is True
    for bad in ({"enable_rpe": True}, {"enc_mode": False}, {"some_new_flag": 1}, {"order": ["peano"]}):
        with pytest.raises(ValueError):
            PTv3Config.from_official({**official, **bad})


def test_drop_path_rates_in_python() -> None:
    rates = preset("concerto_small", drop_path=0.3).drop_path_rates()
    assert len(rates) == 14 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates == pytest.approx(torch.linspace(0, 0.3, 14).tolist())
