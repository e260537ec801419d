"""The delivery queue, on SQLite and on a real Redis: events accepted once, leased one lane at a
time in each lane's order, kept until delivered or failed, and seen, retried and replayed."""

import multiprocessing
import os
import sqlite3
import uuid

import pytest

from stream_backend.errors import QueueFull, StoreUnavailable
from stream_backend.handover.queue import Incoming, SQLiteQueue
from stream_backend.handover.queue_redis import RedisQueue


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request, tmp_path, clock):
    """A queue factory: every queue it makes (a worker, another host) shares one store."""
    if request.param == "sqlite":
        path = str(tmp_path / "webhooks.sqlite3")
        return lambda max_pending=1000: SQLiteQueue(path, max_pending, clock)
    url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex}:"
    return lambda max_pending=1000: RedisQueue(url, max_pending, clock, prefix=prefix)


@pytest.fixture
def queue(make_queue):
    return make_queue()


def incoming(
    n: int,
    lane: str = "messaging:fun",
    created_at: float | None = None,
    webhook_id: str | None = "",
    body: bytes | None = None,
) -> Incoming:
    body = body if body is not None else b'{"type": "message.new", "n": %d}' % n
    return Incoming(
        body=body,
        digest=f"digest-{body.hex()}",
        webhook_id=f"wh-{n}" if webhook_id == "" else webhook_id,
        lane=lane,
        created_at=float(n) if created_at is None else created_at,
        type="message.new",
        message_id=f"m-{n}",
    )


def lease_ids(queue, limit=10):
    return sorted(lease.event.id for lease in queue.lease(limit, 60))


# --- Accepting ------------------------------------------------------------------------------


def test_an_event_is_accepted_once_and_its_copy_is_a_duplicate(queue):
    assert queue.accept(incoming(1)) == (True, "wh-1")
    assert queue.accept(incoming(1)) == (False, "wh-1")
    assert queue.status().pending == 1


def test_a_webhook_id_taken_by_another_body_gets_an_id_of_its_own(queue):
    queue.accept(incoming(1, webhook_id="wh-shared"))
    replay = incoming(2, webhook_id="wh-shared")

    accepted, event_id = queue.accept(replay)

    assert accepted and event_id == f"wh-shared.sha256-{replay.digest}"


def test_an_event_without_a_webhook_id_is_named_by_its_digest(queue):
    event = incoming(1, webhook_id=None)

    assert queue.accept(event) == (True, f"sha256-{event.digest}")


def test_past_the_maximum_pending_the_queue_is_full(make_queue):
    queue = make_queue(max_pending=2)
    queue.accept(incoming(1))
    queue.accept(incoming(2, lane="messaging:other"))

    with pytest.raises(QueueFull):
        queue.accept(incoming(3))
    assert queue.accept(incoming(1)) == (False, "wh-1")  # a duplicate is still answered


# --- Leasing, in order per lane -------------------------------------------------------------


def test_each_lane_hands_out_its_oldest_event_one_at_a_time(queue):
    queue.accept(incoming(2))
    queue.accept(incoming(1))  # created first, arrived second
    queue.accept(incoming(3, lane="messaging:other"))

    first = queue.lease(10, 60)

    assert sorted(lease.event.id for lease in first) == ["wh-1", "wh-3"]
    assert queue.lease(10, 60) == []  # both lanes are in flight


def test_a_delivered_head_lets_its_lane_go_on_in_order(queue):
    for n in (1, 2, 3):
        queue.accept(incoming(n))
    order = []
    while leases := queue.lease(10, 60):
        (lease,) = leases
        order.append(lease.event.id)
        assert queue.delivered(lease)

    assert order == ["wh-1", "wh-2", "wh-3"]
    assert queue.status().pending == 0


def test_a_failing_head_holds_back_only_its_own_lane(queue, clock):
    queue.accept(incoming(1))
    queue.accept(incoming(2))
    queue.accept(incoming(3, lane="messaging:other"))
    for lease in queue.lease(10, 60):
        if lease.event.id == "wh-1":
            assert queue.retry_later(lease, clock.now + 30, "HTTP 500")
        else:
            assert queue.delivered(lease)

    assert lease_ids(queue) == []  # wh-2 waits behind wh-1
    clock.now += 30
    (lease,) = queue.lease(10, 60)
    assert (lease.event.id, lease.event.attempts, lease.event.last_error) == ("wh-1", 1, "HTTP 500")


