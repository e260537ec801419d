"""A long run's progress (backfill and verify), as the person running it sees it: on a terminal,
a tqdm bar per phase; without one (a log, CI, `nohup`), a plain line every few seconds. The
rate and the time left count only the records worked on by this run, as tqdm's moving average
of them: the records an earlier run did (`--resume`) fill the count, not the rate.

Nothing here knows of Flask or of Stream.
"""

import sys
from typing import TextIO

from tqdm import tqdm

# Without a terminal: a line this often, at most.
LINE_SECONDS = 5.0
# Phase names as people read them: "replies", not "replys".
PLURALS = {"reply": "replies"}


def plural(record_type: str) -> str:
    return PLURALS.get(record_type, f"{record_type}s")


class Lines:
    """What tqdm writes, as lines: it redraws its bar in place with carriage returns, which a
    log file keeps as one ever longer line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.out.write(line + "\n")

    def flush(self) -> None:
        self.out.flush()


class Progress:
    """One phase's progress: `total` records, `worked(n)` as this run does them, `skipped(n)`
    for those an earlier run did. `show`: True a bar, False nothing, None a bar on a terminal
    and lines otherwise."""

    def __init__(self, name: str, total: int, show: bool | None = None, out: TextIO | None = None) -> None:
        out = out or sys.stderr
        if show is None and not out.isatty():
            self.bar = tqdm(
                total=total,
                desc=name,
                file=Lines(out),
                mininterval=LINE_SECONDS,
                bar_format="{desc}: {n}/{total} records ({percentage:.0f}%), {rate_fmt}, {remaining} left{postfix}",
                unit=" records",
            )
        else:
            self.bar = tqdm(total=total, desc=name, unit=" records", file=out, disable=show is False)

    def worked(self, count: int = 1) -> None:
        self.bar.update(count)

    def skipped(self, count: int = 1) -> None:
        """Records done before this run: counted as done, kept out of the rate. tqdm's rate is
        the moving average of `n - last_print_n` over time, or `(n - initial) / elapsed` before
        it has one: moving all three leaves it to the records worked on."""
        if self.bar.disable:
            return
        self.bar.n += count
        self.bar.initial += count
        self.bar.last_print_n += count

    def note(self, text: str) -> None:
        """A word after the counts (an import's state, the rate the pacer allows)."""
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self.bar.close()
