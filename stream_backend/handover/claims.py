"""Which webhook deliveries were handed over to the primary system, shared by every worker.

Stream sends the same `X-Webhook-Id` on every retry of a delivery, and a retry may land on
another gunicorn worker or another host. Before handling a delivery, a worker claims its keys
(handover.py claims the digest of its signed body, `body:<sha256>`, and its id, `id:<id>`):

- `CLAIMED`: the id is ours; hand the event over, then `complete()` (or `release()` on failure,
  so that Stream's retry can succeed);
- `DONE`: it was handed over already: acknowledge, do nothing;
- `BUSY`: another worker is handing it over right now: answer 503 so Stream comes back later.

A claim expires after `claim_seconds` (a little over the hand-over timeout), so the claim of a
worker that died does not block the id; a completed id is remembered for `done_seconds`
(about a day), so the store stays bounded. Two stores: a SQLite file (one host, any number of
worker processes) and Redis (several hosts).
"""

import enum
import secrets
import time
from dataclasses import dataclass

from stream_backend.store import redis as redis_store
from stream_backend.store import sqlite, unavailable_on


class Claim(enum.Enum):
    CLAIMED = "claimed"
    DONE = "done"
    BUSY = "busy"


@dataclass(frozen=True)
class ClaimResult:
    outcome: Claim
    token: str | None = None  # identifies our claim to complete() and release()


class SQLiteDeliveryStore:
    """A table in a SQLite file, safe for several processes: WAL journal, a busy timeout, and
    each claim one IMMEDIATE transaction, so that two workers never both claim an id."""

    def __init__(self, path: str, claim_seconds: float, done_seconds: float) -> None:
        self.path, self.claim_seconds, self.done_seconds = path, claim_seconds, done_seconds
        self._db = sqlite.Connections(path)
        sqlite.prepare_file(path)
        with self._db.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries ("
                " webhook_id TEXT PRIMARY KEY, token TEXT NOT NULL,"
                " done INTEGER NOT NULL, expires_at REAL NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS deliveries_expiry ON deliveries (expires_at)")

    @unavailable_on(lambda self: sqlite.ERRORS)
    def claim(self, webhook_id: str) -> ClaimResult:
        token, now = secrets.token_hex(16), time.time()
        with self._db.transaction() as db:
            # Insert our claim, or take over an expired entry; otherwise the row stays as it is.
            taken = db.execute(
                "INSERT INTO deliveries VALUES (?, ?, 0, ?) ON CONFLICT (webhook_id) DO UPDATE"
                " SET token = excluded.token, done = 0, expires_at = excluded.expires_at"
                " WHERE deliveries.expires_at <= ?",
                (webhook_id, token, now + self.claim_seconds, now),
            ).rowcount
            if taken:
                return ClaimResult(Claim.CLAIMED, token)
            (done,) = db.execute("SELECT done FROM deliveries WHERE webhook_id = ?", (webhook_id,)).fetchone()
            return ClaimResult(Claim.DONE if done else Claim.BUSY)

    @unavailable_on(lambda self: sqlite.ERRORS)
    def complete(self, webhook_id: str, token: str) -> None:
        now = time.time()
        with self._db.transaction() as db:
            db.execute(
                "UPDATE deliveries SET done = 1, expires_at = ? WHERE webhook_id = ? AND token = ?",
                (now + self.done_seconds, webhook_id, token),
            )
            # Expired entries go here, on the path that adds the long-lived ones.
            db.execute("DELETE FROM deliveries WHERE expires_at <= ?", (now,))

    @unavailable_on(lambda self: sqlite.ERRORS)
    def release(self, webhook_id: str, token: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM deliveries WHERE webhook_id = ? AND token = ? AND done = 0", (webhook_id, token))

    def count(self) -> int:
        return self._db.get().execute("SELECT count(*) FROM deliveries").fetchone()[0]


# A claim must answer well inside the 6 s Stream waits for the webhook's answer.
REDIS_TIMEOUT_SECONDS = 2


class RedisDeliveryStore:
    """Keys in Redis, shared by every host: a claim is an atomic `SET NX` with an expiry."""

    PREFIX = "stream-webhook:"
    DONE = "done"
    # Change a key only while it still holds our claim's token: after our claim expired,
    # another worker may hold the id.
    _COMPLETE = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end"
    )
    _RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"

    def __init__(self, url: str, claim_seconds: float, done_seconds: float) -> None:
        self.redis = redis_store.connect(url, REDIS_TIMEOUT_SECONDS)
        self.claim_ms, self.done_ms = int(claim_seconds * 1000), int(done_seconds * 1000)
        self._complete = self.redis.register_script(self._COMPLETE)
        self._release = self.redis.register_script(self._RELEASE)

    @unavailable_on(lambda self: redis_store.errors())
    def claim(self, webhook_id: str) -> ClaimResult:
        key, token = self.PREFIX + webhook_id, secrets.token_hex(16)
        if self.redis.set(key, token, nx=True, px=self.claim_ms):
            return ClaimResult(Claim.CLAIMED, token)
        # Taken: by a finished delivery, or one in flight (or one that just expired: BUSY
        # too, and Stream's retry will find the id free).
        return ClaimResult(Claim.DONE if self.redis.get(key) == self.DONE else Claim.BUSY)

    @unavailable_on(lambda self: redis_store.errors())
    def complete(self, webhook_id: str, token: str) -> None:
        self._complete(keys=[self.PREFIX + webhook_id], args=[token, self.DONE, self.done_ms])

    @unavailable_on(lambda self: redis_store.errors())
    def release(self, webhook_id: str, token: str) -> None:
        self._release(keys=[self.PREFIX + webhook_id], args=[token])
