"""Every report figure renders to a readable image: sane pixel size, not blank, on small synthetic inputs.

(The smoke pipeline runs the same check on every figure the stages declare in ``dvc.yaml``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.frames import FrameSelection, load_frames
from pipeline.eval import curve_figures, dataset_report, laq_metrics, phase1_figures, phase2_figures, vggt_figures
from pipeline.geometry.icosphere import ico_sphere
from pipeline.io.synthia import SequenceLayout
from pipeline.steps.pointclouds import build_pointclouds
from tests.conftest import repo_params

SEQ = "SYNTHIA-SEQS-01-GENERATED"
CAM = "Stereo_Left/Omni_F"


@pytest.fixture(scope="module")
def scene(generated_root, tmp_path_factory):
    clouds = tmp_path_factory.mktemp("clouds")
    build_pointclouds(generated_root, clouds, (CAM,), repo_params("pointcloud", max_points=256), workers=1, progress=False)
    records, _ = load_frames(generated_root, clouds, [SEQ], CAM,
                             FrameSelection(points="all", far_m=60.0, input_height=64, input_width=96, min_points=8,
                                            slots=3, seed=0), progress=False)
    verts, faces = ico_sphere(1)
    # three unit-ish spheres at each record's cluster centres: meshes the ray caster can hit
    meshes = np.stack([r.anchors.centre[:, None] + 0.5 * verts.numpy()[None] for r in records])  # (T, K, V, 3)
    return generated_root, clouds, records, meshes, faces.numpy()


def test_dataset_overview(scene, tmp_path, assert_readable):
    raw, clouds, *_ = scene
    assert_readable(dataset_report.overview_figure(SequenceLayout(raw / SEQ), CAM, clouds, tmp_path / "d.png"))


def test_dataset_report_in_a_worker_equals_its_parts(scene, tmp_path):
    """``report`` (run in the stage's forked worker) gives the stats, class fractions and figure bytes of the
    separate calls made in this process, and ``figure_kit.png_bytes`` is what ``savefig`` writes to a file."""
    from pipeline.eval import figure_kit
    from pipeline.io import synthia
    from pipeline.steps.evaluate import _workers

    raw, clouds, *_ = scene
    layouts = synthia.list_sequences(raw)
    with _workers(1) as pool:
        totals, per_sequence, pngs = pool.submit(dataset_report.report, layouts, CAM, clouds).result()
    assert per_sequence == {l.name: dataset_report.sequence_stats(l, CAM, clouds) for l in layouts}
    assert totals["class_fraction"] == dataset_report.class_fractions(clouds, [l.name for l in layouts], CAM)
    assert totals["frames"] == sum(len(l.frames(CAM)) for l in layouts)
    for layout in layouts:
        assert pngs[layout.name] == dataset_report.overview_figure(layout, CAM, clouds, tmp_path / "o.png").read_bytes()
    plt = figure_kit.pyplot()
    figures = [plt.subplots(figsize=(3, 2))[0] for _ in range(2)]
    for fig in figures:
        fig.axes[0].plot([0, 1], [1, 0])
    figures[0].savefig(tmp_path / "direct.png", dpi=70, format="png")
    assert figure_kit.png_bytes(figures[1], dpi=70) == (tmp_path / "direct.png").read_bytes()
    plt.close(figures[0])


def test_phase_one_figures(scene, tmp_path, assert_readable):
    _, _, records, meshes, faces = scene
    record = records[0]
    point_slot = np.asarray(record.anchors.label)
    assert_readable(phase1_figures.reconstruction_figure(record, meshes[0], faces, point_slot,
                                                         "learned slots + 2 refinement steps", tmp_path / "r.png"))
    shapes = np.stack([meshes[0][0] - meshes[0][0].mean(0)] * 6)
    assert_readable(phase1_figures.prototype_gallery(shapes, faces, np.full(6, 1 / 6), tmp_path / "p.png"))


def test_phase_two_figures(scene, tmp_path, assert_readable):
    _, _, records, meshes, faces = scene
    centres = meshes.mean(axis=2)  # (T, K, 3)
    camera = np.cumsum(np.tile([[0.0, 0.0, 1.0]], (len(records), 1)), axis=0)
    tracks = {7: np.column_stack([np.arange(len(records)), centres[:, 0]])}
    assert_readable(phase2_figures.trajectory_figure(SEQ, centres, camera, camera + 0.1, tracks,
                                                     "camera from ground truth", tmp_path / "t.png"))
    assert_readable(phase2_figures.raycast_gif(records, meshes, faces, tmp_path / "g.gif"))
    tracks = [{0: 5, 1: 2} for _ in records]  # slot 0 is object track 5 in every frame
    assert_readable(phase2_figures.raycast_gif(records, meshes, faces, tmp_path / "tracks.gif", tracks))
    changing = [{0: 5 + i, 1: 2} for i in range(len(records))]  # a new track in every frame, only 2 frames drawn
    assert_readable(phase2_figures.raycast_gif(records, meshes, faces, tmp_path / "few.gif", changing, max_frames=2))


def test_the_track_palette_has_40_distinct_colours():
    palette = phase2_figures.track_palette()
    assert palette.shape == (40, 3) and len(np.unique(palette, axis=0)) == 40
    assert palette.min() >= 0 and palette.max() <= 1


def test_track_image_colours_pixels_by_track_and_aliases_by_their_parent():
    sphere = np.zeros((4, 3))
    verts = np.stack([sphere, sphere + 1, sphere, sphere + 2])  # slot 2 is an alias of slot 0
    slot = np.array([[0, 1, 2, 3, -1]])
    colours = np.eye(3)
    image = phase2_figures.track_image(slot, verts, {0: 4, 1: 0}, colours)
    np.testing.assert_allclose(image[0], [colours[4 % 3], colours[0], colours[4 % 3], [0.85] * 3, [1.0] * 3])


def test_vggt_and_laq_figures(tmp_path, assert_readable):
    rng = np.random.default_rng(0)
    depth = rng.uniform(2, 40, (42, 70))
    assert_readable(vggt_figures.depth_figure(tmp_path / "v.png", "SEQ frame 0", rng.integers(0, 255, (96, 160, 3), np.uint8),
                                              depth * 1.1, depth, 1 + rng.random((42, 70)), 2.0, "random weights"))
    motion = rng.normal(size=(30, 6))
    probe = {"true": motion, "predicted": motion + 0.1 * rng.normal(size=motion.shape),
             "sequence": np.repeat(["SEQ-05", "SEQ-06"], 15)}
    laq_metrics.probe_figure(probe, tmp_path / "probe.png")
    assert_readable(tmp_path / "probe.png")
    laq_metrics.usage_figure({"train": rng.integers(0, 64, (40, 4)), "held_out": rng.integers(0, 64, (20, 4))}, 64,
                             tmp_path / "usage.png")
    assert_readable(tmp_path / "usage.png")


def test_training_curves_group_scales_and_render(tmp_path, assert_readable):
    rows = [{"step": s, "loss": 80.0 / (s + 1), "chamfer_m": 0.2, "motion_m": 30.0 + s, "lr": 1e-4} for s in range(6)]
    out = curve_figures.curves_figure({"train": rows, "val": rows[::2]}, "demo", tmp_path / "c.png")
    assert_readable(out)
    groups = curve_figures.scale_groups({"chamfer_m": 0.2, "motion_m": 35.0, "free_space_m": 0.5, "loss": 80.0, "lr": 1e-4})
    assert sorted(map(sorted, groups)) == [["chamfer_m", "free_space_m"], ["loss"], ["lr"], ["motion_m"]]


def test_frame_points_are_writable(scene):
    """Figures and metrics hand ``record.points`` to torch, which warns about read-only arrays."""
    _, _, records, *_ = scene
    assert all(r.points.flags.writeable for r in records)


def test_gif_frames_share_one_palette_that_keeps_the_legend_colours_exactly():
    """Two close legend colours and 300 others over 3 frames (more than a GIF palette holds): every frame uses the
    same palette, and each legend colour stays one exact entry of it (a colour means the same track in every frame)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (300, 3), dtype=np.uint8)
    frames = [Image.fromarray(np.repeat(colours[None, i * 100 : (i + 1) * 100], 4, axis=0)) for i in range(3)]
    legend = np.array([[158, 218, 229], [174, 199, 232]])  # tab20's light cyan and light blue
    for frame in frames:
        frame.putpixel((0, 0), tuple(legend[0].tolist()))
        frame.putpixel((1, 0), tuple(legend[1].tolist()))
    shared = phase2_figures.shared_palette(frames, legend / 255)
    assert len({tuple(f.getpalette()) for f in shared}) == 1
    palette = np.array(shared[0].getpalette()).reshape(-1, 3)
    for x, colour in enumerate(legend):
        (entry,) = {f.getpixel((x, 0)) for f in shared}
        assert palette[entry].tolist() == colour.tolist()
