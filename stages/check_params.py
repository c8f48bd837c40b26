"""DVC stage `check_params`: validate every section of params.yaml before any other stage runs.

DVC tracks only the keys a stage lists, so without this stage a mistyped key (``-S +pointcloud.maxpoints=1``)
would change nothing and be ignored. This stage depends on the whole params.yaml and fails with one line
(``error: params.yaml: unknown key 'pointcloud.maxpoints'``) on any unknown, missing or bad key. Its output
lists the section names only, so it does not change when a value changes: every other stage depends on it
(it runs first and stops the pipeline on a bad file) without rerunning for keys it does not read.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import load_params
from pipeline.errors import one_line_errors
from pipeline.io.atomic import write_json
from pipeline.params.sections import validate_all
from pipeline.stage_process import run_and_exit

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(out: Path = typer.Option(Path("reports/params/sections.json"), help="Checked sections (stable output).")
         ) -> None:
    sections = validate_all(load_params())
    write_json(out, {"params_file": "params.yaml", "sections": sorted(sections)})
    print(f"params.yaml: {len(sections)} sections valid")


if __name__ == "__main__":
    run_and_exit(app)
