"""DVC stage `vggt`: RGB frames -> VGGT depth, cameras and point clouds, evaluated against ground truth.

Outputs ``data/vggt`` (npz per camera, ``points/`` parquet), ``reports/vggt/metrics.json`` and
``reports/vggt/figures``; see :mod:`pipeline.models.vggt.outputs`. Random weights (the offline default)
are announced on stderr, in MLflow and in every metric file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.config import load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.errors import one_line_errors
from pipeline.models.vggt.params import VggtParams

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences (download stage output)."),
    out: Path = typer.Option(Path("data/vggt"), help="Output folder (npz per camera, points/ parquet)."),
    reports: Path = typer.Option(Path("reports/vggt"), help="Metrics and figures folder."),
    device: str = typer.Option("auto", help="auto (CUDA if available) | cpu | cuda. Does not change params."),
    threads: int = typer.Option(1, help="torch CPU threads (0 = torch default). One thread is the fastest on a "
                                        "shared 2-core machine: with busy cores, intra-op thread barriers stall."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    p = parse_section(params, "vggt", VggtParams)
    from pipeline import runtime
    from pipeline.models.vggt.load import load_vggt
    from pipeline.models.vggt.outputs import build_vggt_outputs
    from pipeline.io import atomic
    from pipeline.tracking import stage_run

    torch_device = runtime.stage_device(device)
    runtime.set_torch_threads(threads)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: dataset folder not found (run the download stage first)")
    model, info = load_vggt(p.weights, p.model_config(), revision=p.revision or None, device=torch_device, seed=p.seed)
    random_weights = bool(info["random_init"])
    if random_weights:
        print(f"WARNING: vggt: RANDOM WEIGHTS ({info['weights_source']}, preset {p.preset}): depth, cameras, points "
              f"and metrics are NOT meaningful. Use real weights with e.g. `dvc exp run -S vggt.weights=facebook/VGGT-1B "
              f"-S vggt.preset=1b -S vggt.target_size=518` on a machine with internet.", file=sys.stderr, flush=True)
    with atomic.transaction(), stage_run("vggt", reports) as run:  # all outputs change together
        run.log_params({"vggt": params["vggt"], "data.cameras": list(data.cameras)})
        run.set_tags({"vggt.weights_source": info["weights_source"], "vggt.random_weights": str(random_weights)})
        run.log_metrics(build_vggt_outputs(raw, out, reports / "figures", data.cameras, p, model, torch_device,
                                           random_weights))
        for png in sorted(atomic.current_path(reports / "figures").glob("*.png")):
            run.log_artifact(png, "figures")


if __name__ == "__main__":
    app()
