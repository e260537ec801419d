"""The primary system's versions of its objects, and the newest one the mirror applied to each,
so that a late retry never undoes a newer write (docs/consistency.md, "Versions").

- A version is what the primary sends in a write's `version`: a non-negative integer, or an
  RFC 3339 timestamp (its `updated_at`). Each kind compares with its own kind only: integers
  as numbers, timestamps as instants, to the nanosecond.
- An object is named `user:<id>`, `channel:<type>:<id>` (its custom data and its members) or
  `message:<id>`. For each, the store keeps the newest version applied and whether that write
  deleted it (a tombstone). A write is **stale**, and changes nothing of its object, when its
  version is older than that one, or equal to a delete's; an equal version of a live write is
  applied again, as a repeat of the same version (the sync state keeps that cheap, and it is
  how the primary repairs an edit made in Stream).
- A versioned write takes its objects' locks (store/locks.py) before it reads their versions,
  and records the versions it applied before giving them back: two writes of one object, on
  any workers or hosts, never interleave. Objects without a version are not locked, read or
  recorded: last arrival wins for them, as before versions.
- The store keeps an object's version for `keep_seconds` after its last write (default
  DEFAULT_KEEP_SECONDS, VERSIONS_KEEP_SECONDS), whatever the sync state's TTL: the bound on
  its size, and the longest a late retry can be recognised. A distinct channel's version is
  kept under the id Stream derived from its members, which the store learns at its first
  versioned sync (`distinct:<type>:<digest>` -> id).

    Version, parse_version       the values, and how they compare
    Applied, Wanted, VersionedWrite   what was applied, what a write wants, the rule between them
    SQLiteVersions, RedisVersions     the tables or keys, in the store of the sync state
    Versions, open_versions      locks, reads and records together: `writing(wanted)`
"""

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_backend.errors import InvalidRequest, SettingsError, StoreUnavailable, VersionConflict, VersionsUnavailable
from stream_backend.store import redis as redis_store
from stream_backend.store import sqlite, unavailable_on
from stream_backend.store.locks import ObjectLocks, RedisLeases, SQLiteLeases

VersionValue = int | str | datetime  # what a caller may pass: an integer, RFC 3339 text, an aware datetime

# Long enough for any outbox's retries (Stripe retries for 3 days); an object not written for
# this long forgets its version, and a retry older than that could undo its last write.
DEFAULT_KEEP_SECONDS = 7 * 24 * 3600
# The largest integer version: what a signed 64-bit column holds (nanoseconds since 1970 fit).
MAX_NUMBER = 2**63 - 1
# Nanoseconds are the finest a timestamp's fraction may be (Go's RFC3339Nano).
MAX_FRACTION_DIGITS = 9
# RFC 3339's date-time (section 5.6), `T` and `Z` in either case, at most MAX_FRACTION_DIGITS
# of fraction; each number is checked below.
RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")
# The JSON Schema of a version, in the OpenAPI document.
VERSION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER},
        {"type": "string", "format": "date-time", "maxLength": 35},
    ],
    "description": "The primary's version of this object: a non-negative integer, or an RFC 3339 timestamp "
    "(its updated_at). An older one than the newest applied changes nothing (`stale`).",
    "examples": [3, "2026-11-28T10:00:00.123456Z"],
}
PROBLEM = "must be a non-negative integer or an RFC 3339 timestamp, such as 2026-11-28T10:00:00Z"

# Timestamps count seconds from 0001-01-01T00:00:00 UTC, two days early: an offset of up to
# 23:59 may put an instant of year 1 before it in UTC.
_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_SHIFT_SECONDS = 2 * 86400

# What a write does to its object, and what a stored version says it did.
LIVE, DELETED, HARD_DELETED = 0, 1, 2  # HARD_DELETED: what it held went too (a user's messages)


