"""Slow clients and slow waits under the Procfile's workers (gevent, web/gunicorn_worker.py),
with one worker, so that anything that blocked it would block every request: connections
that send a byte now and then hold nothing the others need, both halves of a request are
bounded in time (the line and headers within --keep-alive seconds, the body within
--timeout), and a wait for the SQLite store's lock lets the worker's other requests run."""

import contextlib
import json
import socket
import sqlite3
import threading
import time
from contextlib import ExitStack

import pytest
import requests

import live
from primary_system import PrimarySystem
from support.examples import API_KEY, API_SECRET, sign, webhook_event

SLOW_CONNECTIONS = 200


@pytest.fixture
def env(tmp_path):
    return {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "TOKEN_AUTH": "open",
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "1",
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
    }


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def drip(sockets: list[socket.socket], data: bytes, stop: threading.Event) -> None:
    """Send `data` a byte at a time to every socket, a byte each every 0.2 s, until `stop`."""
    for byte in data:
        for sock in sockets:
            with contextlib.suppress(OSError):  # closed by the service
                sock.send(bytes([byte]))
        if stop.wait(0.2):
            return


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the service sent before it closed `sock`, or None when it is still open after `seconds`."""
    sock.settimeout(0.2)
    received, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def test_connections_sending_their_headers_a_byte_at_a_time_hold_up_nobody(env):
    headers = b"POST /generate-token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" * 10
    stop = threading.Event()
    with live.service(env, quiet=True) as url, ExitStack() as sockets:
        slow = [sockets.enter_context(connect(url)) for _ in range(SLOW_CONNECTIONS)]
        dripping = threading.Thread(target=drip, args=(slow, headers, stop), daemon=True)
        dripping.start()
        try:
            time.sleep(1)  # every slow connection is part-way through its headers
            answers = [requests.post(f"{url}/generate-token", json={"user_id": f"u{n}"}, timeout=2) for n in range(20)]
        finally:
            stop.set()
            dripping.join()

    assert [answer.status_code for answer in answers] == [200] * 20


def test_a_connection_whose_headers_do_not_arrive_in_keep_alive_seconds_is_closed(env):
    stop = threading.Event()
    command = f"{live.procfile_command()} --keep-alive 1"
    with live.service(env, command=command, quiet=True) as url, connect(url) as sock:
        dripping = threading.Thread(target=drip, args=([sock], b"GET /healthz HTTP/1.1\r\n" * 20, stop))
        dripping.start()
        try:
            received = closed_within(sock, seconds=10)
        finally:
            stop.set()
            dripping.join()

    assert received == b""  # closed, with nothing served


def test_a_body_that_does_not_arrive_in_timeout_seconds_is_answered_408_and_the_connection_closed(env):
    with live.service(env, command=f"{live.procfile_command()} --timeout 3", quiet=True) as url:
        with connect(url) as sock:
            sock.sendall(
                b"POST /generate-token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b'Content-Length: 40\r\n\r\n{"user_id": '
            )
            received = closed_within(sock, seconds=15)
        after = requests.post(f"{url}/generate-token", json={"user_id": "thierry"}, timeout=5)

    assert received is not None
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "The request body did not arrive in time."}
    assert after.status_code == 200  # the worker serves on


def test_a_webhook_waiting_for_the_store_s_lock_lets_the_worker_s_other_requests_run(env):
    body = webhook_event(message={"id": "first", "text": "hi"})
    with PrimarySystem() as primary:
        env["PRIMARY_SYNC_URL"] = primary.url
        with live.service(env, quiet=True) as url:
            webhook = f"{url}/stream-incoming-wh"
            first = requests.post(webhook, data=body, headers={"X-Signature": sign(body)}, timeout=5)
            assert first.status_code == 200  # the store's file exists now

            holder = sqlite3.connect(env["WEBHOOK_DB"], isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            second_body = webhook_event(message={"id": "second", "text": "hi"})
            answers: list[requests.Response] = []
            waiting = threading.Thread(
                target=lambda: answers.append(
                    requests.post(webhook, data=second_body, headers={"X-Signature": sign(second_body)}, timeout=10)
                )
            )
            waiting.start()
            time.sleep(0.3)
            probes = [requests.post(f"{url}/generate-token", json={"user_id": "u"}, timeout=1) for _ in range(3)]
            still_waiting = waiting.is_alive()
            holder.execute("COMMIT")
            holder.close()
            waiting.join()

    assert still_waiting  # the webhook was waiting for the lock while the probes were answered
    assert [probe.status_code for probe in probes] == [200] * 3
    assert answers[0].status_code == 200  # and it was stored once the lock was free


def test_a_client_that_waits_for_100_continue_gets_it_then_its_answer(env):
    body = b'{"user_id": "thierry"}'
    with live.service(env, quiet=True) as url, connect(url) as sock:
        sock.sendall(
            b"POST /generate-token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        interim = sock.recv(4096)  # sent before the body is read; the socket's timeout is 10 s
        sock.sendall(body)
        answer = sock.recv(65536)

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # nothing more can come before the body
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_body_declared_over_its_route_s_cap_is_refused_at_once_unread(env):
    """`/generate-token` takes 4 KB: a declared 900 KB is answered 413 without waiting for it."""
    with live.service(env, quiet=True) as url, connect(url) as sock:
        sock.sendall(
            b"POST /generate-token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 900000\r\n\r\n{"
        )
        sock.settimeout(5)
        answer = sock.recv(65536)

    assert answer.startswith(b"HTTP/1.1 413 ")
