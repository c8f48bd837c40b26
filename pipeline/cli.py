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

    reports = [validate_sequence(layout, camera, pairs) for layout in synthia.list_sequences(raw)]
    typer.echo(json.dumps(reports, indent=2))
    bad = [r["sequence"] for r in reports if not r["assumed_convention_ok"]]
    if bad:
        raise ValueError(f"pose convention check failed for {', '.join(bad)} (see the overlap table above)")


if __name__ == "__main__":
    app()
