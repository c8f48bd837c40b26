"""DVC stage `evaluate`: dataset statistics and figures (later issues add model metrics here)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import flatten, load_params, parse_section
from pipeline.data.params import DataParams
from pipeline.errors import one_line_errors

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    raw: Path = typer.Option(Path("data/raw"), help="SYNTHIA-SEQS sequences."),
    clouds: Path = typer.Option(Path("data/pointclouds"), help="Point-cloud parquet dataset."),
    reports: Path = typer.Option(Path("reports/evaluate"), help="Metrics and figures folder."),
    phase1: Path = typer.Option(Path("models/phase1/model.pt"), help="Phase-one model."),
    phase2: Path = typer.Option(Path("models/phase2/model.pt"), help="Phase-two (video) model."),
) -> None:
    params = load_params()
    data = parse_section(params, "data", DataParams)
    from pipeline.data.splits import split_sequences
    from pipeline.eval import dataset_report
    from pipeline.eval.phase1_report import phase1_report
    from pipeline.eval.phase2_report import phase2_report
    from pipeline.io import synthia
    from pipeline.tracking import stage_run

    camera = data.cameras[0]
    layouts = synthia.list_sequences(raw)
    with stage_run("evaluate", reports) as run:
        per_sequence = {layout.name: dataset_report.sequence_stats(layout, camera, clouds) for layout in layouts}
        figures = [dataset_report.overview_figure(layout, camera, clouds, reports / "figures" / f"{layout.name}.png")
                   for layout in layouts]
        totals = {
            "sequences": len(layouts),
            "frames": sum(s["frames"] for s in per_sequence.values()),
            "points_per_frame": round(sum(s["points_per_frame"] for s in per_sequence.values()) / len(layouts), 1),
            "instances_per_frame": round(sum(s["instances_per_frame"] for s in per_sequence.values()) / len(layouts), 2),
            "class_fraction": dataset_report.class_fractions(clouds, [l.name for l in layouts], camera),
        }
        run.log_metrics({"dataset": totals, "per_sequence": per_sequence})
        split = split_sequences([l.name for l in layouts], data.val_sequences, data.test_sequences)
        held_out = split["test"] or split["val"]
        phase1_metrics, phase1_figures = phase1_report(phase1, raw, clouds, held_out, camera, reports / "figures",
                                                       reports / "meshes", reports / "phase1_frames.csv")
        run.log_metrics({"phase1": phase1_metrics})
        phase2_metrics, phase2_figures = phase2_report(phase2, phase1, raw, clouds, held_out, camera, reports / "figures")
        run.log_metrics({"phase2": phase2_metrics})
        for figure in figures + phase1_figures + phase2_figures:
            run.log_artifact(figure, "figures")
        # Make the MLflow run self-describing: every param and the lock file (stages DVC skipped log nothing).
        run.log_params(flatten(params))
        run.log_dict(flatten(params), "config/params_flat.json")
        run.log_artifact(Path("dvc.lock"), "config")


if __name__ == "__main__":
    app()
