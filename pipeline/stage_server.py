"""The stage server: stage processes forked from one that has already imported torch & co.

Every DVC stage is its own ``python -m stages.<name>`` process, and most of a small stage's time is importing
its libraries: torch, scipy, pandas, scikit-learn, matplotlib and open3d cost 2-3 s of CPU per stage on a 2-core
machine, ~17 s of the smoke pipeline's stages. The stage server imports them once (:data:`PRELOAD`) and then
forks one child per stage: the child starts with the libraries in memory (shared copy-on-write), so a stage pays
only for its own work.

**Client** (:func:`run_in_server`, called by :func:`pipeline.stage_process.run_and_exit` before the stage runs).
It connects to the server's socket and sends the stage's module name, ``sys.argv``, working folder, environment
and ``sys.path``, with its standard input, output and error as file descriptors; then it waits for the child's
exit status and exits with it. SIGINT, SIGTERM, SIGHUP and SIGQUIT it receives go to the child (those it ignores,
as a process started in the background ignores SIGINT and SIGQUIT, it keeps ignoring); a client killed outright
(its connection drops) gets its child killed outright too. If no server answers, the client starts one in the
background and runs its stage itself (the first stage of a ``dvc repro`` does not wait for the imports).

**Child**. Forked by the server, it takes the client's descriptors, folder, umask, environment, ``sys.path``,
``sys.argv`` and the client's dispositions of those four signals (ignored, or Python's default: the server's own
come from whichever process started it), drops every project module the server had imported (``pipeline``,
``stages``: they are imported again from the client's checkout, so an edit is always seen and another checkout gets
its own code), and runs the stage module as ``__main__``. It computes exactly what the stage computes in its own
process: the preloaded modules are third-party libraries, imported as the stage would import them, and no thread
pool (torch's, OpenMP's) is started before the fork. The child's run facts count from the fork
(``pipeline.STARTED``), its peak RSS (``ru_maxrss``) includes the preloaded libraries it inherited, also those the
stage does not use.

**Server** (``python -m pipeline.stage_server SOCKET``). One thread: a selector over the listening socket, the
clients' connections and a ``pidfd`` per child. Socket, log and lock: :mod:`pipeline.io.user_sockets`, keyed by the
interpreter and its options (``-W``, ``-X``, ...; the server is started with the same), the site-packages
folders' modification times (an install or upgrade gives a new server), the environment variables the preloaded
libraries read when imported (``OMP_*``, ``CUDA_*``, ...), what a child inherits from the server rather than from
its client (CPU affinity, control group, niceness, resource limits: :func:`placement`) and this file. It exits
after ``$PROTOSCENE_STAGE_SERVER_IDLE_S`` seconds (default 60) with no stage running.

Linux only (``pidfd_open``, descriptor passing); elsewhere, with ``PROTOSCENE_STAGE_SERVER=0``, or where the
socket cannot be made, stages run in their own processes as before. Neither way changes a stage's outputs.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import logging
import os
import selectors
import signal
import site
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pipeline.io import locks, user_sockets

log = logging.getLogger("pipeline.stage_server")

CODE_ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ("numpy", "torch", "scipy.optimize", "scipy.sparse.csgraph", "scipy.spatial", "scipy.spatial.transform",
           "scipy.special", "pandas", "pyarrow.parquet", "sklearn.cluster", "sklearn.linear_model", "sklearn.metrics",
           "sklearn.model_selection", "sklearn.pipeline", "sklearn.preprocessing", "matplotlib.pyplot", "open3d",
           "PIL.Image", "cv2", "typer", "pydantic", "yaml", "tqdm")
IMPORT_TIME_ENV = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "GOTO", "CUDA_", "NVIDIA_", "TORCH", "PYTORCH_", "MPL",
                   "LD_", "PYTHON", "OPEN3D", "NUMEXPR_", "SCIPY_", "SKLEARN_")  # variables libraries read on import
PROJECT_PACKAGES = ("pipeline", "stages")
SWITCH = "PROTOSCENE_STAGE_SERVER"  # "0": stages run in their own processes
CONNECT_TIMEOUT_S = 5.0
GREETING_TIMEOUT_S = 0.5  # a server that does not greet by then is still importing: the stage runs on its own
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
HEADER = struct.Struct("!Q")  # request length, sent with the three descriptors

IN_CHILD = False  # set in a forked stage (on the module the stage imports), so it does not delegate again


# ------------------------------------------------------------------------------------------------- client
def supported() -> bool:
    """Whether stages may run in the server here: Linux (pidfd, descriptor passing), not switched off, not already
    in a forked stage."""
    return (sys.platform == "linux" and hasattr(os, "pidfd_open") and user_sockets.available() and not IN_CHILD
            and os.environ.get(SWITCH, "1") != "0")


def server_socket() -> Path:
    """The socket of the server that fits this interpreter, its installed packages and its import-time
    environment (see the module docstring). OSError if it cannot be made."""
    packages = [f"{p}@{os.stat(p).st_mtime_ns}" for p in site.getsitepackages() if os.path.isdir(p)]
    settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(IMPORT_TIME_ENV))
    return user_sockets.socket_path("stages", [sys.executable, sys.version, *interpreter_flags(), *packages,
                                               *settings, *placement(), ",".join(PRELOAD), Path(__file__).read_bytes()])


def placement() -> list[str]:
    """What a forked child inherits from the server rather than from its client: the CPUs it may use, its control
    group, its niceness and resource limits. Part of the key, so a stage started under ``taskset``, ``nice``,
    ``ulimit`` or in another batch job gets a server started the same way."""
    import resource

    parts = [f"nice={os.getpriority(os.PRIO_PROCESS, 0)}"]
    if hasattr(os, "sched_getaffinity"):
        parts.append("cpus=" + ",".join(map(str, sorted(os.sched_getaffinity(0)))))
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/self/cgroup").read_text())
    limits = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_STACK")
    parts += [f"{name}={resource.getrlimit(getattr(resource, name))}" for name in limits if hasattr(resource, name)]
    return parts


def interpreter_flags() -> list[str]:
    """This interpreter's command-line options (``-W``, ``-X``, ``-O``, ``-B``, ``-s``, ...) as arguments that
    reproduce them: the server is started with them, and a client started with others gets another server.
    (``subprocess._args_from_interpreter_flags`` is what multiprocessing uses to start its processes alike.)"""
    import subprocess

    return subprocess._args_from_interpreter_flags()  # noqa: SLF001


def run_in_server(module: str) -> int | None:
    """Run the stage ``module`` (e.g. ``"stages.laq"``, with this process's ``sys.argv``) in a child of the stage
    server and return its exit code; None if it is not run there (not :func:`supported`, or no server answered:
    one is then started for the next stages), and the caller runs the stage itself."""
    if not supported():
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        path = server_socket()
        with locks.exclusive(user_sockets.lock_file(path)):
            try:
                connection = user_sockets.connect_greeted(path, GREETING_TIMEOUT_S)
            except (FileNotFoundError, ConnectionRefusedError):  # no server, or one that died without cleaning up
                path.unlink(missing_ok=True)
                _start_server(path)
                return None
    except OSError:  # a server still importing (it greets once ready) or busy: run the stage here
        return None
    with connection:
        umask = os.umask(0o022)
        os.umask(umask)
        ignored = [sig for sig in FORWARDED_SIGNALS if signal.getsignal(sig) == signal.SIG_IGN]
        request = json.dumps({"module": module, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "path": sys.path, "umask": umask,
                              "ignored_signals": [int(sig) for sig in ignored]}).encode()
        try:
            socket.send_fds(connection, [HEADER.pack(len(request))], [0, 1, 2])
            connection.sendall(request)
            reply = connection.makefile("rb")
            child = int(reply.readline().split()[1])
        except (OSError, ValueError, IndexError):
            return None  # the server refused or died before forking: nothing ran, run it here
        previous = {sig: signal.signal(sig, _forwarder(child)) for sig in FORWARDED_SIGNALS if sig not in ignored}
        try:
            status = reply.readline().split()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if len(status) != 2:
        print(f"error: the stage server died while running {module} (see {path.with_suffix('.log')})", file=sys.stderr)
        return 1
    kind, number = status[0].decode(), int(status[1])
    if kind == "signal":  # end as the child did, so the caller sees the same status
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return 128 + number
    return number


def _forwarder(child: int):
    """A signal handler that sends the signal on to ``child`` (nothing if it has already ended)."""
    def forward(sig: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)

    return forward


def _start_server(path: Path) -> None:
    """Start a server for ``path`` and wait (at most a few seconds) until it listens there, so the next stage,
    which takes the lock after this one, finds it instead of starting another."""
    pid = user_sockets.spawn_service("pipeline.stage_server", path, CODE_ROOT, interpreter_flags())
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not path.exists() and time.monotonic() < deadline:
        if user_sockets.exited(pid):
            return
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------------- child
def _run_child(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become the client's stage process and run the stage; returns its exit code."""
    log.handlers.clear()  # the server's log file handler: the stage logs as in its own process
    log.propagate = True
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    _signal_dispositions(request["ignored_signals"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = request["path"]
    sys.argv = list(request["argv"])
    for name in [n for n in sys.modules if n.split(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]
    importlib.invalidate_caches()  # folder listings cached by the server's imports: files added since are found
    _fresh_standard_streams()
    importlib.import_module("pipeline.stage_server").IN_CHILD = True  # the client's checkout's copy
    import runpy

    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # as Python at top level: the traceback, then end by SIGINT
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:  # noqa: BLE001 - report it as Python would at top level
        traceback.print_exc()
        return 1
    return 0


def _signal_dispositions(ignored: list[int]) -> None:
    """The client's dispositions of :data:`FORWARDED_SIGNALS` in this child: ``ignored`` ones ignored, the others as
    Python starts them (SIGINT raises KeyboardInterrupt, the rest end the process). Without this the child had the
    server's, so a server started from a background job (SIGINT ignored) made every later stage deaf to Ctrl-C."""
    for sig in FORWARDED_SIGNALS:
        if sig in ignored:
            signal.signal(sig, signal.SIG_IGN)
        else:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def _fresh_standard_streams() -> None:
    """``sys.stdin/stdout/stderr`` on the new descriptors 0-2, buffered as Python would buffer them there (line
    buffered on a terminal or with ``PYTHONUNBUFFERED``, stderr always line buffered)."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        old = getattr(sys, name)
        line = mode == "w" and (fd == 2 or unbuffered or os.isatty(fd))
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(buffered, encoding=old.encoding, errors=old.errors, line_buffering=line,
                                  write_through=unbuffered and mode == "w")
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _fork_stage(request: dict[str, Any], fds: list[int], server_fds: list[int]) -> int:
    """Fork a child that runs the stage; returns its pid (in the server)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in server_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            code = _run_child(request, fds)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


# ------------------------------------------------------------------------------------------------- server
def preload() -> None:
    """Import :data:`PRELOAD` (those installed) on matplotlib's Agg backend, then move everything into the
    garbage collector's permanent generation (the children never walk it again)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    gc.disable()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a missing optional library is simply not preloaded
            log.info("stage server: %s not preloaded (%s)", name, err)
    gc.freeze()
    gc.enable()


def _read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A client's request and its three descriptors (closed again if the request is incomplete)."""
    header, fds, _, _ = socket.recv_fds(connection, HEADER.size, 3, socket.MSG_WAITALL)
    try:
        if len(header) != HEADER.size or len(fds) != 3:
            raise ConnectionError("incomplete request")
        size = HEADER.unpack(header)[0]
        body = b""
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ConnectionError("incomplete request")
            body += chunk
        return json.loads(body), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def serve_forever(listener: socket.socket, path: Path) -> None:
    """Fork a child per request on ``listener`` (bound at ``path``) until idle (see the module docstring)."""
    idle_s = float(os.environ.get("PROTOSCENE_STAGE_SERVER_IDLE_S", "60"))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("listener", None))
    children: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (client connection, pid)
    clients: dict[int, int] = {}  # connection fd -> pid
    last_active = time.monotonic()
    log.info("stage server: listening on %s (pid %d)", path, os.getpid())
    while True:
        for key, _ in selector.select(timeout=1.0):
            kind, value = key.data
            if kind == "listener":
                _accept(listener, selector, children, clients)
            elif kind == "child":  # a stage ended: tell its client
                connection, pid = children.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                reply = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                         else f"exit {os.WEXITSTATUS(status)}")
                with contextlib.suppress(OSError):
                    connection.sendall(reply.encode() + b"\n")
                clients.pop(connection.fileno(), None)
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(connection)
                connection.close()
            else:  # a client's connection is readable: it has gone (killed outright), so its stage goes too
                if value.fileno() < 0:  # its stage ended earlier in this batch of events: answered and closed
                    continue  # (its descriptor number may already belong to a new client)
                pid = clients.pop(value.fileno())
                selector.unregister(value)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # as the stage in the client's own process: whatever it ignores
        if children:
            last_active = time.monotonic()
        elif time.monotonic() - last_active > idle_s and user_sockets.stop_if_unclaimed(listener, path):
            log.info("stage server: idle for %.0f s, stopped", idle_s)
            return


def _accept(listener: socket.socket, selector: selectors.BaseSelector, children: dict, clients: dict) -> None:
    """Greet a client, read its request, fork its stage; a client that fails on the way is dropped."""
    connection, _ = listener.accept()
    try:
        connection.settimeout(CONNECT_TIMEOUT_S)
        connection.sendall(user_sockets.GREETING)
        request, fds = _read_request(connection)
        server_fds = [listener.fileno(), selector.fileno() if hasattr(selector, "fileno") else -1,
                      *children, *clients, connection.fileno()]
        pid = _fork_stage(request, fds, server_fds)
        connection.sendall(f"pid {pid}\n".encode())
        connection.settimeout(None)
    except (OSError, ValueError) as err:
        log.warning("stage server: a request failed (%s)", err)
        connection.close()
        return
    pidfd = os.pidfd_open(pid)
    children[pidfd] = (connection, pid)
    clients[connection.fileno()] = pid
    selector.register(pidfd, selectors.EVENT_READ, ("child", None))
    selector.register(connection, selectors.EVENT_READ, ("client", connection))


def main() -> None:
    handler = logging.StreamHandler(sys.stdout)  # the log file; not on the root logger, which the children inherit
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    path = Path(sys.argv[1])
    os.chdir("/")  # hold no project folder open
    try:
        listener = user_sockets.listen(path)  # before the imports: no second server starts meanwhile
    except OSError as err:  # another server took the path first
        log.info("stage server: not started (%s)", err)
        return
    preload()
    serve_forever(listener, path)


if __name__ == "__main__":
    main()