@dataclass(frozen=True, order=True)
class Version:
    """A version as a key whose order is the versions' own, within a kind: `n` and 19 digits for
    an integer; `t`, 12 digits of seconds and 9 of nanoseconds for a timestamp."""

    key: str

    @property
    def kind(self) -> str:
        return "an integer" if self.key[0] == "n" else "a timestamp"


def parse_version(value: Any, field: str = "version") -> Version:
    """`value` (an int, RFC 3339 text or an aware datetime) as a Version; InvalidRequest names
    `field` otherwise."""
    value = whole_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_NUMBER:
            raise InvalidRequest(field, f"must be an integer from 0 to {MAX_NUMBER}")
        return Version(f"n{value:019d}")
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InvalidRequest(field, "must be a datetime with a timezone")
        return _instant(value, f"{value.microsecond:06d}")
    if isinstance(value, str):
        return _parsed_text(value, field)
    raise InvalidRequest(field, PROBLEM)


def whole_number(value: Any) -> Any:
    """A JSON number with a zero fraction (`3.0`, `1e3`) as the integer it is: JSON Schema's
    `integer`, which the OpenAPI document promises, counts it as one. Up to 2**53 only, where a
    float is exact: past it two versions could read as one. Anything else as given."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def version_from_query(value: str, field: str = "version") -> int | str:
    """A version as a query string carries it (digits, or an RFC 3339 timestamp), checked."""
    if value.isdigit() and value.isascii() and len(value) <= 19:
        parse_version(int(value), field)
        return int(value)
    if "+" not in value and " " in value:  # a `+` the URL did not escape arrives as a space
        raise InvalidRequest(field, PROBLEM + " (in a URL, write + as %2B)")
    parse_version(value, field)
    return value


def _parsed_text(value: str, field: str) -> Version:
    match = RFC3339.fullmatch(value)
    if match is None:
        raise InvalidRequest(field, PROBLEM)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    zone = match.group(8).upper()
    # A leap second (:60) is the next minute's first instant, a second after :59.
    leap = second == 60
    try:
        moment = datetime.fromisoformat(
            f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{59 if leap else second:02d}"
            + ("+00:00" if zone == "Z" else zone)
        )
    except ValueError:
        raise InvalidRequest(field, PROBLEM + " (a real date and time, from year 0001)") from None
    fraction = (match.group(7) or "").ljust(MAX_FRACTION_DIGITS, "0")
    return _instant(moment, fraction, extra_seconds=int(leap))


def _instant(moment: datetime, fraction: str, extra_seconds: int = 0) -> Version:
    elapsed = moment - _ORIGIN
    seconds = elapsed.days * 86400 + elapsed.seconds + extra_seconds + _SHIFT_SECONDS
    return Version(f"t{seconds:012d}{fraction.ljust(MAX_FRACTION_DIGITS, '0')}")


# --- Objects ---------------------------------------------------------------------------------


def user_object(user_id: str) -> str:
    return f"user:{user_id}"


def channel_object(channel_type: str, channel_id: str) -> str:
    return f"channel:{channel_type}:{channel_id}"


def message_object(message_id: str) -> str:
    return f"message:{message_id}"


def channel_id_of(name: str) -> str:
    """The channel id in a `channel:<type>:<id>` name (ids and types hold no `:`)."""
    return name.split(":", 2)[2]


def distinct_key(channel_type: str, member_ids: Iterable[str]) -> str:
    digest = hashlib.blake2b(json.dumps(sorted(member_ids)).encode(), digest_size=16).hexdigest()
    return f"distinct:{channel_type}:{digest}"


# --- The rule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """The newest version applied to an object, and whether that write deleted it."""

    version: Version
    deleted: int = LIVE


@dataclass(frozen=True)
class Wanted:
    """What a write wants to do to an object: apply `version`, deleting it or not. `field`
    names the request's field, for errors."""

    version: Version
    deleted: int = LIVE
    field: str = "version"


