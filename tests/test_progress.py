"""The progress helper: plain bounded lines on a file, a live bar on a terminal, silence when disabled."""

from __future__ import annotations

import io

from tqdm import tqdm

from pipeline import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_file_stream_gets_about_one_line_per_tenth():
    stream = io.StringIO()
    with progress.progress_bar(total=1000, desc="loop", unit="step", stream=stream) as p:
        for _ in range(1000):
            p.update()
    lines = stream.getvalue().splitlines()
    assert 10 <= len(lines) <= 11  # 10 % steps (plus a last line when the count did not land on one)
    assert lines[-1].startswith("loop: 1000/1000 step (100%)")


def test_iterating_counts_items_and_reports_the_end():
    stream = io.StringIO()
    out = list(progress.progress_bar(range(7), desc="seq", stream=stream))
    assert out == list(range(7))
    assert stream.getvalue().splitlines()[-1].startswith("seq: 7/7 it (100%)")


def test_time_lines_without_total_and_resume_offset(monkeypatch):
    clock = iter(range(0, 10_000, 20))  # 20 s per call of time.monotonic
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    p = progress.progress_bar(desc="bytes", stream=stream, initial=5)
    for _ in range(4):
        p.update(3)
    p.close()
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 5 and lines[-1].startswith("bytes: 17 it")


def test_postfix_is_printed():
    stream = io.StringIO()
    p = progress.progress_bar(total=2, desc="train", stream=stream)
    p.set_postfix(loss="0.5")
    p.update(2)
    p.close()
    assert "loss=0.5" in stream.getvalue()


def test_terminal_gets_tqdm_and_disable_is_silent():
    assert isinstance(progress.progress_bar(total=3, stream=_Tty()), tqdm)
    stream = io.StringIO()
    p = progress.progress_bar(total=3, disable=True, stream=stream)
    p.update(3)
    p.close()
    assert stream.getvalue() == ""