def test_a_head_given_up_on_is_kept_as_failed_and_its_lane_moves_on(queue):
    queue.accept(incoming(1))
    queue.accept(incoming(2))
    (lease,) = queue.lease(10, 60)

    assert queue.give_up(lease, "HTTP 500")
    assert lease_ids(queue) == ["wh-2"]
    (failed,) = queue.events("failed")
    assert (failed.id, failed.state, failed.last_error) == ("wh-1", "failed", "HTTP 500")


def test_a_lease_not_given_back_expires_and_the_event_is_leased_again(make_queue, clock):
    host_1, host_2 = make_queue(), make_queue()
    host_1.accept(incoming(1))
    (dead,) = host_1.lease(10, 60)  # then host 1 is killed

    assert host_2.lease(10, 60) == []
    clock.now += 60
    (again,) = host_2.lease(10, 60)
    assert again.event.id == dead.event.id and again.token != dead.token
    assert not host_1.delivered(dead)  # the old holder's answer changes nothing
    assert host_2.delivered(again)


def test_an_extended_lease_keeps_its_lane(queue, clock):
    queue.accept(incoming(1))
    (lease,) = queue.lease(10, 60)
    clock.now += 50

    assert queue.extend(lease, 60)
    clock.now += 50
    assert queue.lease(10, 60) == []
    assert queue.delivered(lease)


def test_an_event_arriving_late_is_delivered_before_later_ones_still_pending(queue):
    queue.accept(incoming(5))
    queue.accept(incoming(7))
    (lease,) = queue.lease(10, 60)
    queue.delivered(lease)
    queue.accept(incoming(6))  # created before wh-7, arrived after

    assert lease_ids(queue) == ["wh-6"]


# --- Seeing, retrying, replaying, pruning ---------------------------------------------------


def test_status_counts_pending_in_flight_failed_delivered_and_the_oldest_age(queue, clock):
    queue.accept(incoming(1))
    clock.now += 10
    queue.accept(incoming(2, lane="messaging:b"))
    queue.accept(incoming(3, lane="messaging:c"))
    leases = {lease.event.id: lease for lease in queue.lease(10, 60)}
    queue.delivered(leases["wh-2"])
    queue.give_up(leases["wh-3"], "HTTP 410")
    clock.now += 5

    status = queue.status()

    assert (status.pending, status.in_flight, status.failed, status.delivered_last_hour) == (1, 1, 1, 1)
    assert status.oldest_pending_age == 15


def test_events_are_listed_by_state_and_lane(queue):
    queue.accept(incoming(1))
    queue.accept(incoming(2, lane="messaging:b"))

    assert [event.id for event in queue.events()] == ["wh-1", "wh-2"]
    assert [event.id for event in queue.events("pending", "messaging:b")] == ["wh-2"]
    assert queue.events("failed") == []
    assert queue.events()[0].body == b'{"type": "message.new", "n": 1}'


def test_a_retried_failed_event_is_pending_again_from_its_first_attempt(queue):
    queue.accept(incoming(1))
    (lease,) = queue.lease(10, 60)
    queue.give_up(lease, "HTTP 500")

    assert queue.retry_failed("wh-1") == 1
    (again,) = queue.lease(10, 60)
    assert (again.event.id, again.event.attempts) == ("wh-1", 0)
    assert queue.retry_failed("wh-1") == 0


def test_every_failed_event_can_be_retried_at_once(queue):
    for n in (1, 2):
        queue.accept(incoming(n, lane=f"lane-{n}"))
    for lease in queue.lease(10, 60):
        queue.give_up(lease, "HTTP 500")

    assert queue.retry_failed() == 2
    assert queue.status().pending == 2


def test_a_replay_sends_again_what_was_delivered_since_a_time(queue, clock):
    queue.accept(incoming(1))
    queue.delivered(queue.lease(10, 60)[0])
    clock.now += 100
    queue.accept(incoming(2))
    queue.delivered(queue.lease(10, 60)[0])

    assert queue.replay(since=clock.now - 50) == 1
    assert lease_ids(queue) == ["wh-2"]


