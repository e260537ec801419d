"""Accepted events survive the service being killed: gunicorn as the Procfile starts it, killed
with SIGKILL (master and workers) while it accepts and delivers, then started again on the same
SQLite file. Stream's retries are simulated (a delivery is sent again until it gets a 200).
Every event that got a 200 reaches the primary system, each channel's in the order Stream
created them, and a second copy only ever under the same webhook-id."""

import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import requests

import live
from primary_system import PrimarySystem
from support.examples import API_KEY, API_SECRET, sign, webhook_event

CHANNELS = ("messaging:a", "messaging:b", "messaging:c")
EVENTS = 45


class Stream:
    """Sends each event until it is answered 200, as Stream retries a webhook."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.acknowledged: list[str] = []
        self.start = datetime.now(UTC)

    def send_all(self) -> None:
        for n in range(EVENTS):
            cid = CHANNELS[n % len(CHANNELS)]
            created = (self.start + timedelta(milliseconds=n)).isoformat()
            body = webhook_event(cid=cid, channel_id=cid.split(":")[1], message={"id": f"m-{n}"}, created_at=created)
            headers = {"X-Signature": sign(body, API_SECRET), "X-Webhook-Id": f"wh-{n}"}
            while True:
                try:
                    if (
                        self.url
                        and requests.post(
                            f"{self.url}/stream-incoming-wh", data=body, headers=headers, timeout=2
                        ).status_code
                        == 200
                    ):
                        self.acknowledged.append(f"wh-{n}")
                        break
                except requests.RequestException:
                    pass  # the service is down: Stream tries again
                time.sleep(0.05)
            time.sleep(0.03)


def gunicorn(env):
    """The service as the Procfile starts it, on a free port: `(url, process)`."""
    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    return _with_url(
        url,
        live.running(
            f"exec {live.procfile_command()}", f"{url}/healthz", env={**env, "PORT": str(port)}, shell=True, quiet=True
        ),
    )


@contextmanager
def _with_url(url, running):
    with running as process:
        yield url, process


def killed(process) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_events_accepted_before_a_sigkill_are_delivered_after_the_restart_in_order(tmp_path):
    env = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
        "PRIMARY_SYNC_TIMEOUT": "1",
        "PRIMARY_SYNC_RETRY_SCHEDULE": "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
    }
    stream = Stream()
    with PrimarySystem(delay=0.15) as primary:
        env["PRIMARY_SYNC_URL"] = primary.url
        sender = threading.Thread(target=stream.send_all, daemon=True)
        sender.start()
        for _ in range(2):  # killed twice, while it accepts and delivers
            with gunicorn(env) as (url, process):
                stream.url = url
                time.sleep(0.8)
                stream.url = None
                killed(process)
        with live.service(env, quiet=True) as url:
            stream.url = url
            sender.join(timeout=60)
            received = primary.wait_for(EVENTS, timeout=60)

    assert len(stream.acknowledged) == EVENTS
    ids = [entry["webhook_id"] for entry in received]
    assert set(ids) == set(stream.acknowledged)  # every acknowledged event, under its own id
    for cid in CHANNELS:
        first_arrivals = list(dict.fromkeys(entry["webhook_id"] for entry in received if entry["event"]["cid"] == cid))
        assert first_arrivals == sorted(first_arrivals, key=lambda webhook_id: int(webhook_id[3:]))
