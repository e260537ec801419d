"""The hand-over: which of Stream's webhook events go to the primary chat system, decided when
the webhook receives them, and the accepted ones recorded in the delivery queue.

`Handover(queue, origin_key, ...)` takes its collaborators as arguments and knows nothing of
HTTP: the webhook route in app.py verifies the request (body.py), then calls `accept`, which
answers at once, whatever the primary system is doing: the queue holds the event durably, and
the delivery workers (delivery.py) post it to the primary, in order per channel, on a schedule
that outlasts its outages. `build_handover(settings, origin_key)` builds it from the settings,
once per process, with this process's delivery worker.

Stream's advice for webhooks is "read, store and forget"
(https://getstream.io/chat/docs/python/webhooks_overview/): Stream waits 6 s for an answer and
retries for about 15 s, past which an event not stored is gone.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from stream_backend.handover.delivery import Deliverer, DeliveryWorker, Schedule
from stream_backend.handover.queue import Incoming, Queue, SQLiteQueue
from stream_backend.handover.queue_redis import RedisQueue
from stream_backend.mirror.origin import is_primary_message
from stream_backend.settings import Settings
from stream_backend.stream.client import http_session

# The events handed over; any other type is acknowledged and ignored. Updates and deletes are
# handed over even when the mirror made them (docs/webhooks.md): the primary system decides.
HANDED_OVER = frozenset(
    {
        "message.new",
        "message.updated",
        "message.deleted",
        "message.undeleted",
        "reaction.new",
        "reaction.updated",
        "reaction.deleted",
    }
)

# Events older than this (by their `created_at`) are acknowledged and not handed over: far
# past Stream's 15 s of retries, so a replay. Well inside DEDUPE_SECONDS, so that a replayed
# body is either remembered or stale.
MAX_EVENT_AGE_SECONDS = 3600
# How long a delivered event is kept, its body's digest deduplicating Stream's retries and
# replays: a day, then it is pruned.
DEDUPE_SECONDS = 24 * 3600


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
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def event_lane(event: dict[str, Any], digest: str) -> str:
    """The lane an event is delivered in, in order: its channel (`cid`); an event without
    one, its user's; an event with neither, its own."""
    if isinstance(event.get("cid"), str):
        return event["cid"]
    user = event.get("user")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return f"user:{user['id']}"
    return f"event:{digest}"


@dataclass
class Handover:
    """Decides each event's outcome: "ignored" (a type not handed over), "stale" (a replay),
    "echo" (a message the mirror sent), "logged" (no primary system set), "duplicate" (accepted
    before), or "queued" (accepted now, to be delivered). Raises StoreUnavailable (QueueFull
    among them) when the queue cannot take it: the webhook answers 503, and Stream retries."""

    queue: Queue | None  # None: no PRIMARY_SYNC_URL; events are logged, not handed over
    origin_key: bytes
    max_event_age: float = MAX_EVENT_AGE_SECONDS
    worker: DeliveryWorker | None = None  # this process's deliveries, if it delivers (started by start())
    clock: Callable[[], float] = time.time

    def accept(self, event: dict[str, Any], webhook_id: str | None, signed_body: bytes) -> str:
        if event["type"] not in HANDED_OVER:
            return "ignored"
        created = event_time(event)
        if created is not None and self.clock() - created > self.max_event_age:
            return "stale"
        if event["type"] == "message.new" and is_primary_message(
            self.origin_key, event_message(event), event.get("cid")
        ):
            return "echo"
        if self.queue is None:
            return "logged"
        digest = hashlib.sha256(signed_body).hexdigest()
        message_id = event_message(event).get("id")
        accepted, _ = self.queue.accept(
            Incoming(
                body=signed_body,
                digest=digest,
                webhook_id=webhook_id,
                lane=event_lane(event, digest),
                created_at=created if created is not None else self.clock(),
                type=event["type"],
                message_id=message_id if isinstance(message_id, str) else None,
            )
        )
        if not accepted:
            return "duplicate"
        if self.worker is not None:
            self.worker.wake()
        return "queued"

    def start(self) -> None:
        """Start this process's deliveries, if it has any; later calls do nothing. The web
        service calls it when it starts serving (gunicorn's post_worker_init, or a first
        request), never at import or in a command."""
        if self.worker is not None:
            self.worker.start()

    def close(self) -> None:
        """Stop this process's deliveries (those under way finish, or their leases expire)."""
        if self.worker is not None:
            self.worker.stop()


# --- Built from the settings, once per process -------------------------------------------


def open_queue(settings: Settings) -> Queue:
    """The delivery queue: in Redis when REDIS_URL is set, else in the SQLite file. Nothing is
    opened yet: a store that cannot be opened makes the webhook answer 503, and nothing else."""
    if settings.redis_url:
        return RedisQueue(settings.redis_url, settings.primary_sync_max_pending)
    return SQLiteQueue(settings.webhook_db, settings.primary_sync_max_pending)


def build_deliverer(settings: Settings, queue: Queue, primary_url: str, threads: int) -> Deliverer:
    """Posts the queue's events to `primary_url`, signed when PRIMARY_SYNC_SECRET is set."""
    signer = Webhook(settings.primary_sync_secret) if settings.primary_sync_secret else None
    waits = settings.primary_sync_retry_schedule
    schedule = Schedule(waits, jitter=0) if waits is not None else Schedule()
    return Deliverer(queue, http_session(threads), primary_url, settings.primary_sync_timeout, schedule, signer)


def housekeeping(settings: Settings, queue: Queue) -> Callable[[], None]:
    """Pruning, in bounded batches: delivered events after DEDUPE_SECONDS, failed ones after
    PRIMARY_SYNC_KEEP_DAYS."""

    def prune() -> None:
        now = time.time()
        while queue.prune(now - DEDUPE_SECONDS, now - settings.primary_sync_keep_days * 86400) == 1000:
            pass

    return prune


def build_handover(settings: Settings, origin_key: bytes, deliver: bool = True) -> Handover:
    """The hand-over the webhook route calls. With PRIMARY_SYNC_URL and `deliver`, this
    process also delivers, in PRIMARY_SYNC_THREADS threads (0: another process does, such as
    `flask --app app deliver`), once `start()` is called."""
    if settings.primary_sync_url is None:
        return Handover(None, origin_key)
    queue = open_queue(settings)
    threads = settings.primary_sync_threads if deliver else 0
    worker = None
    if threads > 0:
        deliverer = build_deliverer(settings, queue, settings.primary_sync_url, threads)
        worker = DeliveryWorker(deliverer, threads, housekeeping(settings, queue))
    return Handover(queue, origin_key, worker=worker)
