"""DVC stage ``download``: raw SYNTHIA-SEQS sequences into ``data/raw`` (generated offline by default).

``download.source: synthetic`` renders look-alike sequences (exact SYNTHIA layout and encodings plus
ground-truth parquet, ``pipeline/data/synthetic/``); ``synthia`` fetches the real archives
(``pipeline/io/download.py``; README, "Real SYNTHIA"). ``videos`` also renders the synthetic default: the video
folder feeds only vggt -> concerto -> laq (stage ``videos``), the slot models keep their depth data, and the
output is bit-identical to ``synthetic`` so the depth branch does not rerun. The folder is replaced atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.config import parse_section
from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.io import atomic
from pipeline.io.atomic import atomic_dir
from pipeline.io.download import download_sequences
from pipeline.params.data import DataParams, DownloadParams
from pipeline.tracking import stage_run

CHECKSUMS = Path("synthia.sha256")


def run(params: dict[str, Any], out: Path, archive_cache: Path, workers: int = 2) -> None:
    """The stage: sequences into ``out``; real archives are kept in ``archive_cache`` (resume).

    ``params``: the whole params.yaml (sections ``data`` and ``download``); ``workers``: render processes.
    """
    data, download = parse_section(params, "data", DataParams), parse_section(params, "download", DownloadParams)
    with atomic.transaction(), stage_run("download") as stage:  # data/raw and reports change together
        stage.log_params({"data": params["data"], "download": params["download"]})
        start = time.perf_counter()
        with atomic_dir(out) as tmp:
            if download.source in ("synthetic", "videos"):
                config = GeneratorConfig(seed=data.seed, sequences=data.sequences, frames=data.frames,
                                         height=data.height, width=data.width, cameras=data.cameras, workers=workers)
                folders = generate_dataset(config, tmp)
            else:
                folders = download_sequences(list(download.synthia_sequences), download.synthia_base_url, tmp,
                                             checksums_path=CHECKSUMS, cameras=list(data.cameras),
                                             frame_limit=data.frames, archive_cache=archive_cache)
        files = [p for p in atomic.current_path(out).rglob("*") if p.is_file()]
        stage.log_metrics({"source": download.source, "sequences": len(folders), "files": len(files),
                           "bytes": sum(p.stat().st_size for p in files)})
        frames = sum(p.suffix == ".png" and "Depth" in p.parts for p in files)  # depth images, every camera
        stage.log_run_facts({"frames_per_s": round(frames / (time.perf_counter() - start), 2)})
