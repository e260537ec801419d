"""Delivery: the queue's events posted to the primary system, on a schedule that outlasts its
outages.

- `Schedule`: the waits between attempts. By default Svix's (at once, then 5 s, 1 min, 5 min,
  30 min, 2 h, 5 h, 10 h, 10 h: about 28 h), each wait jittered by up to 10% either way so that
  a backlog does not come back all at once; PRIMARY_SYNC_RETRY_SCHEDULE replaces it with waits
  of its own, unjittered (tests and demos use short ones).
- `Deliverer.attempt(lease)`: one attempt of one event: the signed body as Stream sent it, byte
  for byte, with `X-Webhook-Id` and (with a signer) the Standard Webhooks headers, the same id
  on every attempt. A 2xx is delivered; anything else, or no answer within `timeout`, is a
  failure: the event waits for its next attempt (at least the `Retry-After` of a 429 or 503),
  or, its schedule used up, is kept as failed and its channel moves on.
- `DeliveryWorker`: the attempts in this process, in threads of their own: one leases the due
  lanes (the queue keeps each lane in one place at a time) and keeps the leases of the
  attempts under way alive, the others attempt. A request thread never waits on the primary.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from standardwebhooks import Webhook

from stream_backend.errors import StoreUnavailable
from stream_backend.handover.queue import Lease, Queue

log = logging.getLogger("stream_backend.handover")

# Svix's waits after each failed attempt (https://docs.svix.com/retries): about 28 hours.
DEFAULT_WAITS = (5, 60, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
JITTER = 0.1
# Of the primary's answer only the status counts; a little of its body is read so that a short
# answer leaves the connection reusable, and no more, whatever the primary sends.
MAX_ANSWER_BYTES = 4096
# A lane is leased for at most this long (twice an attempt's timeout and some more, when that
# is shorter), and the lease renewed while its attempt is under way: a process killed
# mid-attempt frees its lanes within that time.
MAX_LEASE_SECONDS = 60


def lease_for(timeout: float) -> float:
    return min(MAX_LEASE_SECONDS, 2 * timeout + 10)


# The longest a Retry-After may push an attempt back.
MAX_RETRY_AFTER_SECONDS = 24 * 3600


class Schedule:
    """The waits between attempts: `waits[n]` after the (n+1)th failed attempt, jittered by
    up to `jitter` (a fraction) either way."""

    def __init__(
        self, waits: tuple[float, ...] = DEFAULT_WAITS, jitter: float = JITTER, rng: random.Random | None = None
    ) -> None:
        self.waits, self.jitter, self.rng = waits, jitter, rng or random.Random()

    @property
    def attempts(self) -> int:
        return len(self.waits) + 1

    def wait_after(self, failed_attempts: int) -> float | None:
        """Seconds until the next attempt after `failed_attempts` failures; None: give up."""
        if failed_attempts > len(self.waits):
            return None
        wait = self.waits[failed_attempts - 1]
        return wait * (1 + self.rng.uniform(-self.jitter, self.jitter))


class Deliverer:
    """Attempts events for the primary system at `primary_url` (its collaborators as
    arguments, as the rest of the hand-over)."""

    def __init__(
        self,
        queue: Queue,
        session: requests.Session,
        primary_url: str,
        timeout: float,
        schedule: Schedule,
        signer: Webhook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue, self.session, self.primary_url, self.timeout = queue, session, primary_url, timeout
        self.schedule, self.signer, self.clock = schedule, signer, clock

    def attempt(self, lease: Lease) -> str:
        """One attempt of the leased event, its outcome recorded: "delivered", "retrying",
        "failed", or "lost" when the lease was no longer ours (another process has the lane)."""
        event = lease.event
        status, retry_after, problem = self.post(event.id, event.body)
        if status is not None and 200 <= status < 300:
            return "delivered" if self.queue.delivered(lease) else "lost"
        attempts = event.attempts + 1
        wait = self.schedule.wait_after(attempts)
        context = f"event {event.id} ({event.type}, lane {event.lane}, message {event.message_id})"
        if wait is None:
            log.warning("gave up on %s after %d attempts: %s", context, attempts, problem)
            return "failed" if self.queue.give_up(lease, problem) else "lost"
        wait = max(wait, min(retry_after or 0, MAX_RETRY_AFTER_SECONDS))
        log.info("%s not delivered (attempt %d): %s; next attempt in %.0f s", context, attempts, problem, wait)
        return "retrying" if self.queue.retry_later(lease, self.clock() + wait, problem) else "lost"

    def post(self, event_id: str, body: bytes) -> tuple[int | None, float | None, str]:
        """The primary's status for one attempt, its Retry-After (for a 429 or 503), and the
        problem in words; reads at most MAX_ANSWER_BYTES of the answer."""
        try:
            with self.session.post(
                self.primary_url,
                data=body,
                timeout=self.timeout,
                stream=True,
                headers=self.headers(event_id, body),
                allow_redirects=False,
            ) as answer:
                received = 0
                for chunk in answer.iter_content(1024):
                    received += len(chunk)
                    if received >= MAX_ANSWER_BYTES:
                        break
                retry_after = retry_after_seconds(answer.headers.get("Retry-After"), self.clock())
                status = answer.status_code
        except requests.Timeout:
            return None, None, f"the primary system did not answer within {self.timeout:g} s"
        except requests.RequestException as error:
            return None, None, f"the primary system could not be reached: {type(error).__name__}"
        return status, retry_after if status in (429, 503) else None, f"the primary system answered HTTP {status}"

    def headers(self, event_id: str, body: bytes) -> dict[str, str]:
        """`X-Webhook-Id` as Stream names it and, with a signer, the Standard Webhooks headers
        (https://www.standardwebhooks.com): the same id, the time, and `v1,<signature>`."""
        headers = {"Content-Type": "application/json", "X-Webhook-Id": event_id}
        if self.signer is not None:
            now = datetime.fromtimestamp(int(self.clock()), UTC)
            # The body is UTF-8 (body.signed_json refuses any other): the library signs
            # `id.timestamp.body` encoded back to these very bytes.
            headers.update(
                {
                    "webhook-id": event_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self.signer.sign(event_id, now, body.decode()),
                }
            )
        return headers


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` header in seconds from now: delay-seconds or an HTTP date (RFC 9110,
    10.2.3), whole or not; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no time


class DeliveryWorker:
    """This process's deliveries: a thread that leases due lanes (at most `threads` at once),
    keeps the leases of the attempts under way alive and prunes the queue now and then, and
    `threads` threads that attempt. `wake()` starts a look at the queue at once (the webhook
    calls it after an accept); otherwise it looks every `poll_seconds`."""

    def __init__(
        self,
        deliverer: Deliverer,
        threads: int,
        housekeeping: Callable[[], None],
        poll_seconds: float = 0.5,
        housekeeping_seconds: float = 60,
        lease_seconds: float | None = None,
    ) -> None:
        self.deliverer, self.threads, self.housekeeping = deliverer, threads, housekeeping
        self.poll_seconds, self.housekeeping_seconds = poll_seconds, housekeeping_seconds
        self.lease_seconds = lease_seconds or lease_for(deliverer.timeout)
        self.renew_seconds = self.lease_seconds / 4
        self._wake, self._stop = threading.Event(), threading.Event()
        self._under_way: dict[str, Lease] = {}  # event id -> its lease, while attempted
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="delivery")
        self._thread = threading.Thread(target=self._run, name="delivery-leases", daemon=True)

    def start(self) -> "DeliveryWorker":
        """Start delivering, once; later calls do nothing."""
        with self._lock:
            if not self._thread.is_alive() and not self._stop.is_set():
                self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        renewed_at = cleaned_at = 0.0
        while not self._stop.is_set():
            self._wake.clear()  # before the look: a wake-up during it makes the next one at once
            try:
                self._lease_free_lanes()
                now = time.monotonic()
                if now - renewed_at >= self.renew_seconds:
                    self._renew()
                    renewed_at = now
                if now - cleaned_at >= self.housekeeping_seconds:
                    self.housekeeping()
                    cleaned_at = now
            except StoreUnavailable as error:  # the store comes back: try again at the next look
                log.warning("delivery queue unavailable: %s", error)
            except Exception:  # noqa: BLE001 -- a bug of ours must not stop every delivery of the process
                log.exception("delivery loop failed; going on")
            self._wake.wait(self.poll_seconds)

    def _lease_free_lanes(self) -> None:
        with self._lock:
            free = self.threads - len(self._under_way)
        if free <= 0:
            return
        for lease in self.deliverer.queue.lease(free, self.lease_seconds):
            with self._lock:
                self._under_way[lease.event.id] = lease
            self._pool.submit(self._attempt, lease)

    def _attempt(self, lease: Lease) -> None:
        try:
            self.deliverer.attempt(lease)
        except StoreUnavailable as error:  # the outcome is not recorded: the lease expires, and it is tried again
            log.warning("outcome of event %s not recorded: %s", lease.event.id, error)
        except Exception:  # noqa: BLE001 -- as above: one event's bug must not end the thread
            log.exception("attempt of event %s failed", lease.event.id)
        finally:
            with self._lock:
                self._under_way.pop(lease.event.id, None)
            self._wake.set()  # a thread is free, and the lane's next event may be due

    def _renew(self) -> None:
        with self._lock:
            under_way = list(self._under_way.values())
        for lease in under_way:
            self.deliverer.queue.extend(lease, self.lease_seconds)