def is_stale(applied: Applied | None, wanted: Wanted, name: str) -> bool:
    """Whether `wanted` must change nothing of the object `name`: older than the newest applied,
    or as new as a delete (a tombstone: only a newer version brings the object back)."""
    if applied is None:
        return False
    if applied.version.kind != wanted.version.kind:
        raise VersionConflict(
            wanted.field, f"is {wanted.version.kind}, but {name} has {applied.version.kind} version: one kind an object"
        )
    if wanted.version != applied.version:
        return wanted.version < applied.version
    return bool(applied.deleted) and not wanted.deleted


def wanted(versions: Iterable[tuple[str, VersionValue | None, str]], deleted: int = LIVE) -> dict[str, Wanted]:
    """`(object, version or None, field)` as the write's wants; objects without a version are
    not versioned, and left out."""
    return {
        name: Wanted(parse_version(value, field), deleted, field)
        for name, value, field in versions
        if value is not None
    }


class VersionedWrite:
    """One request's versioned objects, once their locks are held: which are stale, and what to
    record when the request is done."""

    def __init__(self, wants: Mapping[str, Wanted], applied: Mapping[str, Applied]) -> None:
        self.wants, self.applied = dict(wants), dict(applied)
        self.stale = {name for name, want in self.wants.items() if is_stale(self.applied.get(name), want, name)}

    def is_stale(self, name: str) -> bool:
        return name in self.stale

    def is_applied_already(self) -> bool:
        """Whether every object is stale, or at the very version (and deletion) applied: what
        the write does to them cannot move any of them forward."""
        return all(
            name in self.stale or self.applied.get(name) == Applied(want.version, want.deleted)
            for name, want in self.wants.items()
        )

    def is_gone(self, name: str, deleted: int = DELETED) -> bool:
        """Stale because a delete as new or newer took the object (`HARD_DELETED`: with what it held)."""
        applied = self.applied.get(name)
        return name in self.stale and applied is not None and applied.deleted >= deleted

    def skip(self, name: str) -> None:
        """Leave `name` unwritten, as stale (versioned or not), because another object of the
        write is gone."""
        self.stale.add(name)

    def rename(self, name: str, new_name: str) -> None:
        """The object `name` is `new_name` (a distinct channel's id, learned from Stream)."""
        if name in self.wants and name != new_name:
            self.wants[new_name] = self.wants.pop(name)

    def fresh(self, users: Mapping[str, dict]) -> dict[str, dict]:
        """The users of `users` (id -> object) whose object is not stale."""
        return {user_id: user for user_id, user in users.items() if user_object(user_id) not in self.stale}

    def to_record(self) -> dict[str, Applied]:
        """The versions applied: every object wanted and not stale, unless already recorded as is."""
        applied = {name: Applied(want.version, want.deleted) for name, want in self.wants.items()}
        return {
            name: value for name, value in applied.items() if name not in self.stale and self.applied.get(name) != value
        }

    def answer(self) -> dict[str, Any]:
        """What an answer adds: `"stale": true` and the stale objects, when there are any."""
        return answer(self)


def answer(*writes: VersionedWrite) -> dict[str, Any]:
    """What the answer of one request made of `writes` adds: `"stale": true` and the stale
    objects, when there are any."""
    stale = sorted(set().union(*(write.stale for write in writes)))
    return {"stale": True, "stale_objects": stale} if stale else {}


# --- The stores ------------------------------------------------------------------------------


def _applied(value: str) -> Applied:
    version, deleted = value.split("|")
    return Applied(Version(version), int(deleted))


