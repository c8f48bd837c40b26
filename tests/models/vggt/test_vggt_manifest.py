"""The VGGT-1B preset reproduces the released checkpoint layout key for key (no weights needed)."""

from pathlib import Path

import pytest
import torch

from pipeline.models.vggt import VGGT, default_dpt_layers, vggt_1b, vggt_tiny
from pipeline.models.vggt.load import (VGGT_1B_ORDERED_MANIFEST_SHA256, VGGT_1B_SORTED_MANIFEST_SHA256,
                                       manifest_sha256)

MANIFEST = Path(__file__).resolve().parents[2] / "reference" / "vggt_1b.tsv"  # names and shapes of the published checkpoint


def read_manifest(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return rows


@pytest.fixture(scope="module")
def meta_1b() -> VGGT:
    with torch.device("meta"):
        return VGGT(vggt_1b())


def test_1b_state_dict_matches_manifest_in_order(meta_1b):
    got = [(k, tuple(v.shape)) for k, v in meta_1b.state_dict().items()]
    ref = read_manifest(MANIFEST)
    assert len(got) == len(ref) == 1797
    for i, (g, r) in enumerate(zip(got, ref)):
        assert g == r, f"entry {i}: {g} != {r}"


def test_1b_manifest_hashes_and_counts(meta_1b):
    shapes = [(k, tuple(v.shape)) for k, v in meta_1b.state_dict().items()]
    assert manifest_sha256(shapes, sort=False) == VGGT_1B_ORDERED_MANIFEST_SHA256
    assert manifest_sha256(shapes, sort=True) == VGGT_1B_SORTED_MANIFEST_SHA256
    assert sum(v.numel() for v in meta_1b.state_dict().values()) == 1_256_537_516
    assert all(v.dtype == torch.float32 for v in meta_1b.state_dict().values())


def test_normalisation_buffers_are_not_persistent(meta_1b):
    buffers = dict(meta_1b.named_buffers())
    assert {"aggregator._resnet_mean", "aggregator._resnet_std"} <= set(buffers)
    assert not any("_resnet" in k for k in meta_1b.state_dict())


def test_disabled_heads_drop_exactly_their_prefix():
    with torch.device("meta"):
        full = VGGT(vggt_1b()).state_dict()
        no_track = VGGT(vggt_1b(enable_track=False, enable_point=False)).state_dict()
    expected = [k for k in full if not k.startswith(("track_head.", "point_head."))]
    assert list(no_track) == expected
    assert sum(k.startswith("track_head.") for k in full) == 394


def test_tiny_has_the_same_module_tree():
    with torch.device("meta"):
        tiny = VGGT(vggt_tiny()).state_dict()
        big = VGGT(vggt_1b()).state_dict()

    def pattern(key: str) -> str:  # drop block indices so depth differences do not matter
        return ".".join("N" if part.isdigit() and prev in {"blocks", "frame_blocks", "global_blocks", "trunk",
                                                           "time_blocks", "space_virtual_blocks",
                                                           "space_point2virtual_blocks",
                                                           "space_virtual2point_blocks"} else part
                        for prev, part in zip([""] + key.split("."), key.split(".")))

    assert list(dict.fromkeys(map(pattern, tiny))) == list(dict.fromkeys(map(pattern, big)))


def test_dpt_layer_rule():
    assert default_dpt_layers(24) == (4, 11, 17, 23)
    assert default_dpt_layers(4) == (0, 1, 2, 3)
    assert vggt_1b().needed_layers() == (4, 11, 17, 23)
    assert vggt_1b(enable_depth=False, enable_point=False, enable_track=False).needed_layers() == (23,)
    with pytest.raises(ValueError):
        default_dpt_layers(3)
