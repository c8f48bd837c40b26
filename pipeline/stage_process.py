"""What a stage process pays around its work: importing the libraries and exiting.

**Imports** (:func:`frozen_imports`). Importing torch, scipy, pandas and matplotlib creates about a million
Python objects, and the cyclic garbage collector walks all of them again and again while they are created and
afterwards, at every full collection during the stage. A stage imports its step module with the collector
paused, then :func:`gc.freeze` moves everything the imports created into the permanent generation, which later
collections skip (modules live until the process ends anyway). Smoke-size ``train_phase1``: 10.9 s -> 9.3 s
wall (median of 3 on 2 cores).

**Exit** (:func:`run_and_exit`). After a stage has written its outputs and closed its files, CPython's shutdown
still tears down every imported module and frees every object: about a second of CPU per process with torch
loaded (smoke-size ``train_phase1``: 12.3 s -> 11.1 s wall, median of 3), and one ``dvc repro`` starts 12 stage
processes. :func:`run_and_exit` runs a Typer app and then does only what shutdown must do for the results: wait
for non-daemon threads (by falling back to the normal exit), run the ``atexit`` handlers (logging's flush and
close, multiprocessing's clean-up, pending ``weakref.finalize`` callbacks such as temporary folders), flush
stdout and stderr; then it leaves with :func:`os._exit` and the same exit code. Files are not flushed by this:
stage code writes through ``with`` blocks (and :mod:`pipeline.io.atomic`), so nothing is left open at exit; a
file object left open would lose its buffered tail here.

Neither changes what a stage computes (``tests/test_dvc_deps.py`` lists this module as output-neutral).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def frozen_imports() -> Iterator[None]:
    """Run the block (a stage's imports, not its work) with the cyclic GC paused; then freeze what exists and
    resume collecting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def run_and_exit(app: Callable[[], object]) -> None:
    """Run ``app()`` (a Typer app in standalone mode, which ends in ``SystemExit``) and exit the process fast.

    A stage module run as ``python -m stages.<name>`` runs in a child of the stage server when one answers
    (:mod:`pipeline.stage_server`: the libraries are imported there already) and this process exits with its
    code. An exception other than ``SystemExit`` propagates unchanged (traceback, normal teardown)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("stages."):
        from pipeline import stage_server

        code = stage_server.run_in_server(spec.name)
        if code is not None:
            exit_now(code)
    try:
        app()
    except SystemExit as stop:
        exit_now(stop.code)
    exit_now(0)


def exit_now(code: int | str | None) -> None:
    """Exit with ``code`` as ``sys.exit`` would (None -> 0; a string is printed to stderr, exit code 1), skipping
    module teardown; with a non-daemon thread still running, exit normally so the interpreter waits for it."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others:
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # noqa: SLF001 - CPython's own exit sequence runs these, in this order, at shutdown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)
