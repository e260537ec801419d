"""Delivery to the primary system, against a real local server standing in for it: the bytes
Stream signed, the Standard Webhooks headers, the schedule of retries, and a worker that
delivers in threads of its own."""

import json
import time
import tracemalloc
from email.utils import formatdate

import pytest
from standardwebhooks import Webhook

from stream_backend.handover.delivery import DEFAULT_WAITS, Deliverer, DeliveryWorker, Schedule, retry_after_seconds
from stream_backend.handover.queue import Incoming, SQLiteQueue
from stream_backend.stream.client import http_session

from support.examples import PRIMARY_SYNC_SECRET


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def queue(tmp_path, clock):
    return SQLiteQueue(str(tmp_path / "webhooks.sqlite3"), 1000, clock)


def deliverer(queue, primary, clock, waits=(1, 2), timeout=2.0, signer=None):
    return Deliverer(queue, http_session(4), primary.url, timeout, Schedule(waits, jitter=0), signer, clock)


BODY = json.dumps(
    {"type": "message.new", "cid": "messaging:f\u00eate", "message": {"id": "m-1"}}, indent=3, ensure_ascii=False
).encode()  # bytes no re-encoding would give back


def accept(queue, body=BODY, webhook_id="wh-1", lane="messaging:fun", created_at=1.0):
    queue.accept(Incoming(body, f"digest-{webhook_id}", webhook_id, lane, created_at, "message.new", "m-1"))


def attempt(deliverer, queue):
    (lease,) = queue.lease(1, 60)
    return deliverer.attempt(lease)


def test_the_signed_body_reaches_the_primary_byte_for_byte_under_its_webhook_id(queue, primary, clock):
    accept(queue)

    assert attempt(deliverer(queue, primary, clock), queue) == "delivered"
    (received,) = primary.accepted()
    assert received["body"] == BODY
    assert (received["webhook_id"], received["content_type"]) == ("wh-1", "application/json")
    assert queue.status().pending == 0


def test_the_delivery_is_signed_so_the_standardwebhooks_library_verifies_it(queue, primary, clock):
    accept(queue)

    attempt(deliverer(queue, primary, clock, signer=Webhook(PRIMARY_SYNC_SECRET)), queue)

    (received,) = primary.accepted()
    headers = {name.lower(): value for name, value in received["headers"].items()}
    assert Webhook(PRIMARY_SYNC_SECRET).verify(received["body"], headers) == json.loads(BODY)
    assert headers["webhook-id"] == "wh-1"


def test_without_a_signer_nothing_is_signed(queue, primary, clock):
    accept(queue)

    attempt(deliverer(queue, primary, clock), queue)

    assert "webhook-signature" not in {name.lower() for name in primary.accepted()[0]["headers"]}


@pytest.mark.parametrize("status", [500, 503, 404, 302, 410])
def test_anything_but_a_2xx_is_tried_again_on_the_schedule_under_the_same_id(queue, primary, clock, status):
    accept(queue)
    primary.status = status
    sender = deliverer(queue, primary, clock, waits=(30,))

    assert attempt(sender, queue) == "retrying"
    assert queue.lease(1, 60) == []
    clock.now += 30
    primary.status = 200
    assert attempt(sender, queue) == "delivered"
    assert [entry["webhook_id"] for entry in primary.received] == ["wh-1", "wh-1"]


def test_after_its_schedule_an_event_is_kept_as_failed_and_its_lane_goes_on(queue, primary, clock):
    accept(queue, webhook_id="wh-1", created_at=1)
    accept(queue, body=b'{"type": "message.new", "n": 2}', webhook_id="wh-2", created_at=2)
    primary.status = 500
    sender = deliverer(queue, primary, clock, waits=(1,))

    assert attempt(sender, queue) == "retrying"
    clock.now += 1
    assert attempt(sender, queue) == "failed"
    primary.status = 200
    assert attempt(sender, queue) == "delivered"
    (failed,) = queue.events("failed")
    assert (failed.id, failed.attempts, failed.last_error) == ("wh-1", 2, "the primary system answered HTTP 500")


