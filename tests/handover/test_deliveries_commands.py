"""`flask --app app deliveries ...` and `deliver`, as an operator runs them: the queue's state in
words or JSON, failed events retried, delivered ones replayed, and a delivery process of its own."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app import create_app

from live import ROOT
from support.examples import sign, webhook_event
from support.history import run_command


@pytest.fixture
def app(environ, primary):
    """A web process that accepts but does not deliver (PRIMARY_SYNC_THREADS=0): the commands do."""
    return create_app(
        {
            **environ,
            "PRIMARY_SYNC_URL": primary.url,
            "PRIMARY_SYNC_THREADS": "0",
            "PRIMARY_SYNC_TIMEOUT": "1",
            "PRIMARY_SYNC_RETRY_SCHEDULE": "0",
        }
    )


def accept(app, count, cid="messaging:fun"):
    client = app.test_client()
    for n in range(count):
        body = webhook_event(cid=cid, message={"id": f"m-{cid}-{n}"})
        response = client.post(
            "/stream-incoming-wh", data=body, headers={"X-Signature": sign(body), "X-Webhook-Id": f"wh-{cid}-{n}"}
        )
        assert response.get_json()["outcome"] == "queued"


def test_status_says_what_is_pending_failed_and_delivered(app):
    accept(app, 2)

    status, output = run_command(app, "deliveries", "status")
    _, as_json = run_command(app, "deliveries", "status", "--json")

    assert status == 0
    assert output.splitlines()[0].startswith("pending: 2 (0 in flight, the oldest waiting 0:00:0")
    assert "failed: 0" in output and "delivered in the last hour: 0" in output
    assert json.loads(as_json) | {"oldest_pending_age": None} == {
        "pending": 2,
        "in_flight": 0,
        "failed": 0,
        "delivered_last_hour": 0,
        "oldest_pending_age": None,
    }


def test_list_shows_each_event_and_filters_by_channel_and_state(app):
    accept(app, 2, cid="messaging:a")
    accept(app, 1, cid="messaging:b")

    _, everything = run_command(app, "deliveries", "list")
    _, of_b = run_command(app, "deliveries", "list", "--cid", "messaging:b", "--json")
    _, failed = run_command(app, "deliveries", "list", "--failed")

    assert [line.split()[2] for line in everything.splitlines()] == [
        "wh-messaging:a-0",
        "wh-messaging:a-1",
        "wh-messaging:b-0",
    ]
    (line,) = of_b.splitlines()
    event = json.loads(line)
    assert (event["id"], event["state"], event["body"]["message"]["id"]) == (
        "wh-messaging:b-0",
        "pending",
        "m-messaging:b-0",
    )
    assert failed == ""


def test_a_failed_event_is_retried_by_id_or_all_at_once(app, primary):
    accept(app, 2, cid="messaging:a")
    accept(app, 1, cid="messaging:b")
    handover = app.extensions["handover"]
    queue, primary.status = handover.queue, 500
    for lease in queue.lease(10, 60):
        queue.give_up(lease, "HTTP 500")

    one = run_command(app, "deliveries", "retry", "wh-messaging:b-0")
    unknown = run_command(app, "deliveries", "retry", "wh-unknown")
    rest = run_command(app, "deliveries", "retry", "--failed")

    assert one == (0, "1 failed event pending again\n")
    assert unknown == (1, "0 failed events pending again\n")
    assert rest == (0, "1 failed event pending again\n")
    assert queue.status().pending == 3


def test_retry_needs_an_id_or_failed(app):
    status, output = run_command(app, "deliveries", "retry")

    assert status == 2 and "give an event id or --failed" in output


def test_deliver_is_a_delivery_process_until_sigterm_and_replay_sends_again(app, environ, primary):
    accept(app, 3)
    env = {**os.environ, **environ, "PRIMARY_SYNC_URL": primary.url, "PRIMARY_SYNC_TIMEOUT": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "deliver", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = [entry["webhook_id"] for entry in primary.wait_for(3)]
        replayed = run_command(app, "deliveries", "replay", "--since", "1h")
        deadline = time.monotonic() + 10
        while len(primary.accepted()) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]

    ids = ["wh-messaging:fun-0", "wh-messaging:fun-1", "wh-messaging:fun-2"]
    assert first == ids
    assert replayed == (0, "3 delivered events pending again\n")
    assert [entry["webhook_id"] for entry in primary.accepted()] == ids + ids  # again, in order, under their ids
    assert process.returncode == 0 and f"Delivering to {primary.url} with 2 threads" in output


@pytest.mark.parametrize("since", ["yesterday", "2 hours"])
def test_replay_refuses_a_time_it_cannot_read(app, since):
    status, output = run_command(app, "deliveries", "replay", "--since", since)

    assert status == 2 and "neither a time" in output


def test_deliver_without_a_primary_sync_url_says_so(environ):
    app = create_app(environ)

    assert run_command(app, "deliver") == (2, "PRIMARY_SYNC_URL is not set: there is nowhere to deliver to.\n")


def test_a_store_that_cannot_be_opened_is_exit_status_2(environ, tmp_path, primary):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    app = create_app({**environ, "PRIMARY_SYNC_URL": primary.url, "WEBHOOK_DB": str(blocked / "w.sqlite3")})

    status, output = run_command(app, "deliveries", "status")

    assert status == 2 and "The delivery queue is unavailable" in output
