"""What the mirror believes Stream holds, shared by every worker, so that a repeated sync skips
the calls that would change nothing.

- `user:<id>` -> a digest of the user object last upserted: an unchanged user is not upserted
  again; a changed name or image is.
- `channel:<type>:<id>` -> the member ids Stream is known to have, and a digest of the custom
  data last written: a message to a channel whose members are all known, with the same data,
  skips the get-or-create; a new member or other data makes the mirror take the full path.
- `distinct:<type>:<digest of the member ids>` -> the id Stream derived for a distinct channel;
  it is trusted only while that id's `channel:` entry is there too (webhooks forget that one).

Keys and values are plain strings, in the same store as the webhook's deliveries: the SQLite file
(WEBHOOK_DB, every worker of a host) or Redis (REDIS_URL, every host). Every entry expires
after `ttl_seconds`, which bounds how long a divergence nobody told us about can last; webhook
events forget what they touch sooner (mirror.Mirror.forget). It is a hint, never the truth:
a store that cannot answer reads as empty (the full path: correct, slower) and its writes are
dropped, with a warning in the log; after a failure the store is left alone for
`BREAK_SECONDS`, so that a hung store costs one timeout, not one per operation.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stream_backend.errors import SettingsError, StoreUnavailable
from stream_backend.store import redis as redis_store
from stream_backend.store import sqlite, unavailable_on

log = logging.getLogger("stream_backend.sync_state")

# After a store error, how long the state skips the store (every sync takes the full path).
BREAK_SECONDS = 5.0

# How long a Redis command may take: the state saves calls to Stream, so it must answer far
# faster than Stream would (about 50 ms a call); past this it counts as down.
REDIS_TIMEOUT_SECONDS = 0.25
# How long the mirror trusts what it believes Stream holds: the longest a divergence no
# webhook told us about can last; past it, a channel's next message pays the full path once
# (two more calls).
DEFAULT_TTL_SECONDS = 300


def _digest(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def channel_key(channel_type: str, channel_id: str) -> str:
    return f"channel:{channel_type}:{channel_id}"


def distinct_key(channel_type: str, member_ids: Iterable[str]) -> str:
    return f"distinct:{channel_type}:{_digest(sorted(member_ids))}"


@dataclass(frozen=True)
class KnownChannel:
    """What Stream is known to hold for a channel: its member ids and a digest of its custom data."""

    members: frozenset[str]
    data: str | None

    def has(self, member_ids: Iterable[str], custom_data: dict[str, Any]) -> bool:
        """Whether Stream holds these members (among others) and this custom data."""
        return self.members.issuperset(member_ids) and self.data == _digest(custom_data)


def _known(value: str | None) -> KnownChannel | None:
    if value is None:
        return None
    entry = json.loads(value)
    return KnownChannel(frozenset(entry["members"]), entry["data"])


class SQLiteKeyValues:
    """A `sync_state` table in the SQLite file (store/sqlite.py)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)",
    )

    def __init__(self, path: str, busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS) -> None:
        # Opened at the first use: a file that cannot be opened yet is a state that reads as
        # empty (the full path), tried again after the breaker's pause.
        self.path = path
        self._db = sqlite.Connections(path, busy_timeout, self.SCHEMA)
        self._writes = 0

    @unavailable_on(lambda self: sqlite.ERRORS)
    def get_many(self, keys: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(keys))
        with self._db.connection() as db:
            rows = db.execute(
                f"SELECT key, value FROM sync_state WHERE key IN ({marks}) AND expires_at > ?", (*keys, time.time())
            )
            return dict(rows.fetchall())

    @unavailable_on(lambda self: sqlite.ERRORS)
    def set_many(self, values: dict[str, str], ttl_seconds: float) -> None:
        now = time.time()
        with self._db.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO sync_state VALUES (?, ?, ?)",
                [(key, value, now + ttl_seconds) for key, value in values.items()],
            )
            self._writes += 1
            if self._writes % 100 == 0:  # expired entries go now and then, on the write path
                db.execute("DELETE FROM sync_state WHERE expires_at <= ?", (now,))

    @unavailable_on(lambda self: sqlite.ERRORS)
    def delete_many(self, keys: list[str]) -> None:
        with self._db.transaction() as db:
            db.executemany("DELETE FROM sync_state WHERE key = ?", [(key,) for key in keys])


class RedisKeyValues:
    """Keys under `stream-sync:` in Redis, each with its own expiry."""

    PREFIX = "stream-sync:"

    def __init__(self, url: str) -> None:
        self.redis = redis_store.connect(url, REDIS_TIMEOUT_SECONDS)

    @unavailable_on(lambda self: redis_store.errors())
    def get_many(self, keys: list[str]) -> dict[str, str]:
        values = self.redis.mget([self.PREFIX + key for key in keys])
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    @unavailable_on(lambda self: redis_store.errors())
    def set_many(self, values: dict[str, str], ttl_seconds: float) -> None:
        pipeline = self.redis.pipeline(transaction=False)
        for key, value in values.items():
            pipeline.set(self.PREFIX + key, value, px=int(ttl_seconds * 1000))
        pipeline.execute()

    @unavailable_on(lambda self: redis_store.errors())
    def delete_many(self, keys: list[str]) -> None:
        self.redis.delete(*[self.PREFIX + key for key in keys])


