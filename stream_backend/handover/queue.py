"""The delivery queue: every webhook event accepted for the primary system, kept until it is
delivered (or has failed, and is kept to be seen and retried), shared by every worker of every
host. Two stores behind one interface: a SQLite file (one host) here, Redis (several hosts) in
queue_redis.py.

What the queue guarantees, whatever the store:

- `accept` records an event durably, once: a body seen before (by its digest) is a duplicate,
  and an `X-Webhook-Id` seen before with another body gets an id of its own
  (`<id>.sha256-<digest>`), so that a replay under a borrowed id is not taken for the event
  that id named. Over `max_pending` pending events it refuses (QueueFull).
- Events are in lanes, one per channel (its `cid`; events without one by their user). `lease`
  hands out the head of each lane that is due, the oldest event by its `created_at`, under a
  lease: a lane is in flight in one place at a time, so one channel's events reach the primary
  one after another, in order, while other lanes go on. A failing head holds back only its own
  lane; a lease not given back (a process killed) expires after `lease_seconds`.
- The outcome of an attempt (`delivered`, `retry_later`, `give_up`) is taken only from the
  holder of the lane's lease: a holder whose lease expired learns it (False), and changes
  nothing.

The schedule (when to try again, when to give up) is the deliverer's (delivery.py).
"""

import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from stream_backend.errors import QueueFull
from stream_backend.store import sqlite, unavailable_on

State = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Incoming:
    """An event to accept: its signed body, as Stream sent it, and what the queue files it by."""

    body: bytes
    digest: str  # sha256 of the body: duplicates are the same body
    webhook_id: str | None  # Stream's X-Webhook-Id (not signed)
    lane: str  # the event's cid, or user:<id>
    created_at: float  # the event's created_at, epoch seconds: its order in the lane
    type: str
    message_id: str | None = None


@dataclass(frozen=True)
class Event:
    """An accepted event, as the queue holds it."""

    id: str  # what the primary dedupes on: the `webhook-id` of every attempt
    lane: str
    created_at: float
    type: str
    message_id: str | None
    body: bytes
    state: State
    attempts: int
    last_error: str | None
    accepted_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Lease:
    event: Event
    token: str  # identifies the holder to the outcome calls


@dataclass(frozen=True)
class Status:
    pending: int
    in_flight: int
    failed: int
    delivered_last_hour: int
    oldest_pending_age: float | None  # seconds since the oldest pending event was accepted


class Queue(Protocol):
    """What the deliverer, the webhook and the commands ask of a queue."""

    def accept(self, incoming: Incoming) -> tuple[bool, str]: ...
    def lease(self, limit: int, lease_seconds: float) -> list[Lease]: ...
    def extend(self, lease: Lease, lease_seconds: float) -> bool: ...
    def delivered(self, lease: Lease) -> bool: ...
    def retry_later(self, lease: Lease, due_at: float, error: str) -> bool: ...
    def give_up(self, lease: Lease, error: str) -> bool: ...
    def status(self) -> Status: ...
    def events(self, state: State | None = None, lane: str | None = None, limit: int = 100) -> list[Event]: ...
    def retry_failed(self, event_id: str | None = None) -> int: ...
    def replay(self, since: float) -> int: ...
    def prune(self, delivered_before: float, failed_before: float, batch: int = 1000) -> int: ...


def delivery_id(webhook_id: str | None, digest: str, taken: Callable[[str], bool]) -> str:
    """The id the primary dedupes on: Stream's `X-Webhook-Id`; without one, the body's digest.
    The header is not signed: an id already taken by another body was borrowed by a replay,
    and is not reused, or the primary would take this event for that one."""
    if webhook_id is None:
        return f"sha256-{digest}"
    return webhook_id if not taken(webhook_id) else f"{webhook_id}.sha256-{digest}"


_COLUMNS = "id, lane, created_at, type, message_id, body, state, attempts, last_error, accepted_at, finished_at"


def _event(row: tuple) -> Event:
    event_id, lane, created_at, kind, message_id, body, state, attempts, last_error, accepted_at, finished_at = row
    return Event(
        event_id, lane, created_at, kind, message_id, bytes(body), state, attempts, last_error, accepted_at, finished_at
    )


