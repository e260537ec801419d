"""The SQLite file every worker of a host shares, safe for several processes: WAL journal (readers
never wait for a writer), a busy timeout, and writes as IMMEDIATE transactions.

The file is the memory of what was accepted and delivered, so it is never silently replaced.
At its creation it gets an id, written in the file and in a marker beside it (`<file>.id`):

- a file that is missing while its marker is there was deleted: the store is unavailable
  (errors.StoreUnavailable), and heals as soon as the file is restored. To start afresh on
  purpose, remove the marker too.
- a file whose id is not the marker's is another store (a copy, an empty file made by hand):
  unavailable in the same way.
- every transaction checks that the path still names the file it opened (a cheap stat), so
  a file deleted or swapped under a running process is noticed at once, not written to in the
  dark.
"""

import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from stream_backend.errors import StoreUnavailable

# How long a write waits for another process's lock before it fails (then: StoreUnavailable).
# Short: the webhook answers 503 past it and Stream retries, well inside the 6 s Stream waits.
BUSY_TIMEOUT_SECONDS = 2

ERRORS = (sqlite3.Error, OSError)

# SQLite's own wait inside a statement, at most: C code, which stops every greenlet of a gevent
# worker while it waits, so short, for the rare read that meets another process's checkpoint
# or a new file's set-up. A write lock is not waited for in C at all (busy_timeout 0 for BEGIN
# IMMEDIATE) but in cooperative sleeps (Connections._begin), from LOCK_POLL_SECONDS doubling up
# to LOCK_POLL_MAX_SECONDS, until the busy timeout.
STATEMENT_WAIT_SECONDS = 0.01
LOCK_POLL_SECONDS = 0.002
LOCK_POLL_MAX_SECONDS = 0.02
# Connections kept open per store and process: the rest are closed after use.
MAX_IDLE_CONNECTIONS = 8

_META = "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def marker_path(path: str) -> str:
    return f"{path}.id"


def prepare_file(path: str) -> tuple[int, int]:
    """Open (or, the first time, create) the store's file, checked against its marker: the
    file's identity on disk (device, inode). Raises StoreUnavailable when the file is gone or
    is not the marker's store."""
    marker = marker_path(path)
    # The marker first: it is written after the file, so a process making both at this moment
    # cannot be seen as a marker without its file.
    if os.path.exists(marker) and not os.path.exists(path):
        raise StoreUnavailable(
            f"the SQLite store {path} is gone but {marker} says one was there: "
            f"restore the file, or remove {marker} to start afresh (its deliveries are lost)"
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            store_id = _made(path)
            break
        except sqlite3.OperationalError as error:
            # Switching a new file to WAL takes it whole, and another process making it at the
            # same moment answers "locked" without waiting: try again, within the busy timeout.
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    _check_marker(path, marker, store_id)
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _made(path: str) -> str:
    """The store's id, the file made WAL and given one if it has none."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # a read: no lock to wait for
            # A new file also frees its pages as they empty (pruned deliveries): set before any table.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(_META)
        db.execute("INSERT OR IGNORE INTO store_meta VALUES ('id', ?)", (uuid.uuid4().hex,))
        (store_id,) = db.execute("SELECT value FROM store_meta WHERE key = 'id'").fetchone()
        return store_id
    finally:
        db.close()


def _check_marker(path: str, marker: str, store_id: str) -> None:
    if not os.path.exists(marker):
        # Written whole under another name, then linked into place, which fails if another
        # process did it first: nobody reads a marker half written.
        written = f"{marker}.{os.getpid()}.{uuid.uuid4().hex}"
        with open(written, "w") as file:
            file.write(store_id + "\n")
        try:
            os.link(written, marker)
        except FileExistsError:
            pass
        finally:
            os.remove(written)
    with open(marker) as file:
        expected = file.read().strip()
    if expected != store_id:
        raise StoreUnavailable(
            f"the SQLite store {path} is not the one {marker} names: restore that file, "
            f"or remove {marker} to adopt this one"
        )


class Connections:
    """The connections of a process to the file: a few kept open, each lent to one thread (or
    greenlet) at a time, with transactions that are ours to begin (isolation_level=None).

    The file is opened and checked (prepare_file) at the first use, not at construction: a
    store that cannot be opened yet is unavailable, and tried again at the next use. `schema`:
    statements run once the file is open (CREATE TABLE IF NOT EXISTS ...); `pragmas`: run on
    each new connection.

    Waiting for another process's write lock is a loop of short sleeps here, not SQLite's own
    busy wait: under gunicorn's gevent workers time.sleep lets the other requests of the
    process run meanwhile, where SQLite's wait (C code) would stop them all. SQLite itself
    waits at most STATEMENT_WAIT_SECONDS inside any other statement (the rare read that meets
    another process's checkpoint).
    """

    def __init__(
        self,
        path: str,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        schema: tuple[str, ...] = (),
        pragmas: tuple[str, ...] = (),
    ) -> None:
        self.path, self.busy_timeout, self.schema, self.pragmas = path, busy_timeout, schema, pragmas
        self._idle: list[tuple[int, sqlite3.Connection]] = []  # (generation, connection), kept open
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # the file's (device, inode) once opened
        self._generation = 0  # moves on when the file is opened again: older connections are closed

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection to the file, once the path is checked to name it still, for the block."""
        generation = self._checked()
        db = self._checkout(generation)
        try:
            yield db
        finally:
            self._checkin(generation, db)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so
        that what a transaction reads and writes sees one state of the tables."""
        with self.connection() as db:
            self._begin(db)
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _begin(self, db: sqlite3.Connection) -> None:
        deadline, pause = time.monotonic() + self.busy_timeout, LOCK_POLL_SECONDS
        db.execute("PRAGMA busy_timeout = 0")  # each try answers at once: the waits are ours
        try:
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() >= deadline:
                        raise
                # Jittered, so that the processes waiting for one lock do not ask at one moment.
                time.sleep(pause * random.uniform(0.5, 1))
                pause = min(pause * 2, LOCK_POLL_MAX_SECONDS)
        finally:
            db.execute(f"PRAGMA busy_timeout = {round(STATEMENT_WAIT_SECONDS * 1000)}")

    def _checkout(self, generation: int) -> sqlite3.Connection:
        with self._lock:
            while self._idle:
                kept_generation, db = self._idle.pop()
                if kept_generation == generation:
                    return db
                db.close()
        db = sqlite3.connect(
            self.path, timeout=STATEMENT_WAIT_SECONDS, isolation_level=None, check_same_thread=False
        )  # lent to one user at a time
        for pragma in self.pragmas:
            db.execute(pragma)
        return db

    def _checkin(self, generation: int, db: sqlite3.Connection) -> None:
        if db.in_transaction:  # a statement failed before COMMIT or ROLLBACK could run
            db.close()
            return
        with self._lock:
            if generation == self._generation and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((generation, db))
                return
        db.close()

    def _checked(self) -> int:
        try:
            stat = os.stat(self.path)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            current = None
        if current is not None and current == self._identity:
            return self._generation
        with self._lock:
            if self._identity is not None and current != self._identity:
                self._identity = None  # deleted or swapped: check it again, as at the start
            if self._identity is None:
                identity = prepare_file(self.path)
                db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                try:
                    for statement in self.schema:
                        db.execute(statement)
                finally:
                    db.close()
                self._identity, self._generation = identity, self._generation + 1
            return self._generation