def test_delivered_events_are_pruned_after_the_window_and_then_accepted_anew(queue, clock):
    queue.accept(incoming(1))
    queue.delivered(queue.lease(10, 60)[0])
    clock.now += 100

    assert queue.prune(delivered_before=clock.now - 200, failed_before=clock.now) == 0
    assert queue.prune(delivered_before=clock.now - 50, failed_before=clock.now) == 1
    assert queue.events() == []
    assert queue.accept(incoming(1)) == (True, "wh-1")  # a replay this late is stale: the webhook says so


def test_failed_events_are_kept_until_their_own_window(queue, clock):
    queue.accept(incoming(1))
    queue.give_up(queue.lease(10, 60)[0], "HTTP 500")

    assert queue.prune(delivered_before=clock.now + 1, failed_before=clock.now - 1) == 0
    assert queue.prune(delivered_before=clock.now + 1, failed_before=clock.now + 1) == 1


# --- The SQLite file --------------------------------------------------------------------------


def test_a_deleted_sqlite_file_is_unavailable_not_replaced_and_heals_when_restored(tmp_path, clock):
    path = tmp_path / "webhooks.sqlite3"
    queue = SQLiteQueue(str(path), 1000, clock)
    queue.accept(incoming(1))
    backup = tmp_path / "backup.sqlite3"
    sqlite3.connect(path).backup(sqlite3.connect(backup))
    os.remove(path)

    with pytest.raises(StoreUnavailable, match="is gone"):
        queue.accept(incoming(2))
    with pytest.raises(StoreUnavailable, match="is gone"):
        SQLiteQueue(str(path), 1000, clock).status()  # nor by the next process
    assert not path.exists()
    os.replace(backup, path)
    assert queue.accept(incoming(1)) == (False, "wh-1")  # it remembers


def test_a_sqlite_file_that_is_not_the_markers_store_is_unavailable(tmp_path, clock):
    path = tmp_path / "webhooks.sqlite3"
    SQLiteQueue(str(path), 1000, clock).accept(incoming(1))
    os.remove(path)
    sqlite3.connect(path).close()  # an empty file where the store was

    with pytest.raises(StoreUnavailable, match="is not the one"):
        SQLiteQueue(str(path), 1000, clock).accept(incoming(2))


def test_removing_the_marker_starts_afresh(tmp_path, clock):
    path = tmp_path / "webhooks.sqlite3"
    SQLiteQueue(str(path), 1000, clock).accept(incoming(1))
    os.remove(path)
    os.remove(f"{path}.id")

    assert SQLiteQueue(str(path), 1000, clock).accept(incoming(1)) == (True, "wh-1")


def test_a_file_that_cannot_be_created_is_unavailable(tmp_path, clock):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")

    with pytest.raises(StoreUnavailable):
        SQLiteQueue(str(blocked / "webhooks.sqlite3"), 1000, clock).accept(incoming(1))


def test_a_redis_that_lost_its_data_is_noticed_and_said_loudly(redis_url, clock, caplog):
    prefix = f"test-{uuid.uuid4().hex}:"
    queue = RedisQueue(redis_url, 1000, clock, prefix=prefix)
    queue.accept(incoming(1))
    for key in queue.redis.scan_iter(f"{prefix}*"):  # as a restart without persistence would
        queue.redis.delete(key)

    assert queue.accept(incoming(2)) == (True, "wh-2")
    assert any("Redis lost the delivery queue's data" in record.getMessage() for record in caplog.records)


def _open_when_told(path, start, results):
    start.wait()
    try:
        SQLiteQueue(path, 100).status()
        results.put("ok")
    except StoreUnavailable as error:
        results.put(str(error))


def test_processes_making_a_new_sqlite_store_at_once_all_open_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(10):
        start, results = context.Barrier(6), context.Queue()
        path = str(tmp_path / f"store-{trial}" / "webhooks.sqlite3")
        openers = [context.Process(target=_open_when_told, args=(path, start, results)) for _ in range(6)]
        for opener in openers:
            opener.start()
        answers = [results.get(timeout=30) for _ in openers]
        for opener in openers:
            opener.join()

        assert answers == ["ok"] * 6
