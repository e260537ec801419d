"""The hand-over: Stream's webhook events, given to the primary chat system once.

`Handover(store, session, primary_url, timeout, origin_key, signer, max_event_age)` takes its
collaborators as arguments and knows nothing of HTTP routes: the webhook route in app.py
verifies the delivery (body.py), then calls `handle_once`; `build_handover(settings, origin_key)` builds
it and its store from the settings, once per process. Each delivery is claimed in a store
shared by every worker (claims.py), under its `X-Webhook-Id` and under a digest of its
signed body, so that neither a retry landing on another worker nor a replay under another id
is handed over twice.

A hand-over ends within `timeout` of the moment its first claim is asked for, whatever the
primary does: the deadline is an absolute cutoff taken then, so that the time spent waiting on
the store (SQLite's busy timeout, up to store.sqlite.BUSY_TIMEOUT_SECONDS, for each claim)
comes out of the hand-over's `timeout`, not out of the claim's margin over it. Every claim
expires at least `claim_seconds` (> `timeout`) after that moment, so two copies of one event
are never in flight at once.

The primary gets the signed JSON byte for byte (a gzip delivery inflated), so "as Stream sent
it" is exact, and the Standard Webhooks signature covers those same bytes.
"""

import hashlib
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks import Webhook
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

from stream_backend.errors import DeliveryBusy, PrimarySyncFailed, StoreUnavailable
from stream_backend.handover.claims import Claim, RedisDeliveryStore, SQLiteDeliveryStore
from stream_backend.mirror.origin import is_primary_message
from stream_backend.settings import Settings

log = logging.getLogger("stream_backend.handover")

# Of the primary's answer only the status counts; a little of its body is read so that a short
# answer leaves the connection reusable, and no more, whatever the primary sends.
MAX_ANSWER_BYTES = 4096


def event_message(event: dict[str, Any]) -> dict[str, Any]:
    """The event's `message` object, or {} for events without one."""
    message = event.get("message")
    return message if isinstance(message, dict) else {}


def event_time(event: dict[str, Any]) -> float | None:
    """The event's `created_at` (RFC 3339, as Stream writes it) in epoch seconds, or None."""
    created_at = event.get("created_at")
    if not isinstance(created_at, str):
        return None
    try:
        moment = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Delivery:
    event: dict[str, Any]
    body: bytes  # the JSON Stream signed, handed over byte for byte
    id: str  # what the primary dedupes on
    until: float  # time.monotonic() by which the hand-over ends


