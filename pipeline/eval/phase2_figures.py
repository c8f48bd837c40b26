"""Phase-two figures: object tracks (top view, world frame) and a GIF of ray-cast slot reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.camera import world_to_cv
from pipeline.eval.phase1_figures import SLOT_COLOURS, raycast_slots, slot_colours
from pipeline.geometry.mesh_owner import alias_parents
from pipeline.io import atomic, synthia
from pipeline.io.synthia import THING_CLASSES, SequenceLayout

MIN_PIXELS = 50
LEGEND_TRACKS = 24  # track ids listed in the GIF's legend (40 distinct colours, then they cycle)


def gt_tracks(raw: Path, sequence: str, camera: str, frames: list[int]) -> dict[int, np.ndarray]:
    """Visible thing objects' centres per object id as (T_obj, 4) rows [frame, x, y, z] in the OpenCV
    frame of ``frames[0]`` (the world frame of phase two); empty without generated ground truth."""
    layout = SequenceLayout(raw / sequence)
    gt = layout.root / "groundtruth"
    if not (gt / "objects.parquet").is_file():
        return {}
    objects = pd.read_parquet(gt / "objects.parquet")
    seen = pd.read_parquet(gt / "visibility.parquet")
    seen = seen[(seen.camera == camera) & (seen.pixels >= MIN_PIXELS) & seen.frame.isin(frames)]
    rows = objects.merge(seen[["frame", "object_id"]], on=["frame", "object_id"])
    rows = rows[rows.class_id.isin(THING_CLASSES)]
    pose0 = synthia.read_pose(layout.pose(camera, frames[0]))
    out = {}
    for object_id, part in rows.groupby("object_id"):
        part = part.sort_values("frame")
        xyz = world_to_cv(part[["x", "y", "z"]].to_numpy(np.float64), pose0)
        out[int(object_id)] = np.column_stack([part.frame.to_numpy(), xyz])
    return out


def trajectory_figure(sequence: str, slot_centres: np.ndarray, camera_path: np.ndarray,
                      gt_camera_path: np.ndarray | None, tracks: dict[int, np.ndarray], world_note: str, out: Path) -> Path:
    """Top view (x right, z forward of the first frame's camera, metres) of predicted slot tracks (T, K, 3),
    ground-truth object tracks and the camera path (predicted and GT); the legend sits right of the data."""
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    fig, ax = plt.subplots(figsize=(13, 8))
    colours = slot_colours(slot_centres.shape[1])
    for k in range(slot_centres.shape[1]):
        ax.plot(slot_centres[:, k, 0], slot_centres[:, k, 2], "-o", ms=2, lw=1, color=colours[k], alpha=0.8,
                label=f"slot {k}")
    for i, (_, rows) in enumerate(tracks.items()):
        ax.plot(rows[:, 1], rows[:, 3], "--", color="black", lw=1.5, alpha=0.7, label="GT objects" if i == 0 else None)
        ax.plot(rows[-1, 1], rows[-1, 3], "kx", ms=6, label="GT object, last frame" if i == 0 else None)
    ax.plot(camera_path[:, 0], camera_path[:, 2], "-", color="grey", lw=2, label="camera (used)")
    if gt_camera_path is not None:
        ax.plot(gt_camera_path[:, 0], gt_camera_path[:, 2], ":", color="black", lw=2, label="camera (GT)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m, right)")
    ax.set_ylabel("z (m, forward)")
    ax.grid(alpha=0.3)
    ax.set_title(figure_kit.wrap(f"{sequence}: slot tracks vs GT objects (top view); world = first frame's camera; "
                                 f"{world_note}", 90))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, ncol=1 + len(colours) // 16)
    fig.tight_layout()
    return figure_kit.save(fig, out, dpi=70)


def track_palette() -> np.ndarray:
    """(40, 3) distinct RGB colours in [0, 1] (matplotlib's tab20 and tab20b) for the tracks of one figure."""
    from matplotlib import colormaps

    return np.concatenate([colormaps[name].colors for name in ("tab20", "tab20b")])[:, :3]


def track_image(slot: np.ndarray, verts: np.ndarray, slot_to_track: dict[int, int], colours: np.ndarray) -> np.ndarray:
    """RGB (h, w, 3) in [0, 1] of a ray-cast slot image ``slot`` (h, w; -1 = no slot) of the meshes ``verts``
    (K, V, 3), each pixel in the colour of its slot's object track (``colours`` cycled by track id; an alias mesh
    counts as its parent); white where no slot is hit, light grey for a slot without a track (it owns no point)."""
    parent = alias_parents(verts)
    lut = np.full((len(verts), 3), 0.85)
    for k in range(len(verts)):
        track = slot_to_track.get(int(parent[k]))
        if track is not None:
            lut[k] = colours[track % len(colours)]
    return np.where(slot[..., None] >= 0, lut[np.clip(slot, 0, None)], 1.0)


def shared_palette(images: list, keep: np.ndarray) -> list:
    """The RGB PIL ``images`` as palette images that all use one 256-colour palette: the colours ``keep`` (C, 3) in
    [0, 1] (a legend's) exactly, the rest taken from all the images at once. A GIF quantises each frame on its own
    otherwise: the same legend colour then shifts from frame to frame, and two close colours (two tracks) can merge."""
    from PIL import Image

    width, height = images[0].size
    sheet = Image.new("RGB", (width, height * len(images)))
    for i, image in enumerate(images):
        sheet.paste(image, (0, i * height))
    kept = np.unique(np.round(np.asarray(keep, dtype=float) * 255).astype(np.uint8), axis=0)[:255]
    rest = sheet.quantize(256 - len(kept), method=Image.Quantize.MEDIANCUT)
    palette = Image.new("P", (1, 1))
    palette.putpalette(kept.ravel().tolist() + rest.getpalette()[: 3 * (256 - len(kept))])
    return [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]


def raycast_gif(records: list, verts: np.ndarray, faces: np.ndarray, out: Path, tracks: list[dict[int, int]] | None = None,
                max_frames: int = 20, frame_ms: int = 250) -> Path:
    """GIF over ``records`` (at most ``max_frames``, evenly spread): input depth (colour bar, metres) | slot
    meshes ray-cast from the camera, coloured by object track id when ``tracks`` (per frame {slot: track id},
    :func:`pipeline.models.video.object_tracks.track_slots`) is given, else by slot id (legend; a colour that
    stays on one object = identity kept)."""
    from PIL import Image

    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    picks = np.linspace(0, len(records) - 1, min(max_frames, len(records))).astype(int)
    if tracks is None:
        colours = slot_colours(verts.shape[1])
    else:  # one colour per track of this GIF: a colour shared by two tracks would fake an identity
        ids = sorted({t for i in picks for t in tracks[i].values()})  # the tracks the GIF's frames show
        rank = {t: r for r, t in enumerate(ids)}
        tracks = {i: {s: rank[t] for s, t in tracks[i].items()} for i in picks}  # track_image colours by rank
        colours = track_palette()
    finite = np.concatenate([r.depth[np.isfinite(r.depth)] for r in records])
    vmax = float(np.percentile(finite, 95)) if len(finite) else 1.0
    # one figure, laid out once; each GIF frame only swaps the two images and the title
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    first = records[picks[0]]
    im = axes[0].imshow(np.full(first.depth.shape, np.nan), cmap="magma_r", vmin=0, vmax=vmax)
    title = axes[0].set_title(f"{first.sequence} frame {first.frame}: input depth", fontsize=10)
    figure_kit.colorbar(fig, im, axes[0], "depth (m)")
    seg_im = axes[1].imshow(np.ones(first.depth.shape + (3,)))
    if tracks is None:
        axes[1].set_title("ray-cast slots (colour = slot id, white = none)", fontsize=10)
        figure_kit.slot_legend(axes[1], colours, ncol=1 + len(colours) // 9)
    else:
        axes[1].set_title("ray-cast slots (colour = object track, white = none)", fontsize=10)
        shown = ids[:LEGEND_TRACKS]
        figure_kit.colour_legend(axes[1], [colours[rank[t] % len(colours)] for t in shown], [f"track {t}" for t in shown],
                                 "track id", ncol=1 + len(shown) // 9)
    figure_kit.image_axes(*axes)
    fig.tight_layout()
    images = []
    for i in picks:
        record = records[i]
        _, slot = raycast_slots(verts[i], faces, record)
        im.set_data(np.where(np.isfinite(record.depth), record.depth, np.nan))
        if tracks is None:
            seg_im.set_data(np.where(slot[..., None] >= 0, colours[np.clip(slot, 0, None)], 1.0))
        else:
            seg_im.set_data(track_image(slot, verts[i], tracks[i], colours))
        title.set_text(f"{record.sequence} frame {record.frame}: input depth")
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
    plt.close(fig)
    images = shared_palette(images, np.concatenate([colours, [[1.0, 1.0, 1.0], [0.85, 0.85, 0.85]]]))
    atomic.write_with(out, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=frame_ms, loop=0))
    return out