@pytest.mark.parametrize("retry_after", ["120", "119.4", "an HTTP date 120 s ahead"])
def test_retry_after_on_a_429_or_503_is_honoured(queue, primary, clock, retry_after):
    accept(queue)
    if retry_after.startswith("an HTTP date"):
        retry_after = formatdate(clock.now + 120, usegmt=True)
    primary.status, primary.answer_headers = 429, {"Retry-After": retry_after}
    sender = deliverer(queue, primary, clock, waits=(1,))

    attempt(sender, queue)
    clock.now += 100
    assert queue.lease(1, 60) == []
    clock.now += 21
    assert len(queue.lease(1, 60)) == 1


def test_a_primary_slower_than_the_timeout_is_a_failed_attempt(queue, primary, clock):
    accept(queue)
    primary.delay = 1.5

    started = time.monotonic()
    assert attempt(deliverer(queue, primary, clock, timeout=0.5), queue) == "retrying"
    assert time.monotonic() - started < 1.4
    assert "did not answer within 0.5 s" in queue.events()[0].last_error


def test_an_unreachable_primary_is_a_failed_attempt(queue, clock, primary):
    accept(queue)
    sender = Deliverer(queue, http_session(1), "http://127.0.0.1:9/events", 1, Schedule((1,), 0), None, clock)

    assert attempt(sender, queue) == "retrying"
    assert "could not be reached" in queue.events()[0].last_error


def test_a_long_answer_from_the_primary_is_not_read(queue, primary, clock):
    accept(queue)
    primary.answer_bytes = 2 + 1024 * 2**16  # 64 MB

    tracemalloc.start()
    try:
        outcome = attempt(deliverer(queue, primary, clock), queue)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert outcome == "delivered" and peak < 2 * 2**20


def test_the_default_schedule_outlasts_a_day_even_jittered_down():
    schedule = Schedule()
    lowest = Schedule(jitter=0.1)
    lowest.rng.uniform = lambda low, high: low

    assert schedule.attempts == len(DEFAULT_WAITS) + 1
    assert sum(lowest.wait_after(n) for n in range(1, schedule.attempts)) >= 24 * 3600
    assert schedule.wait_after(schedule.attempts) is None


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("30", 30),
        ("0.5", 0.5),
        ("-4", 0),
        ("soon", None),
        ("", None),
        ("nan", None),
        (formatdate(1_000_060, usegmt=True), 60),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds):
    assert retry_after_seconds(value, now=1_000_000) == seconds


# --- The worker --------------------------------------------------------------------------------


def test_the_worker_delivers_lanes_at_once_and_each_lane_in_order(tmp_path, primary):
    queue = SQLiteQueue(str(tmp_path / "webhooks.sqlite3"), 1000)
    primary.delay = 0.2
    for n in range(6):
        accept(queue, body=b'{"n": %d}' % n, webhook_id=f"wh-{n}", lane=f"lane-{n % 3}", created_at=n)
    worker = DeliveryWorker(Deliverer(queue, http_session(3), primary.url, 2, Schedule((1,), 0)), 3, lambda: None)

    started = time.monotonic()
    worker.start()
    try:
        received = primary.wait_for(6)
    finally:
        worker.stop()

    assert time.monotonic() - started < 1.0  # three lanes at a time: two rounds of 0.2 s, not six
    for lane in range(3):
        assert [entry["webhook_id"] for entry in received if entry["event"]["n"] % 3 == lane] == [
            f"wh-{lane}",
            f"wh-{lane + 3}",
        ]


def test_the_worker_renews_the_lease_of_a_long_attempt(tmp_path, primary):
    queue = SQLiteQueue(str(tmp_path / "webhooks.sqlite3"), 1000)
    accept(queue)
    primary.delay = 1.5
    worker = DeliveryWorker(
        Deliverer(queue, http_session(1), primary.url, 3, Schedule((1,), 0)),
        1,
        lambda: None,
        poll_seconds=0.05,
        lease_seconds=0.6,
    )
    worker.start()
    try:
        time.sleep(1.0)
        assert queue.lease(1, 60) == []  # past the first lease's end, still held
        primary.wait_for(1)
    finally:
        worker.stop()

    assert len(primary.received) == 1
