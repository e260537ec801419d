"""Per-object locks (store/locks.py), on one SQLite file and on a real Redis: taken all or none,
never interleaving two processes' read-compare-write, unrelated objects never waiting, kept
while held past a lease, and a crashed holder's locks expiring."""

import multiprocessing
import os
import signal
import sqlite3
import time

import pytest
import redis

from stream_backend.errors import ObjectBusy
from stream_backend.store import redis as redis_store
from stream_backend.store.locks import ObjectLocks, RedisLeases, SQLiteLeases

LEASE = 0.6  # short, so that an expiry is quick to see


def leases_at(location):
    if location.startswith("redis://"):
        return RedisLeases(redis_store.connect(location, 1.0))
    return SQLiteLeases(location)


@pytest.fixture(params=["sqlite", "redis"])
def location(request, tmp_path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        return url
    return str(tmp_path / "store.sqlite3")


def locks(location, wait=0.1, lease=LEASE):
    return ObjectLocks(leases_at(location), wait_seconds=wait, lease_seconds=lease)


def test_a_held_object_is_busy_for_another_holder(location):
    first, second = locks(location), locks(location)

    with first.holding(["message:m-1"]), pytest.raises(ObjectBusy) as busy, second.holding(["message:m-1"]):
        pass

    assert busy.value.objects == ["message:m-1"]


def test_locks_are_taken_all_or_none(location):
    first, second = locks(location), locks(location)

    with first.holding(["user:b"]):
        with pytest.raises(ObjectBusy) as busy, second.holding(["user:a", "user:b", "user:c"]):
            pass
        with first.holding(["user:a"]):  # `user:a` was not left taken by the refused request
            pass

    assert busy.value.objects == ["user:b"]


def test_unrelated_objects_never_wait(location):
    first, second = locks(location), locks(location, wait=0)

    with first.holding(["channel:messaging:a"]):
        started = time.monotonic()
        with second.holding(["channel:messaging:b"]):
            pass

    assert time.monotonic() - started < 0.5


def test_a_lock_given_back_is_free_at_once(location):
    first, second = locks(location), locks(location, wait=0)

    with first.holding(["message:m-1"]):
        pass
    with second.holding(["message:m-1"]):
        pass


def test_a_lock_held_longer_than_its_lease_is_kept(location):
    first, second = locks(location), locks(location)

    with first.holding(["message:m-1"]):
        time.sleep(LEASE * 2.5)  # the keeper extends it meanwhile
        with pytest.raises(ObjectBusy), second.holding(["message:m-1"]):
            pass


def hold_forever(location, ready):
    with locks(location).holding(["message:m-1"]):
        ready.set()
        time.sleep(60)


def test_a_crashed_holders_lock_expires(location):
    with locks(location).holding(["message:m-1"]):  # the store made before another process opens it
        pass
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=hold_forever, args=(location, ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()

    with pytest.raises(ObjectBusy), locks(location, wait=0).holding(["message:m-1"]):  # leased just after
        pass
    with locks(location, wait=LEASE * 3).holding(["message:m-1"]):
        pass


def increment(location, path, times, start):
    """Read the counter, wait, write it plus one: under the lock, no increment is lost."""
    object_locks = locks(location, wait=20)
    start.wait()
    for _ in range(times):
        with object_locks.holding(["message:counter"]):
            with sqlite3.connect(path) as db:
                (value,) = db.execute("SELECT value FROM counter").fetchone()
            time.sleep(0.002)
            with sqlite3.connect(path) as db:
                db.execute("UPDATE counter SET value = ?", (value + 1,))


def test_two_processes_never_interleave_their_read_compare_write(location, tmp_path):
    counter = str(tmp_path / "counter.sqlite3")
    with sqlite3.connect(counter) as db:
        db.execute("CREATE TABLE counter (value INTEGER)")
        db.execute("INSERT INTO counter VALUES (0)")
    # The store made first: store/sqlite.py's marker beside a new file is written by its first
    # opener, and three processes opening a file that does not exist yet race for it.
    with locks(location).holding(["message:counter"]):
        pass
    start = multiprocessing.Event()
    workers = [multiprocessing.Process(target=increment, args=(location, counter, 15, start)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)

    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    with sqlite3.connect(counter) as db:
        assert db.execute("SELECT value FROM counter").fetchone() == (45,)
