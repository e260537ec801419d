"""The hand-over: Stream's webhook events, given to the primary chat system once.

`Handover(store, session, primary_url, timeout, origin_key)` takes its collaborators as
arguments and knows nothing of HTTP routes: the webhook route in app.py verifies the delivery,
then calls `handle_once`. Each delivery is claimed in a store shared by every worker
(webhook_store.py), so that a retry landing on another worker is not handed over twice.
"""

from typing import Any, Callable

import requests

from mirror import is_primary_message
from webhook_store import Claim


class PrimarySyncFailed(Exception):
    """The primary system did not take an event; Stream is asked to retry (503)."""


class DeliveryBusy(Exception):
    """Another worker is handing this delivery over right now; Stream is asked to retry (503)."""


def event_message(event: dict[str, Any]) -> dict[str, Any]:
    """The event's `message` object, or {} for events without one."""
    message = event.get("message")
    return message if isinstance(message, dict) else {}


class Handover:
    def __init__(self, store, session: requests.Session, primary_url: str | None, timeout: float,
                 origin_key: bytes) -> None:
        self.store, self.session = store, session
        self.primary_url, self.timeout, self.origin_key = primary_url, timeout, origin_key
        # What to do with each event type; any other type is acknowledged and ignored. Updates
        # and deletes are forwarded even when the mirror made them (see the README's "Webhooks").
        self.handlers: dict[str, Callable[[dict[str, Any], str | None], str]] = {
            "message.new": self.forward_unless_echo,
            "message.updated": self.forward,
            "message.deleted": self.forward,
            "message.undeleted": self.forward,
            "reaction.new": self.forward,
            "reaction.updated": self.forward,
            "reaction.deleted": self.forward,
        }

    def handle_once(self, event: dict[str, Any], webhook_id: str | None) -> str:
        """Handle a delivery unless a worker already did or is doing it; the outcome's name."""
        handler = self.handlers.get(event["type"])
        if handler is None:
            return "ignored"
        if webhook_id is None:  # Stream always sends one; without it there is nothing to match on
            return handler(event, None)
        claim = self.store.claim(webhook_id)
        if claim.outcome is Claim.DONE:
            return "duplicate"
        if claim.outcome is Claim.BUSY:
            raise DeliveryBusy(webhook_id)
        try:
            outcome = handler(event, webhook_id)
        except BaseException:
            self.store.release(webhook_id, claim.token)  # so that Stream's retry can succeed
            raise
        self.store.complete(webhook_id, claim.token)
        return outcome

    def forward(self, event: dict[str, Any], webhook_id: str | None) -> str:
        """Hand the event, as Stream sent it, to the primary system. Without its URL, the
        route's log line is the handling."""
        if self.primary_url is None:
            return "logged"
        try:
            answer = self.session.post(self.primary_url, json=event, headers={"X-Webhook-Id": webhook_id or ""},
                                       timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise PrimarySyncFailed(f"the primary system could not be reached: {type(error).__name__}") from None
        if not 200 <= answer.status_code < 300:
            raise PrimarySyncFailed(f"the primary system answered HTTP {answer.status_code}")
        return "forwarded"

    def forward_unless_echo(self, event: dict[str, Any], webhook_id: str | None) -> str:
        """`message.new`: a message the mirror sent came from the primary system: skip it."""
        if is_primary_message(self.origin_key, event_message(event), event.get("cid")):
            return "echo"
        return self.forward(event, webhook_id)
