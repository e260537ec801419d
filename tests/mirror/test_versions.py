"""The versions themselves (mirror/versions.py): how integers and RFC 3339 timestamps read and
compare, the stale rule, and the store of newest versions on SQLite and on a real Redis (never
moved back, kept for VERSIONS_KEEP_SECONDS after an object's last write, then pruned)."""

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis

from stream_backend.errors import InvalidRequest
from stream_backend.mirror.versions import (
    DELETED,
    HARD_DELETED,
    LIVE,
    Applied,
    RedisVersions,
    SQLiteVersions,
    Wanted,
    is_stale,
    parse_version,
    version_from_query,
)
from stream_backend.store import redis as redis_store


@pytest.mark.parametrize(
    "older, newer",
    [
        (0, 1),
        (9, 10),  # as numbers, not as text
        (2**62, 2**63 - 1),
        ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00.000000001Z"),
        ("2026-11-28T10:00:00.9Z", "2026-11-28T10:00:01Z"),
        ("2026-11-28T11:59:00+02:00", "2026-11-28T10:00:00Z"),  # instants, whatever the offset
        ("2026-11-28T23:59:59Z", "2026-11-28T23:59:60Z"),  # a leap second
        ("0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59"),
        (datetime(2026, 11, 28, 10, tzinfo=UTC), "2026-11-28T10:00:00.000001Z"),
    ],
)
def test_versions_compare_in_their_own_order(older, newer):
    assert parse_version(older) < parse_version(newer)


@pytest.mark.parametrize(
    "same, other",
    [
        ("2026-11-28T10:00:00Z", "2026-11-28t10:00:00z"),
        ("2026-11-28T10:00:00.5Z", "2026-11-28T10:00:00.500000000Z"),
        ("2026-11-28T12:00:00+02:00", "2026-11-28T10:00:00Z"),
        (datetime(2026, 11, 28, 12, tzinfo=timezone(timedelta(hours=2))), "2026-11-28T10:00:00Z"),
        ("2026-11-28T23:59:60Z", "2026-11-29T00:00:00Z"),
    ],
)
def test_one_instant_is_one_version(same, other):
    assert parse_version(same) == parse_version(other)


@pytest.mark.parametrize("whole, integer", [(3.0, 3), (1073741824.0, 1073741824), (1e3, 1000), (0.0, 0)])
def test_a_whole_number_with_a_fraction_is_the_integer_json_schema_counts_it_as(whole, integer):
    assert parse_version(whole) == parse_version(integer)


@pytest.mark.parametrize(
    "value",
    [-1, 2**63, True, 1.5, -1.0, 1e19, 2.0**53 + 2, None, [], "", "3", "2026-11-28", "2026-11-28 10:00:00Z",
     "2026-11-28T10:00:00",
     "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T10:00:00+24:00",
     "0000-01-01T00:00:00Z", "2026-11-28T10:00:00.1234567891Z", datetime(2026, 11, 28)],
)  # fmt: skip
def test_what_is_not_a_version_is_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as refused:
        parse_version(value, "message.version")

    assert refused.value.field == "message.version"


@pytest.mark.parametrize(
    "query, version", [("3", 3), ("0", 0), ("2026-11-28T10:00:00+01:00", "2026-11-28T10:00:00+01:00")]
)
def test_a_query_carries_digits_or_a_timestamp(query, version):
    assert version_from_query(query) == version


def test_a_query_timestamp_whose_plus_became_a_space_says_how_to_write_it():
    with pytest.raises(InvalidRequest, match="%2B"):
        version_from_query("2026-11-28T10:00:00 01:00")


def want(value, deleted=LIVE):
    return Wanted(parse_version(value), deleted)


def applied(value, deleted=LIVE):
    return Applied(parse_version(value), deleted)


@pytest.mark.parametrize(
    "stored, wanted, stale",
    [
        (None, want(1), False),
        (applied(2), want(1), True),
        (applied(2), want(3), False),
        (applied(2), want(2), False),  # the same version again: applied (idempotent, repairs edits)
        (applied(2, DELETED), want(2), True),  # as new as a delete: a tombstone
        (applied(2, DELETED), want(2, HARD_DELETED), False),  # a delete again: applied
        (applied(2, HARD_DELETED), want(3), False),  # newer: brought back
        (applied(2, DELETED), want(1, DELETED), True),
    ],
)
def test_the_stale_rule(stored, wanted, stale):
    assert is_stale(stored, wanted, "message:m-1") is stale


def test_kinds_do_not_compare():
    with pytest.raises(InvalidRequest, match="one kind an object"):
        is_stale(applied(2), want("2026-11-28T10:00:00Z"), "message:m-1")


# --- The store ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        return RedisVersions(redis_store.connect(url, 1.0), keep_seconds=3600)
    return SQLiteVersions(str(tmp_path / "store.sqlite3"), keep_seconds=3600)


def test_the_store_keeps_the_newest_version_and_never_moves_it_back(store):
    store.record({"message:a": applied(5), "message:b": applied(5, DELETED)})
    store.record({"message:a": applied(4), "message:b": applied(5)})  # older; as new as a delete
    store.record({"message:c": applied(1)})
    store.record({"message:c": applied(2, HARD_DELETED)})

    assert store.newest(["message:a", "message:b", "message:c", "message:d"]) == {
        "message:a": applied(5),
        "message:b": applied(5, DELETED),
        "message:c": applied(2, HARD_DELETED),
    }


def test_the_store_learns_distinct_channel_ids(store):
    store.remember_distinct("distinct:messaging:abc", "!members-xyz")

    assert store.distinct_id("distinct:messaging:abc") == "!members-xyz"
    assert store.distinct_id("distinct:messaging:other") is None


def test_sqlite_prunes_versions_not_written_for_keep_seconds(tmp_path):
    store = SQLiteVersions(str(tmp_path / "store.sqlite3"), keep_seconds=0.5)
    store.record({"message:old": applied(1)})
    time.sleep(0.6)
    for number in range(99):  # pruned on the write path, every hundredth write
        store.record({f"message:{number}": applied(1)})

    assert "message:old" not in store.newest(["message:old"])
    assert store.newest(["message:98"]) == {"message:98": applied(1)}


def test_redis_versions_expire_keep_seconds_after_their_last_write(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    store = RedisVersions(redis_store.connect(redis_url, 1.0), keep_seconds=3600)
    store.record({"message:a": applied(1)})

    ttl = store.redis.pttl("stream-version:message:a")

    assert 3590 * 1000 < ttl <= 3600 * 1000
