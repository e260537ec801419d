"""Whether the shared store answers right now, asked directly and briefly: for `GET /readyz`
and for the start-up check that says at once when REDIS_URL or the SQLite file cannot be used.

SQLite: a read of the store's own id, through `sqlite.Connections`, which first checks the file
against its marker (a deleted or swapped file is unavailable, never made anew). Redis: a PING.
Either waits at most `timeout` seconds.
"""

import urllib.parse

from stream_backend.errors import SettingsError, StoreUnavailable
from stream_backend.store import redis as redis_store
from stream_backend.store import sqlite, unavailable_on

PROBE_TIMEOUT_SECONDS = 1.0


class StoreProbe:
    """The store at `location` (`sqlite:///<path>`, `redis://...`, `rediss://...`, `unix://...`)."""

    def __init__(self, location: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        self.location = location
        if location.startswith("sqlite:///"):
            self._db: sqlite.Connections | None = sqlite.Connections(location.removeprefix("sqlite:///"), timeout)
            self._redis = None
        elif location.startswith(("redis://", "rediss://", "unix://")):
            self._db, self._redis = None, redis_store.connect(location, timeout)
        else:
            raise SettingsError(f"a store is 'sqlite:///<path>' or 'redis://...', not {location!r}")

    @property
    def name(self) -> str:
        """The store as a log line may name it: never with the password a Redis URL may hold."""
        if self._db is not None:
            return f"the SQLite file {self._db.path}"
        parts = urllib.parse.urlsplit(self.location)
        where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}{parts.path}"
        return f"Redis at {parts.scheme}://{where}"

    def problem(self) -> str | None:
        """Why the store cannot be used now, or None when it answers."""
        try:
            self._check()
        except StoreUnavailable as error:
            return f"{self.name} does not answer: {error}"
        return None

    @unavailable_on(lambda self: sqlite.ERRORS if self._db is not None else redis_store.errors())
    def _check(self) -> None:
        if self._db is not None:
            with self._db.connection() as db:
                db.execute("SELECT value FROM store_meta WHERE key = 'id'").fetchone()
        elif self._redis is not None:
            self._redis.ping()