class SQLiteVersions:
    """The `object_versions` and `distinct_channels` tables in the SQLite file (store/sqlite.py)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS object_versions (object TEXT PRIMARY KEY, version TEXT NOT NULL,"
        " deleted INTEGER NOT NULL, written_at REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS object_versions_written ON object_versions (written_at)",
        "CREATE TABLE IF NOT EXISTS distinct_channels (members TEXT PRIMARY KEY, channel_id TEXT NOT NULL,"
        " written_at REAL NOT NULL)",
    )

    def __init__(self, path: str, keep_seconds: float, busy_timeout: float = sqlite.BUSY_TIMEOUT_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        self._db = sqlite.Connections(path, busy_timeout, self.SCHEMA)
        self._writes = 0

    @unavailable_on(lambda self: sqlite.ERRORS)
    def newest(self, objects: list[str]) -> dict[str, Applied]:
        with self._db.connection() as db:
            marks = ",".join("?" * len(objects))
            query = f"SELECT object, version, deleted FROM object_versions WHERE object IN ({marks})"
            rows = db.execute(query, objects)
            return {name: Applied(Version(version), deleted) for name, version, deleted in rows}

    @unavailable_on(lambda self: sqlite.ERRORS)
    def record(self, applied: dict[str, Applied]) -> None:
        """Keep each version unless the stored one is newer (or as new and a delete): a holder
        whose lease was lost still cannot move an object's version back."""
        now = time.time()
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO object_versions VALUES (?, ?, ?, ?) ON CONFLICT (object) DO UPDATE"
                " SET version = excluded.version, deleted = excluded.deleted, written_at = excluded.written_at"
                " WHERE excluded.version > object_versions.version"
                " OR (excluded.version = object_versions.version AND excluded.deleted >= object_versions.deleted)",
                [(name, value.version.key, value.deleted, now) for name, value in applied.items()],
            )
            self._writes += 1
            if self._writes % 100 == 0:  # the pruning rule: versions not written for keep_seconds go
                db.execute("DELETE FROM object_versions WHERE written_at < ?", (now - self.keep_seconds,))
                db.execute("DELETE FROM distinct_channels WHERE written_at < ?", (now - self.keep_seconds,))

    @unavailable_on(lambda self: sqlite.ERRORS)
    def distinct_id(self, key: str) -> str | None:
        with self._db.connection() as db:
            row = db.execute("SELECT channel_id FROM distinct_channels WHERE members = ?", (key,)).fetchone()
        return row[0] if row else None

    @unavailable_on(lambda self: sqlite.ERRORS)
    def remember_distinct(self, key: str, channel_id: str) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO distinct_channels VALUES (?, ?, ?)", (key, channel_id, time.time()))


class RedisVersions:
    """Keys under `stream-version:` in Redis, `<version>|<deleted>`, each expiring `keep_seconds`
    after its last write (Redis prunes them itself)."""

    PREFIX = "stream-version:"
    # The same rule as SQLite's: a stored version newer (or as new and a delete) stays. Keys
    # compare as strings: within a kind, their order is the versions' own.
    _RECORD = """
for i, key in ipairs(KEYS) do
  local new = ARGV[i + 1]
  local old = redis.call('GET', key)
  local keep = false
  if old then
    local old_version, old_deleted = string.match(old, '([^|]+)|(%d+)')
    local new_version, new_deleted = string.match(new, '([^|]+)|(%d+)')
    keep = old_version > new_version or (old_version == new_version and old_deleted > new_deleted)
  end
  if not keep then redis.call('SET', key, new, 'PX', ARGV[1]) end
end
"""

    def __init__(self, redis: Any, keep_seconds: float) -> None:
        self.redis, self.keep_ms = redis, int(keep_seconds * 1000)
        self._record = redis.register_script(self._RECORD)

    @unavailable_on(lambda self: redis_store.errors())
    def newest(self, objects: list[str]) -> dict[str, Applied]:
        values = self.redis.mget([self.PREFIX + name for name in objects])
        return {name: _applied(value) for name, value in zip(objects, values, strict=True) if value is not None}

    @unavailable_on(lambda self: redis_store.errors())
    def record(self, applied: dict[str, Applied]) -> None:
        values = [f"{value.version.key}|{value.deleted}" for value in applied.values()]
        self._record(keys=[self.PREFIX + name for name in applied], args=[self.keep_ms, *values])

    @unavailable_on(lambda self: redis_store.errors())
    def distinct_id(self, key: str) -> str | None:
        return self.redis.get(self.PREFIX + key)

    @unavailable_on(lambda self: redis_store.errors())
    def remember_distinct(self, key: str, channel_id: str) -> None:
        self.redis.set(self.PREFIX + key, channel_id, px=self.keep_ms)


