"""The webhook's hand-over, through the app: an event is stored durably and answered at once,
whatever the primary system does, then delivered by the process's own worker to a real local
primary, once per body, in order per channel; echoes, stale events and other types are
decided at once; a store that fails costs the webhook only."""

import gzip
import hashlib
import json
import multiprocessing
import os
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from app import create_app
from stream_backend.stream.client import http_session

from live import free_port
from support.examples import MESSAGE_BODY, origin_mark, sign, webhook_event
from support.workers import deliver_copies


@pytest.fixture
def environ(environ, primary):
    return {
        **environ,
        "PRIMARY_SYNC_URL": primary.url,
        "PRIMARY_SYNC_TIMEOUT": "1",
        "PRIMARY_SYNC_RETRY_SCHEDULE": "0.2,0.2,0.2",
    }


@pytest.fixture
def apps():
    """Apps built by a test, their deliveries stopped when it ends."""
    built = []

    def build(environ):
        built.append(create_app(environ))
        return built[-1]

    yield build
    for app in built:
        app.extensions["handover"].close()


@pytest.fixture
def app(apps, environ):
    return apps(environ)


@pytest.fixture
def fresh_redis_url(redis_url):
    """A Redis database of its own for the test, emptied first (the queue's keys are global)."""
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return url


def deliver(client, body, webhook_id="wh-1", attempt=1, compress=False):
    headers = {"X-Signature": sign(body), "X-Webhook-Id": webhook_id, "X-Webhook-Attempt": str(attempt)}
    return client.post("/stream-incoming-wh", data=gzip.compress(body) if compress else body, headers=headers)


