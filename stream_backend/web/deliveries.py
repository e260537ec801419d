"""The delivery queue's commands, run with the service's settings and `.env`:

    flask --app app deliver [--threads N]                 deliver in this process, until stopped
    flask --app app deliveries status [--json]            pending, in flight, failed, delivered
    flask --app app deliveries list [--failed] [--cid CID] [--limit N] [--json]
    flask --app app deliveries retry ID | --failed        failed events pending again
    flask --app app deliveries replay --since TIME        delivered events sent again

The work is the queue's (handover/queue.py); this module reads the options and prints. Exit
status: 0 when done; 1 when `retry` found nothing to retry; 2 when the store cannot be used.
"""

import contextlib
import json
import re
import signal
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import click
from flask import Flask
from flask.cli import with_appcontext

from stream_backend.errors import StoreUnavailable
from stream_backend.handover.delivery import DeliveryWorker
from stream_backend.handover.handover import build_deliverer, housekeeping, open_queue
from stream_backend.handover.queue import Event, Queue
from stream_backend.web.commands import settings

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(app: Flask) -> None:
    app.cli.add_command(deliver)
    app.cli.add_command(deliveries)


def _queue() -> Queue:
    return open_queue(settings())


def _when(moment: float | None) -> str:
    return "-" if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _age(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _since(text: str) -> float:
    """A moment: an RFC 3339 / ISO 8601 time (`2026-12-01T09:00:00Z`), or a duration ago (`2h`)."""
    duration = DURATION.fullmatch(text.strip())
    if duration:
        return time.time() - float(duration.group(1)) * UNITS[duration.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a time (2026-12-01T09:00:00Z) nor a duration (2h)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _event_json(event: Event) -> dict:
    fields = asdict(event)
    fields["body"] = json.loads(event.body)
    return fields


def _unavailable(error: StoreUnavailable) -> None:
    click.echo(f"The delivery queue is unavailable: {error}", err=True)
    raise SystemExit(2)


@click.command("deliver")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True, help="Attempts at a time.")
@with_appcontext
def deliver(threads: int) -> None:
    """Deliver the queue's events to PRIMARY_SYNC_URL in this process, until stopped (Ctrl-C
    or SIGTERM). The web processes may deliver too: the queue keeps each channel in one place."""
    config = settings()
    if config.primary_sync_url is None:
        click.echo("PRIMARY_SYNC_URL is not set: there is nowhere to deliver to.", err=True)
        raise SystemExit(2)
    queue = open_queue(config)
    worker = DeliveryWorker(
        build_deliverer(config, queue, config.primary_sync_url, threads), threads, housekeeping(config, queue)
    ).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    click.echo(f"Delivering to {config.primary_sync_url} with {threads} threads; Ctrl-C stops.")
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    worker.stop()


@click.group("deliveries")
def deliveries() -> None:
    """See and replay the deliveries to the primary system."""


@deliveries.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@with_appcontext
def status(as_json: bool) -> None:
    """Pending (and in flight), failed, delivered in the last hour, and the oldest pending's age."""
    try:
        now = _queue().status()
    except StoreUnavailable as error:
        _unavailable(error)
    if as_json:
        click.echo(json.dumps(asdict(now)))
        return
    oldest = "" if now.oldest_pending_age is None else f", the oldest waiting {_age(now.oldest_pending_age)}"
    click.echo(f"pending: {now.pending} ({now.in_flight} in flight{oldest})")
    click.echo(f"failed: {now.failed}")
    click.echo(f"delivered in the last hour: {now.delivered_last_hour}")


@deliveries.command("list")
@click.option("--failed", is_flag=True, help="Only the failed events.")
@click.option("--pending", is_flag=True, help="Only the pending events.")
@click.option("--cid", help="Only the events of this channel (or lane, such as user:<id>).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="The latest N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, the body included.")
@with_appcontext
def list_events(failed: bool, pending: bool, cid: str | None, limit: int, as_json: bool) -> None:
    """The latest events, oldest first: when accepted, state, id, type, channel, attempts, last problem."""
    state = "failed" if failed else "pending" if pending else None
    try:
        events = _queue().events(state, cid, limit)  # type: ignore[arg-type]
    except StoreUnavailable as error:
        _unavailable(error)
    for event in events:
        if as_json:
            click.echo(json.dumps(_event_json(event)))
        else:
            click.echo(
                f"{_when(event.accepted_at)}  {event.state:<9}  {event.id}  {event.type}  {event.lane}  "
                f"attempts={event.attempts}" + (f"  {event.last_error}" if event.last_error else "")
            )


@deliveries.command("retry")
@click.argument("event_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed event.")
@with_appcontext
def retry(event_id: str | None, all_failed: bool) -> None:
    """A failed event (by its id), or every one, pending again from its first attempt."""
    if (event_id is None) == (not all_failed):
        raise click.UsageError("give an event id or --failed (not both)")
    try:
        count = _queue().retry_failed(None if all_failed else event_id)
    except StoreUnavailable as error:
        _unavailable(error)
    click.echo(f"{count} failed event{'s' if count != 1 else ''} pending again")
    raise SystemExit(0 if count else 1)


@deliveries.command("replay")
@click.option("--since", required=True, help="A time (2026-12-01T09:00:00Z) or a duration ago (2h).")
@with_appcontext
def replay(since: str) -> None:
    """Send again, under their ids, the events delivered since TIME (as after the primary
    system restored a backup). Delivered events are kept a day."""
    try:
        count = _queue().replay(_since(since))
    except StoreUnavailable as error:
        _unavailable(error)
    click.echo(f"{count} delivered event{'s' if count != 1 else ''} pending again")