class Handover:
    def __init__(
        self,
        store,
        session: requests.Session,
        primary_url: str | None,
        timeout: float,
        origin_key: bytes,
        signer: Webhook | None = None,
        max_event_age: float = 3600,
    ) -> None:
        self.store, self.session = store, session
        self.primary_url, self.timeout, self.origin_key = primary_url, timeout, origin_key
        self.signer, self.max_event_age = signer, max_event_age
        # What to do with each event type; any other type is acknowledged and ignored. Updates
        # and deletes are forwarded even when the mirror made them (docs/webhooks.md).
        self.handlers: dict[str, Callable[[Delivery], str]] = {
            "message.new": self.forward_unless_echo,
            "message.updated": self.forward,
            "message.deleted": self.forward,
            "message.undeleted": self.forward,
            "reaction.new": self.forward,
            "reaction.updated": self.forward,
            "reaction.deleted": self.forward,
        }

    def handle_once(self, event: dict[str, Any], webhook_id: str | None, signed_body: bytes) -> str:
        """Handle a delivery unless its signed body was handed over before (under any id, or
        none), it is being handed over now, or it is stale; the outcome's name."""
        handler = self.handlers.get(event["type"])
        if handler is None:
            return "ignored"
        if self.is_stale(event):
            return "stale"
        digest = hashlib.sha256(signed_body).hexdigest()
        until = time.monotonic() + self.timeout  # before the first claim: see the module's docstring
        claim = self.store.claim(f"body:{digest}")
        if claim.outcome is Claim.DONE:
            return "duplicate"
        if claim.outcome is Claim.BUSY:
            raise DeliveryBusy(digest)
        claims = [(f"body:{digest}", claim.token)]
        try:
            delivery_id = self._delivery_id(webhook_id, digest, claims)
            outcome = handler(Delivery(event, signed_body, delivery_id, until))
        except BaseException:
            self._release_all(claims)  # so that Stream's retry can succeed
            raise
        self._complete_all(claims)
        return outcome

    def _delivery_id(self, webhook_id: str | None, digest: str, claims: list[tuple[str, str]]) -> str:
        """The id the primary dedupes on: Stream's `X-Webhook-Id`, claimed too, so that a copy in
        flight on another worker is a 503. The header is not signed: an id already handed over
        with another body was borrowed by a replay, and is not reused, or the primary would take
        this event for that one. Without an id, the body's digest is the id."""
        if webhook_id is None:
            return f"sha256-{digest}"
        claim = self.store.claim(f"id:{webhook_id}")
        if claim.outcome is Claim.BUSY:
            raise DeliveryBusy(webhook_id)
        if claim.outcome is Claim.DONE:
            return f"{webhook_id}.sha256-{digest}"
        claims.append((f"id:{webhook_id}", claim.token))
        return webhook_id

    def is_stale(self, event: dict[str, Any]) -> bool:
        """Older than `max_event_age`: past Stream's retries, so a replay. Events without a
        readable `created_at` are not aged; their body's digest still dedupes them."""
        created = event_time(event)
        return created is not None and time.time() - created > self.max_event_age

    def forward(self, delivery: Delivery) -> str:
        """Hand the signed body to the primary system, signed again when a signer is set, by
        `delivery.until`. Without its URL, the route's log line is the handling."""
        if self.primary_url is None:
            return "logged"
        seconds = delivery.until - time.monotonic()
        if seconds <= 0:  # the claims took the whole time
            raise PrimarySyncFailed(f"the primary system did not answer within {self.timeout:g} s")
        with deadline(seconds) as cutoff:
            try:
                status = self._post(self.primary_url, delivery, seconds)
            except requests.RequestException as error:
                status, problem = None, f"could not be reached: {type(error).__name__}"
        # Checked first: an answer cut off after its status line can still parse as a 200.
        if cutoff.expired:
            raise PrimarySyncFailed(f"the primary system did not answer within {self.timeout:g} s")
        if status is None:
            raise PrimarySyncFailed(f"the primary system {problem}")
        if not 200 <= status < 300:
            raise PrimarySyncFailed(f"the primary system answered HTTP {status}")
        return "forwarded"

    def _post(self, url: str, delivery: Delivery, seconds: float) -> int:
        """The primary's status for the delivery, reading at most MAX_ANSWER_BYTES of its answer."""
        with self.session.post(
            url,
            data=delivery.body,
            timeout=seconds,
            stream=True,
            headers=self.headers(delivery.id, delivery.body),
            allow_redirects=False,
        ) as answer:
            received = 0
            for chunk in answer.iter_content(1024):
                received += len(chunk)
                if received >= MAX_ANSWER_BYTES:
                    break
            return answer.status_code

    def headers(self, delivery_id: str, body: bytes) -> dict[str, str]:
        """`X-Webhook-Id` as Stream names it and, with a signer, the Standard Webhooks headers
        (https://www.standardwebhooks.com): the same id, the time, and `v1,<signature>`."""
        headers = {"Content-Type": "application/json", "X-Webhook-Id": delivery_id}
        if self.signer is not None:
            now = datetime.fromtimestamp(int(time.time()), UTC)
            # The body is UTF-8 (body.signed_json refuses any other): the library signs
            # `id.timestamp.body` encoded back to these very bytes.
            headers.update(
                {
                    "webhook-id": delivery_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self.signer.sign(delivery_id, now, body.decode()),
                }
            )
        return headers

    def forward_unless_echo(self, delivery: Delivery) -> str:
        """`message.new`: a message the mirror sent came from the primary system: skip it."""
        if is_primary_message(self.origin_key, event_message(delivery.event), delivery.event.get("cid")):
            return "echo"
        return self.forward(delivery)

    # --- Claims ---------------------------------------------------------------------------

    def _release_all(self, claims: list[tuple[str, str]]) -> None:
        for key, token in claims:
            self.store.release(key, token)

    def _complete_all(self, claims: list[tuple[str, str]]) -> None:
        """Mark the claims done. The event is handed over already, so a store failing here
        is logged, not answered: the claims expire in a few seconds, and only a copy arriving
        after that would be handed over again (the primary dedupes on its id)."""
        try:
            for key, token in claims:
                self.store.complete(key, token)
        except StoreUnavailable as error:
            log.warning("webhook handed over, but not recorded as done: %s", error)


