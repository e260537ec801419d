"""Webhook events reach the primary system once: deduplicated across workers and hosts,
retried by Stream while they are not handed over, never echoed back."""

import gzip
import hashlib
import json
import multiprocessing
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app import create_app
from stream_backend.errors import StoreUnavailable
from stream_backend.handover.claims import Claim, RedisDeliveryStore, SQLiteDeliveryStore
from stream_backend.handover.handover import deadline_session

from live import free_port
from support.examples import MESSAGE_BODY, PRIMARY_SYNC_SECRET, origin_mark, sign, webhook_event
from support.primary import PrimarySystem
from support.workers import deliver_copies


@pytest.fixture
def primary():
    with PrimarySystem() as server:
        yield server


@pytest.fixture
def environ(environ, primary):
    return {**environ, "PRIMARY_SYNC_URL": primary.url, "PRIMARY_SYNC_TIMEOUT": "1"}


def deliver(client, body, webhook_id="wh-1", attempt=1, compress=False):
    headers = {"X-Signature": sign(body), "X-Webhook-Id": webhook_id, "X-Webhook-Attempt": str(attempt)}
    return client.post("/stream-incoming-wh", data=gzip.compress(body) if compress else body, headers=headers)


# --- Handing over --------------------------------------------------------------------------


def as_written_by_hand(body):
    """The same event in bytes no JSON re-encoding would give back: indented, not ASCII."""
    return json.dumps(json.loads(body) | {"cid": "messaging:f\u00eate \u2603"}, indent=3, ensure_ascii=False).encode()


def test_event_is_posted_to_the_primary_as_stream_sent_it(client, primary):
    body = as_written_by_hand(webhook_event("message.new"))

    response = deliver(client, body, webhook_id="wh-7")

    assert response.status_code == 200
    assert response.get_json() == {"received": "message.new", "outcome": "forwarded"}
    (accepted,) = primary.accepted()
    assert (accepted["webhook_id"], accepted["content_type"]) == ("wh-7", "application/json")
    assert accepted["body"] == body


def test_gzip_delivery_is_handed_over_inflated(client, primary):
    body = as_written_by_hand(webhook_event("message.updated"))

    response = deliver(client, body, compress=True)

    assert response.get_json()["outcome"] == "forwarded"
    assert primary.accepted()[0]["body"] == body


def test_a_long_answer_from_the_primary_is_not_read(client, primary):
    primary.answer_bytes = 2 + 1024 * 2**16  # 64 MB

    tracemalloc.start()
    try:
        response = deliver(client, webhook_event())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert response.get_json()["outcome"] == "forwarded"
    assert peak < 2 * 2**20


