"""The SQLite file every worker of a host shares, safe for several processes: WAL journal (readers
never wait for a writer), a busy timeout, and writes as IMMEDIATE transactions."""

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# How long a write waits for another process's lock before it fails (then: StoreUnavailable).
# Short: the webhook answers 503 past it and Stream retries, well inside the 6 s Stream waits.
BUSY_TIMEOUT_SECONDS = 2

ERRORS = (sqlite3.Error,)


def prepare_file(path: str) -> None:
    """Make the SQLite file's directory and set the file to WAL (it stays WAL once set).
    Shared by every store that keeps a table in the file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # a read: no lock to wait for
            db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()


class Connections:
    """A connection per thread (a sqlite3 connection serves the thread that opened it), with
    transactions that are ours to begin (isolation_level=None)."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path, self.busy_timeout = path, busy_timeout
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        if getattr(self._local, "db", None) is None:
            self._local.db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        return self._local.db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so
        that what a transaction reads and writes sees one state of the tables."""
        db = self.get()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
