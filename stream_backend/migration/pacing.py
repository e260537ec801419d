"""Pacing and retries for long runs against Stream's API (backfill and verify), so that they
share the app's rate limits with the live dual-write instead of starving it.

Stream limits each API endpoint per app and per minute, and says where a call stands in
every answer: `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch
seconds when the window ends); over the limit it answers 429 (code 9)
(https://getstream.io/chat/docs/python/rate_limits/). The `Pacer` reads those headers from
each answer and spaces the run's calls to each endpoint so that the run uses at most
`share` of the endpoint's limit, leaving the rest to live traffic. A 429 pauses every call
of the run until the window resets (`Retry-After` or `X-RateLimit-Reset`, read as the service
reads them: stream/client.py's `wait_seconds`), then the headers pace it again. `retrying`
retries 429s, 5xx and timeouts with backoff, and an object a live write holds (or a store of
versions that did not answer): every write the backfill makes is idempotent, so a retry never
duplicates.
"""

import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import requests

from stream_backend.errors import (
    ObjectBusy,
    StreamError,
    StreamTimeout,
    StreamUnavailable,
    StreamUnreachable,
    VersionsUnavailable,
)
from stream_backend.stream.client import StreamClient, build_client, header_number, http_session, wait_seconds

T = TypeVar("T")

# Stream limits per endpoint, not per object: ids in a path are one endpoint.
_PATH_IDS = [
    (re.compile(r"/channels/[^/]+/[^/]+"), "/channels/{type}/{id}"),
    (re.compile(r"/messages/[^/]+"), "/messages/{id}"),
    (re.compile(r"/imports/[^/]+"), "/imports/{id}"),
]


def endpoint(method: str, url: str) -> str:
    path = urlsplit(url).path
    for pattern, template in _PATH_IDS:
        path = pattern.sub(template, path)
    return f"{method} {path}"


class Pacer:
    """Spaces calls per endpoint from Stream's rate-limit headers; pauses all on a 429.

    `clock` and `sleep` are injectable so that tests can run time forward."""

    def __init__(
        self, share: float, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("the rate share must be above 0 and at most 1")
        self.share, self.clock, self.sleep = share, clock, sleep
        self._lock = threading.Lock()
        self._next_call: dict[str, float] = {}  # endpoint -> earliest time of its next call
        self._interval: dict[str, float] = {}  # endpoint -> seconds between our calls
        self._paused_until = 0.0
        self.waited = 0.0  # wall-clock seconds while some call waited, for the summary
        self._waited_through = 0.0  # the end of the waits counted in `waited`
        self.rate_limited = 0  # 429s seen

    def before(self, key: str) -> None:
        """Wait for this endpoint's next slot (and for the end of a 429 pause)."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._paused_until, self._next_call.get(key, 0.0))
            self._next_call[key] = slot + self._interval.get(key, 0.0)
            # The time some call waits, once: concurrent calls waiting for one pause wait it
            # together, and a sum over them would report more waiting than the run lasted.
            self.waited += max(0.0, slot - max(now, self._waited_through))
            self._waited_through = max(self._waited_through, slot)
        if slot > now:
            self.sleep(slot - now)

    def after(self, key: str, status: int, headers) -> None:
        """Learn from an answer's rate-limit headers (and from a 429)."""
        now = self.clock()
        reset = header_number(headers.get("X-RateLimit-Reset"))
        with self._lock:
            if status == 429:
                self.rate_limited += 1
                # At least a second: without either header, or with a reset already past
                # (clocks differ), a 429 must still slow the run.
                self._paused_until = max(self._paused_until, now + max(wait_seconds(headers, now) or 0.0, 1.0))
                return
            limit = header_number(headers.get("X-RateLimit-Limit"))
            remaining = header_number(headers.get("X-RateLimit-Remaining"))
            if limit is None or remaining is None or reset is None:
                return
            # What is left for us this window: the remaining calls minus the part of the
            # limit kept for live traffic. Spread it evenly until the window resets.
            ours = remaining - (1 - self.share) * limit
            window_left = max(reset - now, 0.001)
            if ours < 1:
                self._next_call[key] = max(self._next_call.get(key, 0.0), reset)
                self._interval[key] = window_left / max(self.share * limit, 1)
            else:
                self._interval[key] = window_left / ours

    def allowed_rate(self) -> float | None:
        """Calls a second allowed to the slowest paced endpoint, if any is paced."""
        intervals = [interval for interval in self._interval.values() if interval > 0]
        return 1 / max(intervals) if intervals else None


class PacedSession(requests.Session):
    """A requests session that asks the pacer before each call and tells it each answer."""

    def __init__(self, pacer: Pacer, pool_size: int) -> None:
        super().__init__()
        self.pacer = pacer
        # As the app's own client: a connection per concurrent worker, no retry of a sent
        # request (ours do that).
        http_session(pool_size, self)

    def send(self, request, **kwargs):
        key = endpoint(request.method, request.url)
        self.pacer.before(key)
        response = super().send(request, **kwargs)
        self.pacer.after(key, response.status_code, response.headers)
        return response


class GaveUp(Exception):
    """A call still failed after every retry."""


def is_retryable(error: Exception) -> bool:
    """Worth another try: rate limited, Stream's own failure, or no answer in time; or a live
    write of the same object holding its lock, or the versions' store not answering."""
    if isinstance(error, StreamError):
        return error.status == 429 or error.status >= 500
    # Stream's silence, and an upload's (to the URL Stream's importer gave).
    return isinstance(
        error, (StreamUnavailable, requests.Timeout, requests.ConnectionError, ObjectBusy, VersionsUnavailable)
    )


def retrying(
    call: Callable[[], T],
    attempts: int = 8,
    base_delay: float = 0.2,
    max_delay: float = 10,
    sleep: Callable[[float], None] | None = None,
    max_rate_limited: int = 100,
) -> T:
    """`call()`, retried on retryable errors with exponential backoff and full jitter.

    A 429 is retried too, without using up an attempt (up to `max_rate_limited` of them): the
    pacer has already paused the run until Stream's window resets, so a rate limit slows the
    record down instead of failing it."""
    failures = rate_limited = 0
    while True:
        try:
            return call()
        except Exception as error:
            if not is_retryable(error):
                raise
            if isinstance(error, StreamError) and error.status == 429:
                rate_limited += 1
                if rate_limited > max_rate_limited:
                    raise GaveUp(describe(error)) from error
                continue
            failures += 1
            if failures == attempts:
                raise GaveUp(describe(error)) from error
            (sleep or time.sleep)(random.uniform(0, min(max_delay, base_delay * 2 ** (failures - 1))))


def describe(error: Exception) -> str:
    if isinstance(error, StreamError):
        return f"Stream answered {error.status}: {error.message}"
    if isinstance(error, (StreamTimeout, requests.Timeout)):
        return "Stream did not answer in time"
    if isinstance(error, (StreamUnreachable, requests.ConnectionError)):
        return "Stream could not be reached"
    return str(error)


def paced_client(
    api_key: str, api_secret: str, base_url: str | None, timeout: float, pacer: Pacer, pool_size: int
) -> StreamClient:
    """A Stream client whose every call goes through `pacer`, with `pool_size` connections."""
    return build_client(api_key, api_secret, base_url=base_url, timeout=timeout, session=PacedSession(pacer, pool_size))