# How long a Redis command of the versions may take: they must answer for a versioned write to
# go on, so a hung Redis costs this, then a 503.
REDIS_TIMEOUT_SECONDS = 1.0


class Versions:
    """The versions of the mirror's objects in `store`, with their locks in `locks`; both None
    for a mirror without a store, which refuses versioned writes."""

    def __init__(self, store: "SQLiteVersions | RedisVersions | None", locks: ObjectLocks | None) -> None:
        self.store, self.locks = store, locks

    @contextmanager
    def writing(self, wants: Mapping[str, Wanted]) -> Iterator[VersionedWrite]:
        """The write of `wants` (object -> Wanted): their locks held, their versions read, for
        the `with` block; when it ends without an exception, the versions it applied recorded."""
        if not wants:
            yield VersionedWrite({}, {})
            return
        store, locks = self._store(), self.locks
        assert locks is not None  # built with its store
        first = min(wants)
        holding = ExitStack()
        with _unavailable("lock", first):
            holding.enter_context(locks.holding(wants))
        with holding:
            with _unavailable("read", first):
                write = VersionedWrite(wants, store.newest(list(wants)))
            yield write
            applied = write.to_record()
            if applied:
                with _unavailable("record", first):
                    store.record(applied)

    def peek(self, wants: Mapping[str, Wanted]) -> VersionedWrite:
        """The versions of `wants`, read without their locks, for a write that may need none: a
        stored version never moves back, so what is stale now stays stale, and what is applied
        stays applied or older."""
        with _unavailable("read", min(wants)):
            return VersionedWrite(wants, self._store().newest(list(wants)))

    def channel_name(self, channel_type: str, channel_id: str | None, member_ids: Iterable[str]) -> str:
        """The object of a channel: by its id, or a distinct channel's by the id the store learned
        (`distinct:<type>:<digest>` until then)."""
        if channel_id is not None:
            return channel_object(channel_type, channel_id)
        key = distinct_key(channel_type, member_ids)
        with _unavailable("read", key):
            known = self._store().distinct_id(key)
        return channel_object(channel_type, known) if known else key

    def learned(self, write: VersionedWrite, name: str, channel_type: str, channel_id: str) -> None:
        """A distinct channel's id, from Stream: its versions are kept under it from now on."""
        if not name.startswith("distinct:") or name not in write.wants:
            return
        with _unavailable("record", name):
            self._store().remember_distinct(name, channel_id)
        write.rename(name, channel_object(channel_type, channel_id))

    def _store(self) -> "SQLiteVersions | RedisVersions":
        if self.store is None:
            raise SettingsError("a versioned write needs a store: Mirror.connect(..., state='sqlite:///...')")
        return self.store


@contextmanager
def _unavailable(what: str, name: str) -> Iterator[None]:
    """The store's failure, as VersionsUnavailable naming what could not be done to `name`."""
    try:
        yield
    except StoreUnavailable as error:
        raise VersionsUnavailable(f"could not {what} the version of {name}") from error


def open_versions(location: str | None, keep_seconds: float = DEFAULT_KEEP_SECONDS) -> Versions:
    """The versions at `location` (open_sync_state's forms), beside the sync state; None: none."""
    if location is None:
        return Versions(None, None)
    if location.startswith("sqlite:///"):
        path = location.removeprefix("sqlite:///")
        return Versions(SQLiteVersions(path, keep_seconds), ObjectLocks(SQLiteLeases(path)))
    if location.startswith(("redis://", "rediss://", "unix://")):
        client = redis_store.connect(location, REDIS_TIMEOUT_SECONDS)
        return Versions(RedisVersions(client, keep_seconds), ObjectLocks(RedisLeases(client)))
    raise SettingsError(f"state must be None, 'sqlite:///<path>' or 'redis://...', not {location!r}")