def test_the_primarys_session_reads_proxies_once_not_per_request(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    session = deadline_session()

    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example:3128"


def test_late_retry_of_a_handed_over_delivery_answers_200_without_forwarding(client, primary):
    body = webhook_event()
    deliver(client, body, attempt=1)

    retry = deliver(client, body, attempt=2)

    assert retry.status_code == 200
    assert retry.get_json()["outcome"] == "duplicate"
    assert len(primary.received) == 1


def test_another_delivery_id_is_forwarded_again(client, primary):
    deliver(client, webhook_event(), webhook_id="wh-1")
    deliver(client, webhook_event(), webhook_id="wh-2")

    assert [entry["webhook_id"] for entry in primary.accepted()] == ["wh-1", "wh-2"]


@pytest.mark.parametrize("status", [500, 503, 404, 302])
def test_failing_primary_gets_a_503_and_the_retry_forwards_once(client, primary, status):
    body = webhook_event()
    primary.status = status

    failed = deliver(client, body, attempt=1)
    primary.status = 200
    retry = deliver(client, body, attempt=2)
    late = deliver(client, body, attempt=3)

    assert failed.status_code == 503
    assert failed.is_json and f"HTTP {status}" in failed.get_json()["error"]
    assert retry.get_json()["outcome"] == "forwarded"
    assert late.get_json()["outcome"] == "duplicate"
    assert len(primary.accepted()) == 1


def test_primary_slower_than_the_timeout_gets_a_503_and_frees_the_id(client, primary):
    primary.delay = 1.5  # PRIMARY_SYNC_TIMEOUT is 1 s here

    failed = deliver(client, webhook_event())
    primary.delay = 0
    retry = deliver(client, webhook_event())

    assert failed.status_code == 503
    assert "within 1 s" in failed.get_json()["error"]
    assert retry.get_json()["outcome"] == "forwarded"


def test_unreachable_primary_gets_a_503(environ):
    client = create_app({**environ, "PRIMARY_SYNC_URL": f"http://127.0.0.1:{free_port()}/x"}).test_client()

    response = deliver(client, webhook_event())

    assert response.status_code == 503
    assert response.is_json


def test_copy_arriving_while_another_worker_forwards_gets_a_503(app, primary):
    store = app.extensions["handover"].store
    assert store.claim("id:wh-1").outcome is Claim.CLAIMED  # another worker, mid-forward

    response = deliver(app.test_client(), webhook_event())

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert primary.received == []


def test_delivery_without_an_id_is_forwarded_once_under_its_body_digest(client, primary):
    body = webhook_event()
    headers = {"X-Signature": sign(body)}

    first = client.post("/stream-incoming-wh", data=body, headers=headers)
    second = client.post("/stream-incoming-wh", data=body, headers=headers)

    assert [first.get_json()["outcome"], second.get_json()["outcome"]] == ["forwarded", "duplicate"]
    assert [entry["webhook_id"] for entry in primary.received] == [f"sha256-{hashlib.sha256(body).hexdigest()}"]


def test_claims_expire_a_little_after_the_forward_timeout(app):
    assert app.extensions["handover"].store.claim_seconds == 1 + 2  # PRIMARY_SYNC_TIMEOUT is 1 s here


def test_unknown_event_types_are_acknowledged_not_forwarded(client, primary):
    response = deliver(client, webhook_event("something.new.from.stream"))

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "ignored"
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
def test_message_and_reaction_events_are_forwarded(client, primary, event_type):
    assert deliver(client, webhook_event(event_type)).get_json()["outcome"] == "forwarded"


def test_without_primary_sync_url_each_event_is_logged_on_one_line(environ, primary, caplog):
    client = create_app({**environ, "PRIMARY_SYNC_URL": ""}).test_client()

    response = deliver(client, webhook_event("message.new"), webhook_id="wh-9")

    assert response.get_json()["outcome"] == "logged"
    lines = [
        json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records if r.getMessage().startswith("webhook ")
    ]
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


def test_signed_body_replayed_under_another_id_or_none_is_not_forwarded_again(client, primary):
    body = webhook_event("message.updated")
    deliver(client, body, webhook_id="wh-original")

    under_another_id = deliver(client, body, webhook_id="wh-replayed")
    without_an_id = client.post("/stream-incoming-wh", data=body, headers={"X-Signature": sign(body)})
    gzipped = deliver(client, body, webhook_id="wh-gzipped", compress=True)

    assert [answer.get_json()["outcome"] for answer in (under_another_id, without_an_id, gzipped)] == ["duplicate"] * 3
    assert [entry["webhook_id"] for entry in primary.received] == ["wh-original"]


def test_replays_are_refused_across_hosts_sharing_redis(environ, primary, redis_url):
    body = webhook_event(message={"id": f"m-{uuid.uuid4()}"})
    host_a, host_b = (create_app({**environ, "REDIS_URL": redis_url}).test_client() for _ in range(2))

    first = deliver(host_a, body, webhook_id=f"wh-{uuid.uuid4()}")
    replay = deliver(host_b, body, webhook_id=f"wh-{uuid.uuid4()}", compress=True)

    assert [first.get_json()["outcome"], replay.get_json()["outcome"]] == ["forwarded", "duplicate"]
    assert len(primary.received) == 1


def test_an_id_borrowed_by_a_replay_is_not_reused_for_the_real_event(client, primary):
    seen, later = webhook_event(message={"id": "m-seen"}), webhook_event(message={"id": "m-later"})
    primary.status = 500
    deliver(client, seen, webhook_id="wh-seen")  # failed: not handed over yet
    primary.status = 200

    replay = deliver(client, seen, webhook_id="wh-later")  # the attacker saw wh-later too
    real = deliver(client, later, webhook_id="wh-later")

    assert [replay.get_json()["outcome"], real.get_json()["outcome"]] == ["forwarded", "forwarded"]
    ids = [entry["webhook_id"] for entry in primary.accepted()]
    assert ids == ["wh-later", f"wh-later.sha256-{hashlib.sha256(later).hexdigest()}"]


def test_a_failed_hand_over_frees_the_body_for_a_retry_under_another_id(client, primary):
    body = webhook_event()
    primary.status = 500
    deliver(client, body, webhook_id="wh-1")
    primary.status = 200

    assert deliver(client, body, webhook_id="wh-2").get_json()["outcome"] == "forwarded"


@pytest.mark.parametrize(
    "age, outcome", [(3600 + 60, "stale"), (24 * 3600, "stale"), (3600 - 60, "forwarded"), (0, "forwarded")]
)
def test_events_older_than_an_hour_are_acknowledged_not_forwarded(client, primary, age, outcome):
    created = datetime.now(UTC) - timedelta(seconds=age)
    body = webhook_event(created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    response = deliver(client, body)

    assert response.status_code == 200
    assert response.get_json()["outcome"] == outcome
    assert len(primary.received) == (outcome == "forwarded")


@pytest.mark.parametrize("created_at", [None, "yesterday", 12])
def test_an_unreadable_created_at_is_not_aged_but_still_deduplicated(client, primary, created_at):
    body = webhook_event(created_at=created_at)

    first, again = deliver(client, body, webhook_id="wh-1"), deliver(client, body, webhook_id="wh-2")

    assert [first.get_json()["outcome"], again.get_json()["outcome"]] == ["forwarded", "duplicate"]
    assert len(primary.received) == 1


@pytest.mark.parametrize("age, outcome", [(2 * 3600, "stale"), (60, "forwarded")])
def test_streams_nanosecond_created_at_is_aged(client, primary, age, outcome):
    created = datetime.now(UTC) - timedelta(seconds=age)
    body = webhook_event(created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "789Z")

    assert deliver(client, body).get_json()["outcome"] == outcome


# --- The hand-over's deadline ---------------------------------------------------------------


def test_a_primary_answering_a_byte_at_a_time_is_cut_off_at_the_deadline(client, primary):
    primary.trickle = 0.05  # its answer would take about 8 s; each read alone is quick
    started = time.monotonic()

    failed = deliver(client, webhook_event())
    elapsed = time.monotonic() - started
    primary.trickle = 0
    retry = deliver(client, webhook_event())

    assert failed.status_code == 503
    assert "did not answer within 1 s" in failed.get_json()["error"]
    assert elapsed < client.application.extensions["handover"].store.claim_seconds  # 3 s: before the claim ends
    assert retry.get_json()["outcome"] == "forwarded"


class StoreSlowToClaimIds(SQLiteDeliveryStore):
    """Waits on the id claim as SQLite does on a lock held by another worker."""

    wait = 0.0

    def claim(self, webhook_id):
        if webhook_id.startswith("id:"):
            time.sleep(self.wait)
        return super().claim(webhook_id)


@pytest.mark.parametrize("wait, reaches_primary", [(0.7, True), (1.1, False)])
def test_the_deadline_starts_at_the_first_claim(app, primary, tmp_path, wait, reaches_primary):
    store = app.extensions["handover"].store = StoreSlowToClaimIds(str(tmp_path / "slow.sqlite3"), 3, 60)
    store.wait, primary.delay = wait, 0.5  # 0.7 + 0.5 s, or 1.1 s, past the 1 s timeout
    started = time.monotonic()

    response = deliver(app.test_client(), webhook_event())

    assert response.status_code == 503
    assert "did not answer within 1 s" in response.get_json()["error"]
    assert time.monotonic() - started < 2.5  # before the claim (3 s) expires
    assert len(primary.received) == reaches_primary


class StoreFailingToComplete(SQLiteDeliveryStore):
    def complete(self, webhook_id, token):
        raise StoreUnavailable("database is locked")


def test_a_store_failing_after_the_hand_over_still_answers_200(app, primary, tmp_path, caplog):
    app.extensions["handover"].store = StoreFailingToComplete(str(tmp_path / "failing.sqlite3"), 3, 60)

    response = deliver(app.test_client(), webhook_event())

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "forwarded"
    assert len(primary.accepted()) == 1
    assert any("not recorded as done" in record.getMessage() for record in caplog.records)


# --- The hand-over's signature (Standard Webhooks) -----------------------------------------


@pytest.fixture
def signing_client(environ):
    return create_app({**environ, "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET}).test_client()


def test_hand_over_is_signed_so_the_standardwebhooks_library_verifies_it(signing_client, primary):
    body = webhook_event("message.updated")

    deliver(signing_client, body, webhook_id="wh-signed")

    (received,) = primary.received
    headers = {name.lower(): value for name, value in received["headers"].items()}
    assert headers["webhook-id"] == "wh-signed" == headers["x-webhook-id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert received["body"] == body
    assert Webhook(PRIMARY_SYNC_SECRET).verify(body, headers) == json.loads(body)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "wh-other"},
        {"webhook-timestamp": str(int(time.time()) - 1)},
        {"webhook-signature": "v1," + "A" * 44},
    ],
)
def test_a_changed_header_fails_the_primarys_verification(signing_client, primary, change):
    deliver(signing_client, webhook_event(), webhook_id="wh-signed")
    received = primary.received[0]
    headers = {**{name.lower(): value for name, value in received["headers"].items()}, **change}

    with pytest.raises(WebhookVerificationError):
        Webhook(PRIMARY_SYNC_SECRET).verify(received["body"], headers)


def test_webhook_id_is_stable_across_stream_retries(signing_client, primary):
    body = webhook_event()
    primary.status = 500
    deliver(signing_client, body, webhook_id="wh-retried", attempt=1)
    primary.status = 200
    deliver(signing_client, body, webhook_id="wh-retried", attempt=2)

    assert [entry["headers"]["webhook-id"] for entry in primary.received] == ["wh-retried", "wh-retried"]


def test_without_the_secret_nothing_is_signed(client, primary):
    deliver(client, webhook_event())

    assert not {"webhook-id", "webhook-signature"} & {name.lower() for name in primary.received[0]["headers"]}


# --- Echoes --------------------------------------------------------------------------------


def test_message_sent_through_this_service_is_not_echoed_back(client, stream, primary):
    client.post("/message", json=MESSAGE_BODY)
    stored = stream.stand_in.state.messages["123-456-789-01234"]  # what Stream would put in the event

    response = deliver(client, webhook_event("message.new", message=stored))

    assert response.get_json()["outcome"] == "echo"
    assert primary.received == []


def test_message_written_in_stream_is_forwarded(client, primary):
    assert deliver(client, webhook_event("message.new")).get_json()["outcome"] == "forwarded"


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
def test_a_wrong_origin_mark_is_not_taken_for_an_echo(client, primary, mark):
    message = {"id": "m-1", "text": "hi", "user": {"id": "thierry"}, "primary_origin": mark}

    response = deliver(client, webhook_event("message.new", message=message))

    assert response.get_json()["outcome"] == "forwarded"


# --- The stores ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    def make(claim_seconds=5.0, done_seconds=60.0):
        if request.param == "sqlite":
            return SQLiteDeliveryStore(str(tmp_path / "store.sqlite3"), claim_seconds, done_seconds)
        return RedisDeliveryStore(request.getfixturevalue("redis_url"), claim_seconds, done_seconds)

    return make


def test_store_claims_an_id_once_until_completed(make_store):
    store, webhook_id = make_store(), uuid.uuid4().hex
    first = store.claim(webhook_id)

    assert first.outcome is Claim.CLAIMED
    assert store.claim(webhook_id).outcome is Claim.BUSY
    store.complete(webhook_id, first.token)
    assert store.claim(webhook_id).outcome is Claim.DONE


def test_store_release_frees_the_id(make_store):
    store, webhook_id = make_store(), uuid.uuid4().hex
    store.release(webhook_id, store.claim(webhook_id).token)

    assert store.claim(webhook_id).outcome is Claim.CLAIMED


def test_claim_of_a_dead_worker_expires(make_store):
    store, webhook_id = make_store(claim_seconds=0.2), uuid.uuid4().hex
    dead = store.claim(webhook_id)

    time.sleep(0.3)
    taken_over = store.claim(webhook_id)
    store.release(webhook_id, dead.token)  # the dead worker's late release changes nothing
    store.complete(webhook_id, dead.token)

    assert taken_over.outcome is Claim.CLAIMED
    assert store.claim(webhook_id).outcome is Claim.BUSY


def test_handed_over_ids_expire_so_the_store_stays_bounded(tmp_path):
    store = SQLiteDeliveryStore(str(tmp_path / "store.sqlite3"), claim_seconds=5, done_seconds=0.2)
    for n in range(50):
        store.complete(f"old-{n}", store.claim(f"old-{n}").token)

    time.sleep(0.3)
    store.complete("new", store.claim("new").token)

    assert store.count() == 1
    assert store.claim("old-0").outcome is Claim.CLAIMED


def test_handed_over_ids_expire_in_redis(redis_url):
    store, webhook_id = RedisDeliveryStore(redis_url, claim_seconds=5, done_seconds=60), uuid.uuid4().hex
    store.complete(webhook_id, store.claim(webhook_id).token)

    ttl = store.redis.pttl(RedisDeliveryStore.PREFIX + webhook_id)

    assert 55_000 < ttl <= 60_000


def test_unreachable_redis_answers_a_503_so_stream_retries(environ):
    client = create_app({**environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()

    response = deliver(client, webhook_event())

    assert response.status_code == 503
    assert "store" in response.get_json()["error"]


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


def test_twenty_copies_across_two_processes_on_one_sqlite_file_forward_once(environ, primary):
    primary.delay = 0.3  # long enough for the copies to overlap

    answers = deliver_from_processes(environ)

    assert len(answers) == 20
    assert len(primary.received) == 1
    assert answers.count((200, "forwarded")) == 1
    assert (503, None) in answers  # copies did arrive while the first was being forwarded
    assert {answer for answer in answers} <= {(200, "forwarded"), (200, "duplicate"), (503, None)}


def test_two_instances_sharing_redis_forward_once(environ, primary, redis_url):
    primary.delay = 0.3

    answers = deliver_from_processes({**environ, "REDIS_URL": redis_url})

    assert len(primary.received) == 1
    assert answers.count((200, "forwarded")) == 1