class SQLiteQueue:
    """The queue in the SQLite file (store/sqlite.py): an `webhook_events` table, and a
    `webhook_lanes` table of the lanes with pending events, their due time and lease. Every
    change is one IMMEDIATE transaction, committed (synchronous=FULL in WAL mode: on disk)
    before the call returns."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS webhook_events ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, digest TEXT NOT NULL UNIQUE,"
        " webhook_id TEXT, lane TEXT NOT NULL, created_at REAL NOT NULL, type TEXT NOT NULL, message_id TEXT,"
        " body BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
        " accepted_at REAL NOT NULL, finished_at REAL)",
        "CREATE INDEX IF NOT EXISTS webhook_events_lane ON webhook_events (lane, state, created_at, seq)",
        "CREATE INDEX IF NOT EXISTS webhook_events_finished ON webhook_events (state, finished_at)",
        "CREATE TABLE IF NOT EXISTS webhook_lanes (lane TEXT PRIMARY KEY, pending INTEGER NOT NULL,"
        " due_at REAL NOT NULL, lease_token TEXT, lease_until REAL NOT NULL DEFAULT 0)",
        "CREATE INDEX IF NOT EXISTS webhook_lanes_due ON webhook_lanes (due_at)",
        # The claims of the synchronous hand-over that this queue replaced: they expired within a day.
        "DROP TABLE IF EXISTS deliveries",
    )

    def __init__(
        self,
        path: str,
        max_pending: int,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path, self.max_pending, self.clock = path, max_pending, clock
        self._db = sqlite.Connections(path, busy_timeout, self.SCHEMA)

    @unavailable_on(lambda self: sqlite.ERRORS)
    def accept(self, incoming: Incoming) -> tuple[bool, str]:
        """Record the event: `(True, its id)`, or `(False, the id it has)` for a duplicate."""
        now = self.clock()
        with self._db.transaction() as db:
            seen = db.execute("SELECT id FROM webhook_events WHERE digest = ?", (incoming.digest,)).fetchone()
            if seen:
                return False, seen[0]
            (pending,) = db.execute("SELECT coalesce(sum(pending), 0) FROM webhook_lanes").fetchone()
            if pending >= self.max_pending:
                raise QueueFull(f"{pending} events are waiting for the primary system (PRIMARY_SYNC_MAX_PENDING)")

            def taken(candidate: str) -> bool:
                return db.execute("SELECT 1 FROM webhook_events WHERE id = ?", (candidate,)).fetchone() is not None

            event_id = delivery_id(incoming.webhook_id, incoming.digest, taken)
            db.execute(
                "INSERT INTO webhook_events (id, digest, webhook_id, lane, created_at, type, message_id, body, state,"
                " accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    event_id,
                    incoming.digest,
                    incoming.webhook_id,
                    incoming.lane,
                    incoming.created_at,
                    incoming.type,
                    incoming.message_id,
                    incoming.body,
                    now,
                ),
            )
            self._add_to_lane(db, incoming.lane, now)
        return True, event_id

    @unavailable_on(lambda self: sqlite.ERRORS)
    def lease(self, limit: int, lease_seconds: float) -> list[Lease]:
        """The heads of up to `limit` lanes that are due and not in flight, each leased for
        `lease_seconds`."""
        now = self.clock()
        leases = []
        with self._db.transaction() as db:
            lanes = db.execute(
                "SELECT lane FROM webhook_lanes WHERE due_at <= ? AND lease_until <= ? ORDER BY due_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            for (lane,) in lanes:
                head = db.execute(
                    f"SELECT {_COLUMNS} FROM webhook_events WHERE lane = ? AND state = 'pending'"
                    " ORDER BY created_at, seq LIMIT 1",
                    (lane,),
                ).fetchone()
                if head is None:  # nothing left (an event retried away): the lane goes
                    db.execute("DELETE FROM webhook_lanes WHERE lane = ?", (lane,))
                    continue
                token = uuid.uuid4().hex
                db.execute(
                    "UPDATE webhook_lanes SET lease_token = ?, lease_until = ? WHERE lane = ?",
                    (token, now + lease_seconds, lane),
                )
                leases.append(Lease(_event(head), token))
        return leases

    @unavailable_on(lambda self: sqlite.ERRORS)
    def extend(self, lease: Lease, lease_seconds: float) -> bool:
        """Keep the lane leased `lease_seconds` more, if the lease is still ours."""
        with self._db.transaction() as db:
            extended = db.execute(
                "UPDATE webhook_lanes SET lease_until = ? WHERE lane = ? AND lease_token = ?",
                (self.clock() + lease_seconds, lease.event.lane, lease.token),
            )
        return extended.rowcount == 1

    def delivered(self, lease: Lease) -> bool:
        return self._finish(lease, "delivered", None)

    def give_up(self, lease: Lease, error: str) -> bool:
        return self._finish(lease, "failed", error)

    @unavailable_on(lambda self: sqlite.ERRORS)
    def retry_later(self, lease: Lease, due_at: float, error: str) -> bool:
        """The attempt failed: the lane waits until `due_at`, its head first."""
        with self._db.transaction() as db:
            if not self._release(db, lease, due_at, delta=0):
                return False
            db.execute(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, lease.event.id),
            )
        return True

    @unavailable_on(lambda self: sqlite.ERRORS)
    def _finish(self, lease: Lease, state: State, error: str | None) -> bool:
        now = self.clock()
        with self._db.transaction() as db:
            if not self._release(db, lease, now, delta=-1):
                return False
            db.execute(
                "UPDATE webhook_events SET state = ?, attempts = attempts + 1, last_error = ?, finished_at = ?"
                " WHERE id = ?",
                (state, error, now, lease.event.id),
            )
            db.execute("DELETE FROM webhook_lanes WHERE lane = ? AND pending <= 0", (lease.event.lane,))
        return True

    @staticmethod
    def _release(db, lease: Lease, due_at: float, delta: int) -> bool:
        """Give the lane's lease back, if it is still ours; the lane is next due at `due_at`."""
        released = db.execute(
            "UPDATE webhook_lanes SET lease_token = NULL, lease_until = 0, due_at = ?, pending = pending + ?"
            " WHERE lane = ? AND lease_token = ?",
            (due_at, delta, lease.event.lane, lease.token),
        )
        return released.rowcount == 1

    @staticmethod
    def _add_to_lane(db, lane: str, now: float, count: int = 1) -> None:
        db.execute(
            "INSERT INTO webhook_lanes (lane, pending, due_at) VALUES (?, ?, ?)"
            " ON CONFLICT (lane) DO UPDATE SET pending = pending + excluded.pending",
            (lane, count, now),
        )

    # --- What the commands and metrics see ----------------------------------------------

    @unavailable_on(lambda self: sqlite.ERRORS)
    def status(self) -> Status:
        now = self.clock()
        with self._db.connection() as db:
            (pending,) = db.execute("SELECT coalesce(sum(pending), 0) FROM webhook_lanes").fetchone()
            (in_flight,) = db.execute("SELECT count(*) FROM webhook_lanes WHERE lease_until > ?", (now,)).fetchone()
            (failed,) = db.execute("SELECT count(*) FROM webhook_events WHERE state = 'failed'").fetchone()
            (delivered,) = db.execute(
                "SELECT count(*) FROM webhook_events WHERE state = 'delivered' AND finished_at >= ?", (now - 3600,)
            ).fetchone()
            oldest = db.execute(
                "SELECT accepted_at FROM webhook_events WHERE state = 'pending' AND finished_at IS NULL"
                " ORDER BY seq LIMIT 1"
            ).fetchone()
        return Status(pending, in_flight, failed, delivered, None if oldest is None else max(0.0, now - oldest[0]))

    @unavailable_on(lambda self: sqlite.ERRORS)
    def events(self, state: State | None = None, lane: str | None = None, limit: int = 100) -> list[Event]:
        """Events by arrival, the latest last: of one state and lane, when given."""
        conditions: list[str] = []
        values: list[str] = []
        if state is not None:
            conditions.append("state = ?")
            values.append(state)
        if lane is not None:
            conditions.append("lane = ?")
            values.append(lane)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.connection() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM (SELECT * FROM webhook_events {where} ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (*values, limit),
            ).fetchall()
        return [_event(row) for row in rows]

    @unavailable_on(lambda self: sqlite.ERRORS)
    def retry_failed(self, event_id: str | None = None) -> int:
        """Failed events (one, or all) pending again, from their first attempt: how many."""
        condition, values = ("AND id = ?", (event_id,)) if event_id is not None else ("", ())
        return self._requeue(f"state = 'failed' {condition}", values)

    @unavailable_on(lambda self: sqlite.ERRORS)
    def replay(self, since: float) -> int:
        """Events delivered since `since` pending again, to be sent again under their ids (the
        primary restored a backup): how many."""
        return self._requeue("state = 'delivered' AND finished_at >= ?", (since,))

    def _requeue(self, condition: str, values: tuple) -> int:
        now = self.clock()
        with self._db.transaction() as db:
            lanes = db.execute(
                f"SELECT lane, count(*) FROM webhook_events WHERE {condition} GROUP BY lane", values
            ).fetchall()
            db.execute(
                f"UPDATE webhook_events SET state = 'pending', attempts = 0, finished_at = NULL WHERE {condition}",
                values,
            )
            for lane, count in lanes:
                self._add_to_lane(db, lane, now, count)
        return sum(count for _, count in lanes)

    @unavailable_on(lambda self: sqlite.ERRORS)
    def prune(self, delivered_before: float, failed_before: float, batch: int = 1000) -> int:
        """Forget up to `batch` events delivered before `delivered_before` or failed before
        `failed_before`, and free their pages: how many."""
        with self._db.transaction() as db:
            pruned = db.execute(
                "DELETE FROM webhook_events WHERE seq IN (SELECT seq FROM webhook_events WHERE"
                " (state = 'delivered' AND finished_at < ?) OR (state = 'failed' AND finished_at < ?) LIMIT ?)",
                (delivered_before, failed_before, batch),
            ).rowcount
        if pruned:
            self._free_pages()
        return pruned

    def _free_pages(self) -> None:
        """Give the pruned pages back to the file system: at the next prune when another
        process holds the write lock now (the pages wait in the file meanwhile, reused first)."""
        with self._db.connection() as db:
            try:
                # executescript runs the pragma to its end; execute() would free one page.
                db.executescript("PRAGMA incremental_vacuum;")
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    raise
