"""The origin mark: a custom field on the messages the mirror sends, that says they came from
the primary system.

Their `message.new` webhook is then not fed back to it (handover/), and a retry that finds the
id taken knows whether the stored message is its own. The mark is an HMAC of the message id,
its cid and its sender, with a key derived from the API secret: no chat client can forge it,
nor move it to another id, channel or sender. It adds 51 bytes to the message's 5 KB of
custom data.
"""

import hashlib
import hmac
import json
from typing import Any

from stream_backend.stream.rules import ORIGIN_FIELD

__all__ = ["ORIGIN_FIELD", "derive_origin_key", "is_primary_message", "origin_mark"]


def derive_origin_key(api_secret: str) -> bytes:
    """The origin mark's key: derived from the API secret, so that the secret itself signs
    nothing but what Stream expects it to."""
    return hmac.new(api_secret.encode(), b"primary-origin", hashlib.sha256).digest()


def origin_mark(origin_key: bytes, message_id: str, cid: str, user_id: str) -> str:
    bound = json.dumps([message_id, cid, user_id]).encode()
    return hmac.new(origin_key, bound, hashlib.sha256).hexdigest()[:32]


def is_primary_message(origin_key: bytes, message: dict[str, Any], cid: str | None = None) -> bool:
    """Whether `message` (as in a webhook event or Stream's answer) carries a mark of the
    mirror's that verifies for its own id, cid (the message's, else `cid`) and sender."""
    mark, message_id = message.get(ORIGIN_FIELD), message.get("id")
    message_cid = message.get("cid") or cid
    user = message.get("user")
    user_id = user.get("id") if isinstance(user, dict) else message.get("user_id")
    if not (
        isinstance(mark, str)
        and isinstance(message_id, str)
        and isinstance(message_cid, str)
        and isinstance(user_id, str)
    ):
        return False
    return hmac.compare_digest(mark.encode(), origin_mark(origin_key, message_id, message_cid, user_id).encode())
