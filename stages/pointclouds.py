"""DVC stage `pointclouds`: depth maps -> labelled point clouds with normals, in parquet."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.data.pointcloud import PointcloudParams
from pipeline.errors import one_line_errors

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences (download stage output)."),
    out: Path = typer.Option(Path("data/pointclouds"), help="Parquet dataset to write."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Processes (does not change outputs)."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    cloud = parse_section(params, "pointcloud", PointcloudParams)
    from pipeline.data.build_pointclouds import build_pointclouds
    from pipeline.io import atomic
    from pipeline.tracking import stage_run

    with atomic.transaction(), stage_run("pointclouds") as run:  # data/pointclouds and reports change together
        run.log_params({"pointcloud": params["pointcloud"], "data.cameras": list(data.cameras)})
        run.log_metrics(build_pointclouds(raw, out, data.cameras, cloud, workers=workers))


if __name__ == "__main__":
    app()