# --- A deadline on the whole exchange ------------------------------------------------------
#
# requests' timeout bounds each connect and each read, not the exchange: a primary answering
# a byte at a time could hold a hand-over past its claim. A watchdog thread shuts the
# connection down at the deadline, which ends any read in progress. The connection is found
# through the pool that hands it out, for the thread that runs the hand-over.

_current = threading.local()


class _Cutoff:
    def __init__(self) -> None:
        self.connection = None  # the urllib3 connection the hand-over uses, once it has one
        self.expired = False
        self.done = threading.Event()

    def watch(self, seconds: float) -> None:
        if self.done.wait(seconds):
            return
        self.expired = True
        while True:  # again until the request gives up: its connection may still be opening
            sock = getattr(self.connection, "sock", None)
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if self.done.wait(0.05):
                return


@contextmanager
def deadline(seconds: float):
    """Requests made through a `deadline_session()` in this block end within `seconds`."""
    cutoff = _Cutoff()
    _current.cutoff = cutoff
    threading.Thread(target=cutoff.watch, args=(seconds,), daemon=True).start()
    try:
        yield cutoff
    finally:
        cutoff.done.set()
        _current.cutoff = None


class _Watched:
    """A connection pool that shows the current deadline which connection it handed out."""

    def _get_conn(self, timeout=None):
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        cutoff = getattr(_current, "cutoff", None)
        if cutoff is not None:
            cutoff.connection = connection
        return connection


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager


def deadline_session() -> requests.Session:
    """A session whose requests a `deadline` can cut short. As the Stream client's, it reads
    the proxy settings from the environment once, here, not (with ~/.netrc) on every request."""
    session = requests.Session()
    session.proxies = urllib.request.getproxies()
    session.trust_env = False
    session.mount("http://", _DeadlineAdapter())
    session.mount("https://", _DeadlineAdapter())
    return session


# --- Built from the settings, once per process -------------------------------------------

# How long a handed-over delivery id is remembered: Stream retries within 15 s; a day also
# covers a redelivery by hand, and lets the entries expire so the store stays bounded.
DELIVERY_MEMORY_SECONDS = 24 * 3600
# Events older than this (by their `created_at`) are acknowledged and not handed over: far
# past Stream's 15 s of retries, so a replay. Well inside DELIVERY_MEMORY_SECONDS, so that a
# replayed body is either remembered or stale.
MAX_EVENT_AGE_SECONDS = 3600


def open_delivery_store(settings: Settings):
    """Where webhook deliveries are claimed: Redis when REDIS_URL is set, else SQLite."""
    # A claim outlives the hand-over's deadline (the timeout, for the whole exchange) by a
    # little: two copies of a delivery are never in flight at once.
    claim_seconds = settings.primary_sync_timeout + 2
    if settings.redis_url:
        return RedisDeliveryStore(settings.redis_url, claim_seconds, DELIVERY_MEMORY_SECONDS)
    return SQLiteDeliveryStore(settings.webhook_db, claim_seconds, DELIVERY_MEMORY_SECONDS)


def build_handover(settings: Settings, origin_key: bytes) -> Handover:
    """The hand-over the webhook route calls, as the settings describe it."""
    signer = Webhook(settings.primary_sync_secret) if settings.primary_sync_secret else None
    return Handover(
        open_delivery_store(settings),
        deadline_session(),
        settings.primary_sync_url,
        settings.primary_sync_timeout,
        origin_key,
        signer,
        MAX_EVENT_AGE_SECONDS,
    )
