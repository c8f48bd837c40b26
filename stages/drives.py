"""DVC stage `drives`: many short, small drives with manoeuvres, only for the concerto -> laq branch.

The work is :func:`pipeline.steps.drives.run`: writes ``data/drives`` (point-cloud parquet, ground truth and
splits; ``pipeline/data/drives.py``) and ``reports/drives/metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import load_params
from pipeline.errors import one_line_errors
from pipeline.stage_process import frozen_imports, run_and_exit
from pipeline.tracking import early_tracking

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    out: Path = typer.Option(Path("data/drives"), help="Output folder."),
    workers: int = typer.Option(2, help="Rendering processes (one drive each; output does not depend on it)."),
    progress: bool = typer.Option(True, help="Show a progress bar over drives."),
) -> None:
    with early_tracking("drives"):  # the MLflow service opens the stage run while the block imports torch & co.
        with frozen_imports():
            from pipeline.steps import drives
        drives.run(load_params(), out, workers, progress)


if __name__ == "__main__":
    run_and_exit(app)
