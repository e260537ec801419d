"""Per-object locks shared by every worker and host, for versioned writes (mirror/versions.py):
while a request holds the lock of an object (`message:<id>`, `channel:<type>:<id>`,
`user:<id>`), no other request, in any process on any host, reads, compares and writes it.

- A lock is a lease: a row (SQLite) or a key (Redis) that holds its holder's token until an
  expiry. A request takes every lock it needs at once, all or none, so that two requests never
  each hold a part of the other's set (no deadlock), and objects nobody else writes never wait.
- A lock taken is kept: a thread extends the leases its process holds every third of
  `lease_seconds`, so that a long write keeps them, and those of a holder that crashed expire
  within `lease_seconds`.
- A lock not free is tried again, with a short backoff, for up to `wait_seconds`; then
  errors.ObjectBusy names the objects another request holds.

    SQLiteLeases   the `object_locks` table, each change one IMMEDIATE transaction
    RedisLeases    `stream-lock:<object>` keys, each set with its holder's token and an expiry
    ObjectLocks    holding(objects): take them, keep them, give them back

A store that cannot answer raises errors.StoreUnavailable, as every store of this package does.
"""

import logging
import random
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from stream_backend.errors import ObjectBusy, StoreUnavailable
from stream_backend.store import redis as redis_store
from stream_backend.store import sqlite, unavailable_on

log = logging.getLogger("stream_backend.locks")

# How long a write waits for another request's write of the same object: a few Stream round
# trips; past it the caller answers 503 and the primary retries.
WAIT_SECONDS = 5.0
# How long a lease outlives its holder's last renewal: the longest a crashed holder blocks
# its objects. The holder renews it every third of this.
LEASE_SECONDS = 10.0


class Leases(Protocol):
    def take(self, objects: list[str], token: str, lease_seconds: float) -> list[str]: ...
    def extend(self, objects: list[str], token: str, lease_seconds: float) -> None: ...
    def release(self, objects: list[str], token: str) -> None: ...


class SQLiteLeases:
    """The `object_locks` table in the SQLite file (store/sqlite.py)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS object_locks"
        " (object TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL)",
    )

    def __init__(self, path: str, busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS) -> None:
        # Its own connections' commits only: a lease is worth nothing after a crash of the machine.
        self._db = sqlite.Connections(path, busy_timeout, self.SCHEMA, pragmas=("PRAGMA synchronous=OFF",))
        self._takes = 0

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """An IMMEDIATE transaction that does not wait for the disk: a lease is worth nothing
        after a crash of the machine, whose holders are gone too (the versions are synced)."""
        with self._db.transaction() as db:
            yield db

    @unavailable_on(lambda self: sqlite.ERRORS)
    def take(self, objects: list[str], token: str, lease_seconds: float) -> list[str]:
        """Every lock of `objects` for `token`, or none: the objects whose lock another holds."""
        now, marks = time.time(), ",".join("?" * len(objects))
        with self._transaction() as db:
            held = db.execute(
                f"SELECT object FROM object_locks WHERE object IN ({marks}) AND expires_at > ? AND token != ?",
                (*objects, now, token),
            ).fetchall()
            if held:
                return [row[0] for row in held]
            db.executemany(
                "INSERT OR REPLACE INTO object_locks VALUES (?, ?, ?)",
                [(name, token, now + lease_seconds) for name in objects],
            )
            self._takes += 1
            if self._takes % 100 == 0:  # leases of crashed holders go now and then
                db.execute("DELETE FROM object_locks WHERE expires_at <= ?", (now,))
        return []

    @unavailable_on(lambda self: sqlite.ERRORS)
    def extend(self, objects: list[str], token: str, lease_seconds: float) -> None:
        with self._transaction() as db:
            marks = ",".join("?" * len(objects))
            db.execute(
                f"UPDATE object_locks SET expires_at = ? WHERE object IN ({marks}) AND token = ?",
                (time.time() + lease_seconds, *objects, token),
            )

    @unavailable_on(lambda self: sqlite.ERRORS)
    def release(self, objects: list[str], token: str) -> None:
        with self._transaction() as db:
            db.execute(
                f"DELETE FROM object_locks WHERE object IN ({','.join('?' * len(objects))}) AND token = ?",
                (*objects, token),
            )


class RedisLeases:
    """Keys under `stream-lock:` in Redis, each holding its holder's token with an expiry. Each
    change is one Lua script, atomic in Redis: all the keys of a request are taken or none, and
    only the holder's token extends or deletes a key (after an expiry another may hold it). The
    keys of one request are in one script, so REDIS_URL is one Redis, not a Redis Cluster."""

    PREFIX = "stream-lock:"
    _TAKE = """
