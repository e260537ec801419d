"""Stream's 429s pass through at once: every sync route answers 429 with a `Retry-After` in
whole seconds, read from Stream's `Retry-After` (whole or fractional seconds, or an HTTP date)
or its `X-RateLimit-Reset`, whichever it sent; no request thread sleeps on Stream's behalf, and
a header that cannot be read is never a 502.

The header forms are checked in memory (the `stream` fixture); the timing over HTTP, against a
local server answering 429, since it is the HTTP session that could sleep and resend."""

import email.utils
import time

import pytest

from app import create_app

from stream_stand_in import Faults
from support.examples import CHANNEL_BODY, MESSAGE_BODY
from support.stream import STREAM_URL, rate_limited, stand_in_over_http

UPDATE = {"message": {"text": "x"}, "user": {"id": "tommaso"}}
# Every route that calls Stream, with a body it accepts.
SYNC_ROUTES = [
    ("POST", "/channel", CHANNEL_BODY),
    ("POST", "/message", MESSAGE_BODY),
    ("PUT", "/message/m-1", UPDATE),
    ("DELETE", "/message/m-1", None),
    ("PUT", "/channel/messaging/general", {"custom_data": {"title": "x"}}),
    ("DELETE", "/channel/messaging/general", None),
    ("DELETE", "/user/tommaso", None),
]


def too_many_requests(headers):
    return {
        "status_code": 429,
        "json": {"code": 9, "message": "Too many requests", "StatusCode": 429, "duration": "0.00ms"},
        "headers": headers,
    }


def http_date(seconds_from_now):
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def reset_in(seconds):
    """Stream's X-RateLimit-Reset, `seconds` from now (read when the test runs, not when collected)."""
    return lambda: str(int(time.time()) + seconds)


def at_run_time(headers):
    return {name: value() if callable(value) else value for name, value in headers.items()}


@pytest.mark.parametrize(
    "headers, low, high",
    [
        ({"Retry-After": "20"}, 20, 20),
        ({"Retry-After": "29.987"}, 30, 30),  # fractional: rounded up, never an InvalidHeader
        ({"Retry-After": "0.05"}, 1, 1),
        ({"Retry-After": "0"}, 1, 1),
        ({"X-RateLimit-Reset": reset_in(30)}, 29, 31),  # Stream's own: epoch seconds
        ({"Retry-After": "soon", "X-RateLimit-Reset": reset_in(30)}, 29, 31),
        ({"Retry-After": "1e12"}, 86400, 86400),  # a day at most
    ],
)
def test_a_429_answers_retry_after_in_whole_seconds_from_either_header(client, stream, headers, low, high):
    stream.post(f"{STREAM_URL}/users", **too_many_requests(at_run_time(headers)))

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 429
    assert low <= int(response.headers["Retry-After"]) <= high
    assert response.get_json()["stream_code"] == 9


def test_a_429_with_an_http_date_answers_the_seconds_until_it(client, stream):
    stream.post(f"{STREAM_URL}/users", **too_many_requests({"Retry-After": http_date(20)}))

    response = client.post("/channel", json=CHANNEL_BODY)

    assert 19 <= int(response.headers["Retry-After"]) <= 21


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "later", "X-RateLimit-Reset": "never"}])
def test_a_429_that_says_no_wait_has_no_retry_after(client, stream, headers):
    stream.post(f"{STREAM_URL}/users", **too_many_requests(headers))

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def answers_of_every_sync_route(app) -> list[tuple[str, int, float, str | None]]:
    """`(route, status, seconds, Retry-After)` for one request to each sync route."""
    client = app.test_client()
    answers = []
    for method, path, body in SYNC_ROUTES:
        started = time.monotonic()
        response = client.open(path, method=method, json=body)
        seconds = time.monotonic() - started
        answers.append((f"{method} {path}", response.status_code, seconds, response.headers.get("Retry-After")))
    return answers


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "20.5"},
        {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset_in(20)},
    ],
    ids=["fractional Retry-After", "only X-RateLimit-Reset"],
)
def test_every_route_answers_a_429_within_a_second_over_http(environ, headers):
    with rate_limited(at_run_time(headers)) as (url, received):
        answers = answers_of_every_sync_route(create_app({**environ, "STREAM_CHAT_URL": url}))

    for route, status, seconds, retry_after in answers:
        assert (status, retry_after is not None) == (429, True), route
        assert 19 <= int(retry_after) <= 21, route
        assert seconds < 1, route
    # Each route's first call was refused, and nothing was sent again.
    assert len(received) == len(SYNC_ROUTES)


def test_every_route_answers_the_stand_ins_429_within_a_second_over_http(environ):
    faults = Faults(fail_rate=1.0, fail_kinds=("429",), retry_after_seconds=20)
    with stand_in_over_http(faults) as (url, _):
        answers = answers_of_every_sync_route(create_app({**environ, "STREAM_CHAT_URL": url}))

    assert [(status, retry_after) for _, status, _, retry_after in answers] == [(429, "20")] * len(SYNC_ROUTES)
    assert max(seconds for _, _, seconds, _ in answers) < 1
