"""`protoscene` command line: utilities beside the DVC stages (validation, benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.errors import one_line_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
@one_line_errors
def validate(
    raw: Path = typer.Argument(Path("data/raw"), help="Folder of SYNTHIA-SEQS sequences."),
    camera: str = typer.Option("Stereo_Left/Omni_F", help="Camera to check."),
    pairs: int = typer.Option(5, help="Consecutive-frame pairs (with camera motion) per sequence."),
) -> None:
    """Check SYNTHIA conventions on real data: world overlap of consecutive frames per pose convention."""
    from pipeline.eval.validate_poses import validate_sequence
    from pipeline.io import synthia

    if pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {pairs}")
    reports = [validate_sequence(layout, camera, pairs) for layout in synthia.list_sequences(raw)]
    typer.echo(json.dumps(reports, indent=2))
    unchecked = [r["sequence"] for r in reports if r["pairs_checked"] == 0]
    if unchecked:
        raise ValueError(f"{raw}: nothing checked for {', '.join(unchecked)} (no consecutive frames with camera "
                         f"motion): not a pass")
    bad = [r["sequence"] for r in reports if not r["assumed_convention_ok"]]
    if bad:
        raise ValueError(f"pose convention check failed for {', '.join(bad)} (see the overlap table above)")


@app.command()
@one_line_errors
def relog(stage: str = typer.Argument(..., help="Stage whose reports/<stage> to log again (e.g. evaluate).")) -> None:
    """Log a stage's reports/<stage>/metrics.json and curves to MLflow again (after a tracking failure)."""
    from pipeline.steps import relog as relog_step

    rows = relog_step.run(stage)
    typer.echo(f"logged reports/{stage}/metrics.json and {rows} curve rows to MLflow")


@app.command()
@one_line_errors
def visualize(
    video: Path = typer.Argument(..., help="A .webm / .mp4 video."),
    frame: int = typer.Option(30, help="Frame index to reconstruct."),
    output: Path = typer.Option(Path("output_viz"), help="Folder for the PNG and PLY."),
    frame_size: int = typer.Option(224, help="Square frame size fed to VGGT (multiple of 14)."),
    weights: str = typer.Option("random", help="random (tiny preset, random init) | local file | hub id (e.g. facebook/VGGT-1B)."),
    preset: str = typer.Option("tiny", help="tiny | 1b (use 1b with real weights)."),
    max_points: int = typer.Option(50000, help="Points kept in the cloud."),
) -> None:
    """Point cloud of one video frame from VGGT: a PNG (top + perspective views) and a PLY."""
    from pipeline.data.video import decode_frames
    from pipeline.distributed import pick_device
    from pipeline.eval.visualize_frame import write_frame_views
    from pipeline.models.vggt import vggt_1b, vggt_tiny
    from pipeline.models.vggt.infer import point_cloud_from_outputs, run_vggt
    from pipeline.models.vggt.load import load_vggt

    presets = {"tiny": vggt_tiny, "1b": vggt_1b}
    if preset not in presets:
        raise ValueError(f"--preset must be one of {', '.join(presets)}, got {preset!r}")
    if frame_size < 14 or frame_size % 14:
        raise ValueError(f"--frame-size must be a positive multiple of 14, got {frame_size}")
    if frame < 0 or max_points < 1:
        raise ValueError(f"--frame must be >= 0 and --max-points >= 1, got {frame} and {max_points}")
    images = decode_frames(video, {frame}, frame_size)
    if frame not in images:
        raise ValueError(f"{video}: has no frame {frame}")
    config = presets[preset](enable_point=False, enable_track=False)
    device = pick_device("auto")
    model, info = load_vggt(None if weights == "random" else weights, config, device=device)
    if weights == "random":
        typer.echo("WARNING: VGGT with RANDOM weights: the point cloud shows the pipeline, not a reconstruction", err=True)
    outputs = run_vggt(model, images[frame][None], frames_per_chunk=1, device=device, target_size=frame_size)
    cloud = point_cloud_from_outputs(outputs, max_points)
    paths = write_frame_views(cloud["points"], output, f"{video.stem}_{frame:06d}", cloud["colors"],
                              title=f"{video.name} frame {frame} ({info['weights_source']})")
    typer.echo(f"wrote {paths['png']} and {paths['ply']} ({len(cloud['points'])} points)")


if __name__ == "__main__":
    app()
