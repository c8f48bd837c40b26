"""Progress reporting that fits both a terminal and a log file: the one progress helper of every loop.

:func:`progress_bar` takes tqdm's common arguments (``iterable``, ``total``, ``initial``, ``desc``, ``unit``,
``unit_scale``, ``disable``, ``leave``) and returns

- a live tqdm bar when the stream (default: stderr) is a terminal;
- otherwise a :class:`LineProgress` that writes one plain line each time another ``every_fraction``
  (10 %) of ``total`` is done or ``every_s`` (30 s) have passed since the last line, plus a last line on
  ``close`` -- so a 1000-step loop writes about a dozen lines to a file instead of a redraw per step.

Both support iteration, ``update(n)``, ``set_postfix(**values)``, ``close()`` and ``with``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


class LineProgress:
    """Plain-line progress for non-terminal streams (see the module docstring)."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, initial: float = 0,
                 desc: str = "", unit: str = "it", unit_scale: bool = False, stream: TextIO | None = None,
                 every_fraction: float = 0.1, every_s: float = 30.0) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.n = iterable, total, initial
        self.desc, self.unit, self.unit_scale = desc, unit, unit_scale
        self.stream = stream if stream is not None else sys.stderr
        self.every_fraction, self.every_s = every_fraction, every_s
        self.start = self.last_time = time.monotonic()
        self.last_n = initial
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable: use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, n: float) -> str:
        return tqdm.format_sizeof(n) if self.unit_scale else f"{n:g}"

    def _write(self) -> None:
        now = time.monotonic()
        done = f"{self._count(self.n)}/{self._count(self.total)}" if self.total else self._count(self.n)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{share}, {now - self.start:.0f} s{postfix}", file=self.stream,
              flush=True)
        self.last_time, self.last_n = now, self.n

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units; write a line if another ``every_fraction`` or ``every_s`` has passed."""
        self.n += n
        step_due = bool(self.total) and self.n - self.last_n >= self.every_fraction * self.total
        if step_due or time.monotonic() - self.last_time >= self.every_s:
            self._write()

    def set_postfix(self, **values: Any) -> None:
        """Values appended to the next line (``key=value``)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Write the final count (once) unless the last line already showed it."""
        if not self.closed and self.n != self.last_n:
            self._write()
        self.closed = True


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, initial: float = 0, desc: str = "",
        unit: str = "it", unit_scale: bool = False, disable: bool = False, leave: bool = True,
        stream: TextIO | None = None) -> Any:
    """A tqdm bar on a terminal, plain lines elsewhere, nothing when ``disable`` (see the module docstring)."""
    stream = stream if stream is not None else sys.stderr
    if disable or stream.isatty():
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale,
                    disable=disable, leave=leave, file=stream)
    return LineProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale,
                        stream=stream)
