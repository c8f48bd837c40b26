"""DVC stage `videos`: list the video folder (sizes, mtimes) so adding a video reruns vggt -> concerto -> laq.

The work is :func:`pipeline.steps.videos.run`; output ``data/videos/{listing,labels}.json``. Cheap (no
decoding, no torch), because it runs on every ``dvc repro``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import load_params
from pipeline.errors import one_line_errors
from pipeline.stage_process import run_and_exit
from pipeline.steps import videos

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(out: Path = typer.Option(Path("data/videos"), help="Output folder (listing.json, labels.json).")) -> None:
    videos.run(load_params(), out)


if __name__ == "__main__":
    run_and_exit(app)
