"""What the mirror believes Stream holds, shared by every worker, so that a repeated sync skips
the calls that would change nothing.

- `user:<id>` -> a digest of the user object last upserted: an unchanged user is not upserted
  again; a changed name or image is.
- `channel:<type>:<id>` -> the member ids Stream is known to have: a message to a channel whose
  members are all known skips the get-or-create; a new member makes the mirror add them.
- `distinct:<type>:<digest of the member ids>` -> the id Stream derived for a distinct channel.

Keys and values are plain strings, in the same store as the webhook claims: the SQLite file
(WEBHOOK_DB, every worker of a host) or Redis (REDIS_URL, every host). Every entry expires
after `ttl_seconds`, which bounds how long a divergence nobody told us about can last; webhook
events forget what they touch sooner (mirror.Mirror.forget). It is a hint, never the truth:
a store that cannot answer reads as empty (the full path: correct, slower) and its writes are
dropped, with a warning in the log.
"""

import hashlib
import json
import logging
import sqlite3
import threading
import time
from typing import Any, Iterable

import redis

from settings import Settings
from webhook_store import BUSY_TIMEOUT_SECONDS

log = logging.getLogger("stream_backend.sync_state")

# What a store raises when it cannot answer: Redis down, SQLite locked past its busy timeout.
STORE_ERRORS = (sqlite3.Error, redis.RedisError)


def _digest(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def channel_key(channel_type: str, channel_id: str) -> str:
    return f"channel:{channel_type}:{channel_id}"


def distinct_key(channel_type: str, member_ids: Iterable[str]) -> str:
    return f"distinct:{channel_type}:{_digest(sorted(member_ids))}"


class SQLiteKeyValues:
    """A `sync_state` table beside the webhook claims in the SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._writes = 0
        try:
            with self._connection() as db:
                db.execute("CREATE TABLE IF NOT EXISTS sync_state ("
                           " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)")
        except sqlite3.Error as error:  # the state is optional: the service starts without it
            log.warning("sync state unavailable: %s", error)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(keys))
        rows = self._connection().execute(
            f"SELECT key, value FROM sync_state WHERE key IN ({marks}) AND expires_at > ?", (*keys, time.time()))
        return dict(rows.fetchall())

    def set_many(self, values: dict[str, str], ttl_seconds: float) -> None:
        now = time.time()
        with self._connection() as db:  # one transaction
            db.executemany("INSERT OR REPLACE INTO sync_state VALUES (?, ?, ?)",
                           [(key, value, now + ttl_seconds) for key, value in values.items()])
            self._writes += 1
            if self._writes % 100 == 0:  # expired entries go now and then, on the write path
                db.execute("DELETE FROM sync_state WHERE expires_at <= ?", (now,))

    def delete_many(self, keys: list[str]) -> None:
        with self._connection() as db:
            db.executemany("DELETE FROM sync_state WHERE key = ?", [(key,) for key in keys])

    def _connection(self) -> sqlite3.Connection:
        if getattr(self._local, "db", None) is None:
            # The webhook store set the file to WAL: readers never wait for a writer.
            self._local.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        return self._local.db


class RedisKeyValues:
    """Keys under `stream-sync:` in Redis, each with its own expiry."""

    PREFIX = "stream-sync:"

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        values = self.redis.mget([self.PREFIX + key for key in keys])
        return {key: value for key, value in zip(keys, values) if value is not None}

    def set_many(self, values: dict[str, str], ttl_seconds: float) -> None:
        pipeline = self.redis.pipeline(transaction=False)
        for key, value in values.items():
            pipeline.set(self.PREFIX + key, value, px=int(ttl_seconds * 1000))
        pipeline.execute()

    def delete_many(self, keys: list[str]) -> None:
        self.redis.delete(*[self.PREFIX + key for key in keys])


class SyncState:
    """The mirror's questions about what Stream holds, answered from `store` (SQLiteKeyValues,
    RedisKeyValues or None for no memory at all: every sync takes the full path)."""

    def __init__(self, store, ttl_seconds: float) -> None:
        self.store = store if ttl_seconds > 0 else None
        self.ttl_seconds = ttl_seconds

    # --- Users ---------------------------------------------------------------------------

    def users_to_upsert(self, users: dict[str, dict]) -> dict[str, dict]:
        """The users whose object Stream may not have as it is."""
        known = self._get([user_key(user_id) for user_id in users])
        return {user_id: user for user_id, user in users.items() if known.get(user_key(user_id)) != _digest(user)}

    def remember_users(self, users: dict[str, dict]) -> None:
        self._set({user_key(user_id): _digest(user) for user_id, user in users.items()})

    def forget_users(self, user_ids: Iterable[str]) -> None:
        self._delete([user_key(user_id) for user_id in user_ids])

    # --- Channels ------------------------------------------------------------------------

    def distinct_channel_id(self, channel_type: str, member_ids: Iterable[str]) -> str | None:
        """The id Stream derived for the distinct channel of these members, if known."""
        return self._get([key := distinct_key(channel_type, member_ids)]).get(key)

    def channel_members(self, channel_type: str, channel_id: str) -> set[str] | None:
        """The member ids Stream is known to have in the channel, or None if unknown."""
        value = self._get([key := channel_key(channel_type, channel_id)]).get(key)
        return set(json.loads(value)) if value is not None else None

    def remember_channel(self, channel_type: str, channel_id: str, member_ids: Iterable[str],
                         distinct_members: Iterable[str] | None = None) -> None:
        values = {channel_key(channel_type, channel_id): json.dumps(sorted(member_ids))}
        if distinct_members is not None:
            values[distinct_key(channel_type, distinct_members)] = channel_id
        self._set(values)

    def forget_channel(self, channel_type: str, channel_id: str,
                       distinct_members: Iterable[str] | None = None) -> None:
        keys = [channel_key(channel_type, channel_id)]
        if distinct_members is not None:
            keys.append(distinct_key(channel_type, distinct_members))
        self._delete(keys)

    # --- The store, which may be down ----------------------------------------------------

    def _get(self, keys: list[str]) -> dict[str, str]:
        if self.store is None or not keys:
            return {}
        try:
            return self.store.get_many(keys)
        except STORE_ERRORS as error:
            log.warning("sync state unavailable, taking the full path: %s", error)
            return {}

    def _set(self, values: dict[str, str]) -> None:
        if self.store is None or not values:
            return
        try:
            self.store.set_many(values, self.ttl_seconds)
        except STORE_ERRORS as error:
            log.warning("sync state unavailable, not remembered: %s", error)

    def _delete(self, keys: list[str]) -> None:
        if self.store is None or not keys:
            return
        try:
            self.store.delete_many(keys)
        except STORE_ERRORS as error:
            # What stays behind expires with its TTL: the bound on any divergence.
            log.warning("sync state unavailable, not forgotten: %s", error)


def open_sync_state(settings: Settings) -> SyncState:
    """The mirror's state, in the same store as the webhook claims."""
    store = RedisKeyValues(settings.redis_url) if settings.redis_url else SQLiteKeyValues(settings.webhook_db)
    return SyncState(store, settings.sync_state_ttl_seconds)
