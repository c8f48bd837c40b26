"""`pipeline.stage_process.run_and_exit`: same exit code, output, logs, atexit work and thread joins as a normal exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, logging, sys, threading, time
    from pathlib import Path
    import typer
    from pipeline.errors import one_line_errors
    from pipeline.stage_process import run_and_exit

    app = typer.Typer(add_completion=False)

    @app.command()
    @one_line_errors
    def main(out: Path, mode: str) -> None:
        logging.getLogger("demo").addHandler(logging.FileHandler(out / "log.txt"))
        logging.getLogger("demo").warning("logged")
        atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
        print("no newline at the end", end="")
        if mode == "thread":
            threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread.txt").write_text("done"))).start()
        elif mode == "code":
            raise SystemExit(3)
        elif mode == "message":
            raise SystemExit("stopped: reason")
        elif mode == "bad":
            raise ValueError("params.yaml: bad value")

    run_and_exit(app)
""")


def run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "stage.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(tmp_path), mode], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=120)


@pytest.mark.parametrize(("mode", "code"), [("ok", 0), ("thread", 0), ("code", 3), ("message", 1), ("bad", 1)])
def test_exit_keeps_code_output_logs_and_atexit_work(tmp_path, mode, code):
    proc = run(tmp_path, mode)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "no newline at the end"
    assert (tmp_path / "log.txt").read_text() == "logged\n"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    if mode == "thread":  # a running non-daemon thread is waited for
        assert (tmp_path / "thread.txt").read_text() == "done"
    if mode == "message":
        assert proc.stderr.strip().endswith("stopped: reason")
    if mode == "bad":
        assert proc.stderr.strip().splitlines()[-1] == "error: params.yaml: bad value"


def test_frozen_imports_pauses_the_collector_and_freezes_what_the_block_made():
    import gc

    from pipeline.stage_process import frozen_imports

    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with frozen_imports():
            assert not gc.isenabled()
            made = [[i] for i in range(1000)]  # container objects the collector tracks
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(made)
        with pytest.raises(RuntimeError), frozen_imports():
            raise RuntimeError("an import failed")
        assert gc.isenabled()  # resumed after an error too
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
