"""A long run's progress: a bar on a terminal, lines without one; the rate and the time left
count only what this run does."""

import io
import re
import time

from stream_backend.migration import progress
from stream_backend.migration.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def work(bar: Progress, records: int, seconds_each: float) -> None:
    for _ in range(records):
        time.sleep(seconds_each)
        bar.worked()


def test_records_done_before_count_as_done_but_not_in_the_rate():
    out = io.StringIO()
    bar = Progress("messages", 20_000, out=out)

    bar.skipped(10_000)  # at once, as a resume finds them done
    work(bar, 10, 0.02)  # about 50 records a second
    bar.close()

    last = out.getvalue().splitlines()[-1]
    rate = float(re.search(r"([\d.]+) records/s", last).group(1))
    assert last.startswith("messages: 10010/20000 records (50%)")
    assert 10 < rate < 200  # with the 10,000 skipped in it, it would be over 100,000


def test_without_a_terminal_a_line_every_few_seconds(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.05)
    out = io.StringIO()
    bar = Progress("users", 100, out=out)

    work(bar, 30, 0.01)
    bar.close()

    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 12
    assert "\r" not in out.getvalue() and all(line.startswith("users: ") for line in lines)


def test_on_a_terminal_a_bar():
    out = Terminal()
    bar = Progress("replies", 10, out=out)

    work(bar, 10, 0)
    bar.close()

    assert "replies: 100%" in out.getvalue() and "\r" in out.getvalue()


def test_shown_nowhere_when_asked_not_to():
    out = Terminal()
    bar = Progress("users", 10, show=False, out=out)

    bar.skipped(5)
    work(bar, 5, 0)
    bar.close()

    assert out.getvalue() == ""
