"""Pre-processing gives the reference sizes and a record that maps pixels and intrinsics back."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.models.vggt.preprocess import preprocess_frames


def blank(h: int, w: int, value: int = 0) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


@pytest.mark.parametrize("hw,mode,expected", [
    ((1080, 1920), "crop", (294, 518)),   # landscape: 37 x 21 patches
    ((1920, 1080), "crop", (518, 518)),   # portrait: resized to 518 x 924, centre-cropped
    ((1920, 1080), "pad", (518, 518)),    # portrait: 294 wide, padded
    ((480, 640), "crop", (392, 518)),     # 480 * 518 / 640 = 388.5 -> 28 patches
    ((70, 98), "crop", (364, 518)),
])
def test_reference_sizes(hw, mode, expected):
    x, rec = preprocess_frames([blank(*hw)], mode=mode)
    assert tuple(x.shape) == (1, 3, *expected)
    assert rec.model_hw == expected
    assert x.shape[-1] % 14 == 0 and x.shape[-2] % 14 == 0


def test_pad_mode_is_white_and_centred():
    x, rec = preprocess_frames([blank(1920, 1080, 0)], mode="pad")
    assert tuple(rec.resized_hw[0]) == (518, 294)
    left = (518 - 294) // 2
    assert torch.all(x[0, :, :, :left] == 1.0) and torch.all(x[0, :, :, left + 294:] == 1.0)
    assert torch.all(x[0, :, :, left:left + 294] == 0.0)
    assert tuple(rec.offset_xy[0]) == (left, 0)


def test_resize_matches_pil_bicubic_and_crop_keeps_the_centre():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)  # portrait -> 518 x 784, crop 133 rows
    x, rec = preprocess_frames([img], mode="crop")
    ref = np.asarray(Image.fromarray(img).resize((518, 784), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    top = (784 - 518) // 2
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), ref[top:top + 518])
    assert tuple(rec.offset_xy[0]) == (0, -top)


def test_mixed_sizes_are_padded_white_to_the_largest():
    x, rec = preprocess_frames([blank(100, 200), blank(200, 200)], mode="crop")
    assert tuple(x.shape) == (2, 3, 518, 518)
    # first frame: 100 * 518 / 200 / 14 = 18.5 patches -> Python round (half to even) = 18 -> 252 rows
    assert tuple(rec.resized_hw[0]) == (252, 518)
    assert torch.all(x[0, :, :133] == 1.0) and torch.all(x[0, :, 133 + 252:] == 1.0)
    assert torch.all(x[0, :, 133:133 + 252] == 0.0)
    assert tuple(rec.offset_xy[0]) == (0, 133)


def test_rgba_is_composited_on_white():
    img = np.zeros((28, 28, 4), dtype=np.uint8)  # fully transparent black
    x, _ = preprocess_frames([img])
    assert torch.allclose(x, torch.ones_like(x))


@pytest.mark.parametrize("hw,mode", [((120, 200), "crop"), ((300, 160), "crop"), ((300, 160), "pad")])
def test_record_maps_a_blob_back_to_its_original_position(hw, mode):
    H, W = hw
    img = blank(H, W)
    y0, x0 = int(H * 0.55), int(W * 0.3)
    img[y0 - 4:y0 + 4, x0 - 4:x0 + 4] = 255  # blob centred at (x0, y0) in corner coordinates
    x, rec = preprocess_frames([img], mode=mode)
    g = x[0, 0].numpy().astype(np.float64)
    if mode == "pad":
        ox, oy = rec.offset_xy[0].astype(int)
        rh, rw = rec.resized_hw[0]
        g = np.where(np.pad(np.ones((rh, rw)), ((oy, g.shape[0] - rh - oy), (ox, g.shape[1] - rw - ox))) > 0, g, 0)
    vv, uu = np.mgrid[:g.shape[0], :g.shape[1]]
    centroid = np.array([(g * (uu + 0.5)).sum(), (g * (vv + 0.5)).sum()]) / g.sum()
    back = rec.model_to_original(centroid, 0)
    np.testing.assert_allclose(back, [x0, y0], atol=0.35)
    np.testing.assert_allclose(rec.original_to_model(back, 0), centroid, atol=1e-9)


def test_intrinsics_map_back_to_original_pixels():
    """Project a 3-D point with the original camera; the model-pixel projection must be the affine image."""
    x, rec = preprocess_frames([blank(300, 160)], mode="crop")
    H, W = rec.model_hw
    K_model = np.array([[[400.0, 0, W / 2], [0, 410.0, H / 2], [0, 0, 1]]])
    K_orig = rec.intrinsics_to_original(K_model)
    X = np.array([0.3, -0.2, 2.0])
    p_orig = (K_orig[0] @ X)[:2] / X[2]
    p_model = (K_model[0] @ X)[:2] / X[2]
    np.testing.assert_allclose(rec.original_to_model(p_orig, 0), p_model, atol=1e-9)
    np.testing.assert_allclose(K_orig[0, :2, 2], [80.0, 150.0], atol=0.5)  # centre of the original image


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        preprocess_frames([blank(28, 28)], mode="stretch")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames([np.zeros((28, 28, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="at least one"):
        preprocess_frames([])
