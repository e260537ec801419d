"""Request bodies from the reference's Postman collection, and Stream's webhook signing."""

import hashlib
import hmac
import json

API_KEY = "test-key"
API_SECRET = "test-secret-" + "s" * 32

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
    event = {
        "type": event_type,
        "cid": "messaging:fun",
        "channel_type": "messaging",
        "channel_id": "fun",
        "message": {"id": "m-1", "text": "hi", "html": "<p>hi</p>", "type": "regular",
                    "user": {"id": "thierry"}},
        "user": {"id": "thierry"},
        "created_at": "2026-11-24T10:00:00.000000Z",
        **fields,
    }
    return json.dumps(event).encode()


def origin_mark(message_id: str, cid: str, user_id: str, secret: str = API_SECRET) -> str:
    """The mark the service puts on the messages it sends (mirror.ORIGIN_FIELD), computed here
    independently: an HMAC-SHA256 of the JSON list [message id, cid, sender id], keyed with
    HMAC-SHA256(API secret, "primary-origin"), 32 hex digits."""
    key = hmac.new(secret.encode(), b"primary-origin", hashlib.sha256).digest()
    return hmac.new(key, json.dumps([message_id, cid, user_id]).encode(), hashlib.sha256).hexdigest()[:32]
