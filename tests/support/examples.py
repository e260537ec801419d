"""Request bodies from the reference's Postman collection, and Stream's webhook signing."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

API_KEY = "test-key"
API_SECRET = "test-secret-" + "s" * 32
# PRIMARY_SYNC_SECRET, as Standard Webhooks writes secrets: "whsec_" and 32 bytes in base64.
PRIMARY_SYNC_SECRET = "whsec_" + base64.b64encode(b"the primary system's sync key 32").decode()

CHANNEL_BODY = {
    "channel": {"creator_id": "tommaso", "custom_data": {"title": "Just a test"}},
    "members": {
        "tommaso": {"name": "Tommaso", "image": ""},
        "thierry": {"name": "Thierry", "image": ""},
    },
}

MESSAGE_BODY = {
    "message": {"id": "123-456-789-01234", "text": "hello there!"},
    **CHANNEL_BODY,
    "user": {"id": "tommaso", "name": "Tommaso", "image": ""},
}


def sign(body: bytes, secret: str = API_SECRET) -> str:
    """Stream's X-Signature: hex HMAC-SHA256 of the (uncompressed) body with the API secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_event(event_type="message.new", **fields) -> bytes:
    """A Stream event as Stream sends it, created now (older events are refused as replays)."""
    event = {
        "type": event_type,
        "cid": "messaging:fun",
        "channel_type": "messaging",
        "channel_id": "fun",
        "message": {"id": "m-1", "text": "hi", "html": "<p>hi</p>", "type": "regular", "user": {"id": "thierry"}},
        "user": {"id": "thierry"},
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        **fields,
    }
    return json.dumps(event).encode()


def origin_mark(message_id: str, cid: str, user_id: str, secret: str = API_SECRET) -> str:
    """The mark the service puts on the messages it sends (mirror.ORIGIN_FIELD), computed here
    independently: an HMAC-SHA256 of the JSON list [message id, cid, sender id], keyed with
    HMAC-SHA256(API secret, "primary-origin"), 32 hex digits."""
    key = hmac.new(secret.encode(), b"primary-origin", hashlib.sha256).digest()
    return hmac.new(key, json.dumps([message_id, cid, user_id]).encode(), hashlib.sha256).hexdigest()[:32]