local held = {}
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= ARGV[1] then held[#held + 1] = key end
end
if #held > 0 then return held end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return held
"""
    _EXTEND = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
"""
    _RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
"""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._take = redis.register_script(self._TAKE)
        self._extend = redis.register_script(self._EXTEND)
        self._release = redis.register_script(self._RELEASE)

    def _keys(self, objects: list[str]) -> list[str]:
        return [self.PREFIX + name for name in objects]

    @unavailable_on(lambda self: redis_store.errors())
    def take(self, objects: list[str], token: str, lease_seconds: float) -> list[str]:
        held = self._take(keys=self._keys(objects), args=[token, int(lease_seconds * 1000)])
        return [key.removeprefix(self.PREFIX) for key in held]

    @unavailable_on(lambda self: redis_store.errors())
    def extend(self, objects: list[str], token: str, lease_seconds: float) -> None:
        self._extend(keys=self._keys(objects), args=[token, int(lease_seconds * 1000)])

    @unavailable_on(lambda self: redis_store.errors())
    def release(self, objects: list[str], token: str) -> None:
        self._release(keys=self._keys(objects), args=[token])


class ObjectLocks:
    """Locks on objects, by name, in `leases` (SQLiteLeases or RedisLeases)."""

    def __init__(
        self, leases: Leases, wait_seconds: float = WAIT_SECONDS, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.leases, self.wait_seconds, self.lease_seconds = leases, wait_seconds, lease_seconds
        self._held: dict[str, list[str]] = {}  # token -> objects, the leases this process keeps
        self._guard = threading.Lock()
        self._keeper: threading.Thread | None = None

    @contextmanager
    def holding(self, objects: Iterable[str]) -> Iterator[None]:
        """Hold the locks of `objects` for the `with` block: ObjectBusy if another request holds
        one past `wait_seconds`, StoreUnavailable if the store cannot answer."""
        names = sorted(set(objects))
        if not names:
            yield
            return
        token = secrets.token_hex(16)
        self._take(names, token)
        self._keep(token, names)
        try:
            yield
        finally:
            with self._guard:
                del self._held[token]
            self._give_back(names, token)

    def _take(self, names: list[str], token: str) -> None:
        deadline, delay = time.monotonic() + self.wait_seconds, 0.002
        while held := self.leases.take(names, token, self.lease_seconds):
            if time.monotonic() + delay > deadline:
                raise ObjectBusy(held, self.wait_seconds)
            # Jittered, so that two waiters do not come back at the same moment.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.01)

    def _give_back(self, names: list[str], token: str) -> None:
        try:
            self.leases.release(names, token)
        except StoreUnavailable as error:
            # What was written is written; the lease expires within lease_seconds.
            log.warning("locks of %s not released, they expire: %s", names[0], error)

    def _keep(self, token: str, names: list[str]) -> None:
        with self._guard:
            self._held[token] = names
            # One keeper per process, started at the first lock (a forked process starts its own).
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._renew_forever, name="lease-keeper", daemon=True)
                self._keeper.start()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            with self._guard:
                held = list(self._held.items())
            for token, names in held:
                try:
                    self.leases.extend(names, token, self.lease_seconds)
                except StoreUnavailable as error:
                    log.warning("lease of %s not extended: %s", names[0], error)