def outcome(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


def as_written_by_hand(body):
    """The same event in bytes no JSON re-encoding would give back: indented, not ASCII."""
    return json.dumps(json.loads(body) | {"cid": "messaging:f\u00eate \u2603"}, indent=3, ensure_ascii=False).encode()


# --- Accepted at once, delivered after -------------------------------------------------------


def test_an_event_is_stored_answered_at_once_and_reaches_the_primary_as_stream_sent_it(client, primary):
    body = as_written_by_hand(webhook_event("message.new"))

    response = deliver(client, body, webhook_id="wh-7")

    assert response.get_json() == {"received": "message.new", "outcome": "queued"}
    (received,) = primary.wait_for(1)
    assert (received["webhook_id"], received["body"]) == ("wh-7", body)


def test_a_gzip_delivery_reaches_the_primary_inflated(client, primary):
    body = as_written_by_hand(webhook_event("message.updated"))

    assert outcome(deliver(client, body, compress=True)) == "queued"
    assert primary.wait_for(1)[0]["body"] == body


@pytest.mark.parametrize("status", [500, 503, 404, 302])
def test_a_failing_primary_does_not_fail_the_webhook_and_gets_the_event_when_it_is_back(client, primary, status):
    primary.status = status
    started = time.monotonic()

    response = deliver(client, webhook_event())
    answered = time.monotonic() - started
    time.sleep(0.1)
    primary.status = 200

    assert outcome(response) == "queued" and answered < 0.5
    assert [entry["webhook_id"] for entry in primary.wait_for(1)] == ["wh-1"]
    assert [entry["status"] for entry in primary.received][-1] == 200


def test_a_slow_primary_does_not_slow_the_webhook(client, primary):
    primary.delay = 0.8

    started = time.monotonic()
    answers = [
        outcome(deliver(client, webhook_event(message={"id": f"m-{n}"}), webhook_id=f"wh-{n}")) for n in range(5)
    ]

    assert answers == ["queued"] * 5
    assert time.monotonic() - started < 0.5 * 5 * 0.8
    assert len(primary.wait_for(5)) == 5


def test_an_unreachable_primary_does_not_fail_the_webhook(apps, environ):
    client = apps({**environ, "PRIMARY_SYNC_URL": f"http://127.0.0.1:{free_port()}/x"}).test_client()

    assert outcome(deliver(client, webhook_event())) == "queued"


def test_one_channels_events_reach_the_primary_in_the_order_stream_created_them(client, primary):
    created = datetime.now(UTC)
    bodies = [
        webhook_event(message={"id": f"m-{n}"}, created_at=(created + timedelta(seconds=n)).isoformat())
        for n in range(4)
    ]
    primary.status = 500  # the first one waits for its retry; the others wait behind it
    for n in (0, 2, 1, 3):  # Stream's deliveries may arrive out of order
        deliver(client, bodies[n], webhook_id=f"wh-{n}")
    time.sleep(0.1)
    primary.status = 200

    delivered = [entry["event"]["message"]["id"] for entry in primary.wait_for(4)]
    assert delivered == ["m-0", "m-1", "m-2", "m-3"]


def test_a_retry_of_a_stored_event_is_a_duplicate_and_reaches_the_primary_once(client, primary):
    body = webhook_event()

    answers = [outcome(deliver(client, body, attempt=n)) for n in (1, 2, 3)]

    assert answers == ["queued", "duplicate", "duplicate"]
    primary.wait_for(1)
    time.sleep(0.3)
    assert len(primary.received) == 1


def test_an_event_without_a_webhook_id_is_delivered_under_its_body_digest(client, primary):
    body = webhook_event()
    headers = {"X-Signature": sign(body)}

    first = client.post("/stream-incoming-wh", data=body, headers=headers)
    second = client.post("/stream-incoming-wh", data=body, headers=headers)

    assert [outcome(first), outcome(second)] == ["queued", "duplicate"]
    assert [entry["webhook_id"] for entry in primary.wait_for(1)] == [f"sha256-{hashlib.sha256(body).hexdigest()}"]


def test_unknown_event_types_are_acknowledged_not_stored(client, primary):
    assert outcome(deliver(client, webhook_event("something.new.from.stream"))) == "ignored"
    time.sleep(0.2)
    assert primary.received == []


@pytest.mark.parametrize(
    "event_type",
    [
        "message.new",
        "message.updated",
        "message.deleted",
        "message.undeleted",
        "reaction.new",
        "reaction.updated",
        "reaction.deleted",
    ],
)
def test_message_and_reaction_events_are_handed_over(client, event_type):
    assert outcome(deliver(client, webhook_event(event_type))) == "queued"


def test_without_primary_sync_url_each_event_is_logged_on_one_line(apps, environ, primary, caplog):
    client = apps({**environ, "PRIMARY_SYNC_URL": ""}).test_client()

    response = deliver(client, webhook_event("message.new"), webhook_id="wh-9")

    assert outcome(response) == "logged"
    messages = [record.getMessage() for record in caplog.records]
    lines = [json.loads(message.split(" ", 1)[1]) for message in messages if message.startswith("webhook ")]
    assert lines == [
        {
            "outcome": "logged",
            "type": "message.new",
            "cid": "messaging:fun",
            "message_id": "m-1",
            "webhook_id": "wh-9",
            "attempt": "1",
        }
    ]
    assert primary.received == []


# --- Replays and stale events --------------------------------------------------------------


def test_a_signed_body_replayed_under_another_id_or_none_is_a_duplicate(client, primary):
    body = webhook_event("message.updated")
    deliver(client, body, webhook_id="wh-original")

    under_another_id = deliver(client, body, webhook_id="wh-replayed")
    without_an_id = client.post("/stream-incoming-wh", data=body, headers={"X-Signature": sign(body)})
    gzipped = deliver(client, body, webhook_id="wh-gzipped", compress=True)

    assert [outcome(answer) for answer in (under_another_id, without_an_id, gzipped)] == ["duplicate"] * 3
    assert [entry["webhook_id"] for entry in primary.wait_for(1)] == ["wh-original"]


def test_replays_are_refused_across_hosts_sharing_redis(apps, environ, primary, fresh_redis_url):
    body = webhook_event(message={"id": f"m-{uuid.uuid4()}"})
    host_a, host_b = (apps({**environ, "REDIS_URL": fresh_redis_url}).test_client() for _ in range(2))

    first = deliver(host_a, body, webhook_id="wh-a")
    replay = deliver(host_b, body, webhook_id="wh-b", compress=True)

    assert [outcome(first), outcome(replay)] == ["queued", "duplicate"]
    assert [entry["webhook_id"] for entry in primary.wait_for(1)] == ["wh-a"]


def test_an_id_borrowed_by_a_replay_is_not_reused_for_the_real_event(client, primary):
    seen, later = webhook_event(message={"id": "m-seen"}), webhook_event(message={"id": "m-later"})

    replay = deliver(client, seen, webhook_id="wh-later")  # an attacker saw wh-later coming
    real = deliver(client, later, webhook_id="wh-later")

    assert [outcome(replay), outcome(real)] == ["queued", "queued"]
    ids = sorted(entry["webhook_id"] for entry in primary.wait_for(2))
    assert ids == ["wh-later", f"wh-later.sha256-{hashlib.sha256(later).hexdigest()}"]


@pytest.mark.parametrize(
    "age, expected", [(3600 + 60, "stale"), (24 * 3600, "stale"), (3600 - 60, "queued"), (0, "queued")]
)
def test_events_older_than_an_hour_are_acknowledged_not_stored(client, age, expected):
    created = datetime.now(UTC) - timedelta(seconds=age)

    assert outcome(deliver(client, webhook_event(created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))) == expected


@pytest.mark.parametrize("created_at", [None, "yesterday", 12])
def test_an_unreadable_created_at_is_not_aged_but_still_deduplicated(client, created_at):
    body = webhook_event(created_at=created_at)

    assert [outcome(deliver(client, body, webhook_id=f"wh-{n}")) for n in (1, 2)] == ["queued", "duplicate"]


@pytest.mark.parametrize("age, expected", [(2 * 3600, "stale"), (60, "queued")])
def test_streams_nanosecond_created_at_is_aged(client, age, expected):
    created = datetime.now(UTC) - timedelta(seconds=age)
    body = webhook_event(created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "789Z")

    assert outcome(deliver(client, body)) == expected


# --- Echoes --------------------------------------------------------------------------------


def test_a_message_sent_through_this_service_is_not_echoed_back(client, stream, primary):
    client.post("/message", json=MESSAGE_BODY)
    stored = stream.stand_in.state.messages["123-456-789-01234"]  # what Stream would put in the event

    assert outcome(deliver(client, webhook_event("message.new", message=stored))) == "echo"
    time.sleep(0.2)
    assert primary.received == []


@pytest.mark.parametrize(
    "mark",
    [
        "forged",
        42,
        origin_mark("another-message", "messaging:fun", "thierry"),
        origin_mark("m-1", "messaging:elsewhere", "thierry"),
        origin_mark("m-1", "messaging:fun", "someone-else"),
        origin_mark("m-1", "messaging:fun", "thierry", "another-secret"),
    ],
)
def test_a_wrong_origin_mark_is_not_taken_for_an_echo(client, mark):
    message = {"id": "m-1", "text": "hi", "user": {"id": "thierry"}, "primary_origin": mark}

    assert outcome(deliver(client, webhook_event("message.new", message=message))) == "queued"


# --- A store that fails costs the webhook only --------------------------------------------


def test_a_store_that_cannot_be_opened_answers_503_and_every_other_route_still_answers(apps, environ, tmp_path, stream):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    client = apps({**environ, "WEBHOOK_DB": str(blocked / "webhooks.sqlite3")}).test_client()

    webhook = deliver(client, webhook_event())
    token = client.post("/generate-token", json={"user_id": "tommaso"})
    message = client.post("/message", json=MESSAGE_BODY)

    assert webhook.status_code == 503 and "store" in webhook.get_json()["error"]
    assert (token.status_code, message.status_code) == (200, 200)


def test_an_unreachable_redis_answers_503_so_stream_retries(apps, environ):
    client = apps({**environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()

    response = deliver(client, webhook_event())

    assert response.status_code == 503 and "store" in response.get_json()["error"]


def test_a_deleted_sqlite_file_answers_503_until_it_is_restored(app, environ, tmp_path, primary):
    client = app.test_client()
    first = webhook_event(message={"id": "m-1"})
    deliver(client, first, webhook_id="wh-1")
    primary.wait_for(1)
    path, backup = environ["WEBHOOK_DB"], str(tmp_path / "backup.sqlite3")
    sqlite3.connect(path).backup(sqlite3.connect(backup))
    for suffix in ("", "-wal", "-shm"):
        os.remove(path + suffix)

    gone = deliver(client, webhook_event(message={"id": "m-2"}), webhook_id="wh-2")
    os.replace(backup, path)
    back = deliver(client, first, webhook_id="wh-1")

    assert gone.status_code == 503 and path not in gone.get_json()["error"]  # no path in the answer
    assert outcome(back) == "duplicate"  # it still knows what it was given


def test_past_the_maximum_pending_the_webhook_answers_503(apps, environ, primary):
    primary.status = 500
    client = apps({**environ, "PRIMARY_SYNC_MAX_PENDING": "2", "PRIMARY_SYNC_RETRY_SCHEDULE": "60"}).test_client()

    answers = [deliver(client, webhook_event(message={"id": f"m-{n}"}), webhook_id=f"wh-{n}") for n in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 503]
    assert "queue is full" in answers[2].get_json()["error"]


# --- Across processes ----------------------------------------------------------------------


def deliver_from_processes(environ, processes=2, copies_each=10):
    """Copies of one delivery, sent at once from `processes` separate service instances."""
    body = webhook_event("message.new")
    headers = {"X-Signature": sign(body), "X-Webhook-Id": f"wh-{uuid.uuid4()}", "X-Webhook-Attempt": "1"}
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=deliver_copies, args=(environ, body, headers, copies_each, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    answers = [answer for _ in workers for answer in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    return answers


def test_twenty_copies_across_two_processes_on_one_sqlite_file_are_stored_once(environ, primary):
    answers = deliver_from_processes(environ)

    assert sorted(answers) == [(200, "duplicate")] * 19 + [(200, "queued")]


def test_two_instances_sharing_redis_store_once(environ, primary, fresh_redis_url):
    answers = deliver_from_processes({**environ, "REDIS_URL": fresh_redis_url})

    assert sorted(answers) == [(200, "duplicate")] * 19 + [(200, "queued")]


def test_the_primarys_session_reads_proxies_once_not_per_request(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    session = http_session(1)

    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example:3128"
