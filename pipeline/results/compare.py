"""`python -m pipeline.results.compare A B`: two result sets of the preset, forecast by forecast (phase two).

For the kept runs ``reports/results/runs/<A>/seed<N>`` and ``.../<B>/seed<N>`` (the same seeds, the same world),
every model row of the forecast tables (best-of-1, best-of-k) is paired across the two sets on the same forecast
(sequence, context window, Δ) and seed, and B − A is reported with a bootstrap 95 % interval over forecasts, seeds
pooled (:func:`pipeline.results.stats.paired_bootstrap`), and with the moving-block interval of the phase-two section
(:func:`pipeline.results.stats.block_bootstrap`; negative = B is better). Used for GRPO against best-of-k
at equal compute (``-S video.forecast_training=grpo -S video.fixed_guesses=[] -S video.weight_forecast=1.0``, GRPO
samples every guess, against the default). Writes
``reports/results/compare-<B>-vs-<A>.md`` and ``.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline.config import project_root
from pipeline.errors import one_line_errors
from pipeline.io import atomic
from pipeline.results import index, provenance
from pipeline.results.phase2 import KEY, MODEL, PAIRED_DELTAS, context_frames
from pipeline.results.stats import format_intervals, paired_intervals

app = typer.Typer(add_completion=False)


def forecast_tables(runs: Path, seeds: list[int]) -> pd.DataFrame:
    """The kept runs' forecast rows with a ``seed`` column; a missing run is an error naming it."""
    tables = []
    for seed in seeds:
        path = runs / f"seed{seed}" / "phase2_forecasts.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no kept run (run `python -m pipeline.results.run` for this set first)")
        tables.append(pd.read_csv(path).assign(seed=seed))
    return pd.concat(tables, ignore_index=True)


def paired_sets(a: pd.DataFrame, b: pd.DataFrame, context_frames: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per Δ of ``PAIRED_DELTAS`` and model row: B − A on the same forecasts and seeds (forecasts x seeds), with the
    window-by-window interval and the moving-block one (runs of ``context_frames`` + Δ windows per sequence,
    :func:`pipeline.results.stats.block_bootstrap`: ``block_low``, ``block_high``)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for delta in PAIRED_DELTAS:
        out[f"delta_{delta}"] = {}
        for method in MODEL:
            wide = [t[(t.delta == delta) & (t.method == method)].pivot_table(index=KEY, columns="seed",
                                                                             values="chamfer_m") for t in (a, b)]
            joined = wide[0].add_suffix("_a").join(wide[1].add_suffix("_b"), how="inner").sort_index()
            seeds = sorted(wide[0].columns)
            diff = np.stack([joined[f"{s}_b"] - joined[f"{s}_a"] for s in seeds], axis=1)
            sequences = joined.index.get_level_values("sequence").to_numpy()
            out[f"delta_{delta}"][method] = {**paired_intervals(diff, sequences, context_frames + delta),
                                             "a": float(np.nanmean(joined[[f"{s}_a" for s in seeds]].to_numpy())),
                                             "b": float(np.nanmean(joined[[f"{s}_b" for s in seeds]].to_numpy()))}
    return out


def markdown(result: dict, a: str, b: str, seeds: list[int], made_by: dict[str, str] | None = None) -> str:
    """The comparison as Markdown; ``made_by``: tag -> its "Made by" paragraph (:func:`provenance.markdown`)."""
    lines = [f"# Phase-two forecasts: {b} − {a}", ""]
    lines += [f"- {tag}: {text}" for tag, text in (made_by or {}).items()] + ([""] if made_by else [])
    lines += [f"Seeds {seeds}; paired per forecast (same sequence, context window, Δ and seed); metres; bootstrap 95 % "
              "interval over forecasts, seeds pooled, then the moving-block one (runs of context frames + Δ consecutive "
              "windows per sequence); negative = the second set is better.", "",
              f"| model row | Δ | {a} | {b} | {b} − {a} |", "|---|---|---|---|---|"]
    for delta in PAIRED_DELTAS:
        for method, r in result[f"delta_{delta}"].items():
            lines.append(f"| {method} | {delta} | {r['a']:.3f} | {r['b']:.3f} | {format_intervals(r)} |")
    return "\n".join(lines) + "\n"


@app.command()
@one_line_errors
def main(
    a: str = typer.Argument(..., help="First result set (tag), e.g. default."),
    b: str = typer.Argument(..., help="Second result set (tag), e.g. video-forecast_traininggrpo."),
    seeds: str = typer.Option("0,1,2", help="Training seeds, comma-separated."),
    reports: Path = typer.Option(Path("reports/results"), help="Folder of the kept runs and the output."),
) -> None:
    seed_list = [int(s) for s in seeds.split(",")]
    runs = reports / "runs"
    evaluated = [json.loads((runs / tag / f"seed{seed}" / "evaluate.json").read_text())["phase2"]
                 for tag in (a, b) for seed in seed_list]
    result = paired_sets(forecast_tables(runs / a, seed_list), forecast_tables(runs / b, seed_list),
                         context_frames(evaluated))
    records = {tag: provenance.load(runs / tag, seed_list) for tag in (a, b)}
    stem = reports / f"compare-{b}-vs-{a}"
    atomic.write_json(stem.with_suffix(".json"), {"a": a, "b": b, "seeds": seed_list, "paired": result,
                                                  "provenance": {tag: {str(s): r for s, r in recs.items()}
                                                                 for tag, recs in records.items()}})
    made_by = {tag: provenance.markdown(recs) for tag, recs in records.items()}
    atomic.write_text(stem.with_suffix(".md"), markdown(result, a, b, seed_list, made_by))
    typer.echo(f"wrote {stem.with_suffix('.md')}")
    typer.echo(f"wrote {index.write(reports, project_root())}")


if __name__ == "__main__":
    app()
