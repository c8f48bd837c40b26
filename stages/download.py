"""DVC stage `download`: raw SYNTHIA-SEQS sequences into data/raw (generated offline by default).

`download.source: synthetic` renders look-alike sequences (exact SYNTHIA layout and encodings plus
ground-truth parquet); `synthia` fetches the real archives (see README, "Real SYNTHIA").
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams, DownloadParams
from pipeline.errors import one_line_errors
from pipeline.io import atomic
from pipeline.io.atomic import atomic_dir

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    out: Path = typer.Option(Path("data/raw"), help="Folder that receives the sequence folders."),
    archive_cache: Path = typer.Option(Path(".cache/synthia"), help="Where real archives are kept (resume)."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Render processes (does not change outputs)."),
) -> None:
    params = load_params()
    data, download = parse_section(params, "data", DataParams), parse_section(params, "download", DownloadParams)
    from pipeline.tracking import stage_run

    with atomic.transaction(), stage_run("download") as run:  # data/raw and reports change together
        run.log_params({"data": params["data"], "download": params["download"]})
        with atomic_dir(out) as tmp:
            if download.source == "synthetic":
                from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset

                config = GeneratorConfig(seed=data.seed, sequences=data.sequences, frames=data.frames,
                                         height=data.height, width=data.width, cameras=data.cameras, workers=workers)
                folders = generate_dataset(config, tmp)
            else:
                from pipeline.io.download import download_sequences

                folders = download_sequences(list(download.synthia_sequences), download.synthia_base_url, tmp,
                                             checksums_path=Path("synthia.sha256"), cameras=list(data.cameras),
                                             frame_limit=data.frames, archive_cache=archive_cache)
        files = [p for p in atomic.current_path(out).rglob("*") if p.is_file()]
        run.log_metrics({"source": download.source, "sequences": len(folders), "files": len(files),
                         "bytes": sum(p.stat().st_size for p in files)})


if __name__ == "__main__":
    app()
