"""Loopback HTTP server fixture for the download tests (127.0.0.1, ephemeral port, no internet).

The server serves in-memory files and can misbehave on purpose:
  drop_after / drop_times: send full headers, then only `drop_after` body bytes and close the
      connection (for the first `drop_times` GETs of a path);
  ignore_range: answer every GET with 200 and the whole file;
  fail_times: answer the first `fail_times` GETs with 503;
  wrong_content: serve these bytes instead of the registered file (same length is up to the test);
  stall_after / stall_seconds: like drop_after, but then go silent for stall_seconds (client
      read timeout) before closing; once.
Every request is logged with its Range header. The server thread is a daemon, is shut down at
fixture teardown, and a watchdog stops it after 60 s in any case.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

stop = threading.Event()  # set at teardown so stalled handlers end at once


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None
    drop_times: int = 0
    ignore_range: bool = False
    fail_times: int = 0
    wrong_content: bytes | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds a stuck client may hold a handler thread
    state: ServerState  # set on a per-server subclass

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        st = self.state
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append(("GET", self.path, rng))
            if st.fail_times > 0:
                st.fail_times -= 1
                fail = True
            else:
                fail = False
            drop = st.drop_after if st.drop_times > 0 else None
            if drop is not None:
                st.drop_times -= 1
            stall, st.stall_after = st.stall_after, None
        if fail:
            self.send_error(503, "try later")
            return
        body = st.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if st.wrong_content is not None:
            body = st.wrong_content
        n = len(body)
        start = 0
        m = re.match(r"^bytes=(\d+)-(\d*)$", rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else n - 1
            if start >= n:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{n}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, n - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{n}")
            payload = body[start:end + 1]
        else:
            self.send_response(200)
            payload = body
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if stall is not None:
            self.wfile.write(payload[:stall])
            self.wfile.flush()
            stop.wait(st.stall_seconds)  # the client times out meanwhile
            self.close_connection = True
            return
        if drop is not None:
            self.wfile.write(payload[:drop])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)


class LoopbackServer:
    def __init__(self) -> None:
        self.state = ServerState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.watchdog = threading.Timer(60.0, self.httpd.shutdown)
        self.watchdog.daemon = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "LoopbackServer":
        self.thread.start()
        self.watchdog.start()
        return self

    def stop(self) -> None:
        stop.set()
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def gets(self, path: str) -> list[str | None]:
        """Range headers of the GET requests for `path`, in order."""
        return [r for m, p, r in self.state.requests if m == "GET" and p == path]


@pytest.fixture
def http_server():
    stop.clear()
    srv = LoopbackServer().start()
    try:
        yield srv
    finally:
        srv.stop()