class SyncState:
    """The mirror's questions about what Stream holds, answered from `store` (SQLiteKeyValues,
    RedisKeyValues or None for no memory at all: every sync takes the full path)."""

    def __init__(
        self,
        store: "SQLiteKeyValues | RedisKeyValues | None",
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store if ttl_seconds > 0 else None
        self.ttl_seconds, self.clock = ttl_seconds, clock
        self._skip_until = 0.0  # clock() before which the store is not asked

    # --- Users ---------------------------------------------------------------------------

    def users_to_upsert(self, users: dict[str, dict]) -> dict[str, dict]:
        """The users whose object Stream may not have as it is."""
        known = self._get([user_key(user_id) for user_id in users])
        return {user_id: user for user_id, user in users.items() if known.get(user_key(user_id)) != _digest(user)}

    def remember_users(self, users: dict[str, dict]) -> None:
        self._set({user_key(user_id): _digest(user) for user_id, user in users.items()})

    def forget_users(self, user_ids: Iterable[str], strict: bool = False) -> None:
        self._delete([user_key(user_id) for user_id in user_ids], strict)

    # --- Channels ------------------------------------------------------------------------

    def channel(self, channel_type: str, channel_id: str) -> KnownChannel | None:
        """What Stream is known to hold for the channel, or None if unknown."""
        return _known(self._get([key := channel_key(channel_type, channel_id)]).get(key))

    def distinct_channel(self, channel_type: str, member_ids: Iterable[str]) -> tuple[str, KnownChannel] | None:
        """The id Stream derived for the distinct channel of these members and what it is
        known to hold, or None when either is unknown (a webhook forgot the channel)."""
        channel_id = self._get([key := distinct_key(channel_type, member_ids)]).get(key)
        if channel_id is None:
            return None
        known = self.channel(channel_type, channel_id)
        return (channel_id, known) if known is not None else None

    def remember_channel(
        self,
        channel_type: str,
        channel_id: str,
        member_ids: Iterable[str],
        custom_data: dict[str, Any] | None = None,
        distinct_members: Iterable[str] | None = None,
    ) -> None:
        """Remember the channel's members and the custom data last written to it (None: not
        known, so that the next sync compares it with Stream's)."""
        entry = {"members": sorted(member_ids), "data": None if custom_data is None else _digest(custom_data)}
        values = {channel_key(channel_type, channel_id): json.dumps(entry)}
        if distinct_members is not None:
            values[distinct_key(channel_type, distinct_members)] = channel_id
        self._set(values)

    def remember_members(self, channel_type: str, channel_id: str, member_ids: Iterable[str]) -> None:
        """Remember the channel's members, keeping what is known of its custom data."""
        known = self.channel(channel_type, channel_id)
        entry = {"members": sorted(member_ids), "data": known.data if known else None}
        self._set({channel_key(channel_type, channel_id): json.dumps(entry)})

    def forget_channel(
        self, channel_type: str, channel_id: str, distinct_members: Iterable[str] | None = None, strict: bool = False
    ) -> None:
        keys = [channel_key(channel_type, channel_id)]
        if distinct_members is not None:
            keys.append(distinct_key(channel_type, distinct_members))
        self._delete(keys, strict)

    # --- The store, which may be down ----------------------------------------------------

    def _get(self, keys: list[str]) -> dict[str, str]:
        if not keys or self.store is None or not self._usable():
            return {}
        try:
            return self.store.get_many(keys)
        except StoreUnavailable as error:
            self._broken(error, "taking the full path")
            return {}

    def _set(self, values: dict[str, str]) -> None:
        if not values or self.store is None or not self._usable():
            return
        try:
            self.store.set_many(values, self.ttl_seconds)
        except StoreUnavailable as error:
            self._broken(error, "not remembered")

    def _delete(self, keys: list[str], strict: bool = False) -> None:
        """Forget `keys`. `strict` (a webhook's forget): the store is asked even while the
        breaker is open, and a failure raises StoreUnavailable, so that the webhook answers 503
        and Stream sends the event again; what Stream changed must not stay trusted."""
        if not keys or self.store is None or not (strict or self._usable()):
            return
        try:
            self.store.delete_many(keys)
        except StoreUnavailable as error:
            self._broken(error, "not forgotten")
            if strict:
                raise StoreUnavailable(f"the sync state could not forget {keys[0]}: {error}") from error
            # What stays behind expires with its TTL: the bound on any divergence.

    def _usable(self) -> bool:
        return self.store is not None and self.clock() >= self._skip_until

    def _broken(self, error: Exception, consequence: str) -> None:
        """A circuit breaker: a store that failed (down, hung, locked) is skipped for
        BREAK_SECONDS, so that each request pays its timeout once, not at every operation."""
        self._skip_until = self.clock() + BREAK_SECONDS
        log.warning("sync state unavailable, %s; skipping it for %.0f s: %s", consequence, BREAK_SECONDS, error)


def open_sync_state(location: str | None, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> SyncState:
    """The mirror's state at `location`: `sqlite:///<path>` (SQLAlchemy's form: four slashes
    before an absolute path), `redis://...` or `rediss://...`; None for no state at all (every
    sync takes the full path: correct, with two more calls a message)."""
    if location is None:
        return SyncState(None, ttl_seconds)
    if location.startswith("sqlite:///"):
        return SyncState(SQLiteKeyValues(location.removeprefix("sqlite:///")), ttl_seconds)
    if location.startswith(("redis://", "rediss://", "unix://")):
        return SyncState(RedisKeyValues(location), ttl_seconds)
    raise SettingsError(f"state must be None, 'sqlite:///<path>' or 'redis://...', not {location!r}")
