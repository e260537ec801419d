"""What JSON Schema cannot say about this API, told to schemathesis (SCHEMATHESIS_HOOKS).

- A channel's creator must be one of its members (or, for `/message`, the sender), and a
  channel without an id (the distinct channel of its members) has at least two.
- A webhook delivery is signed with the API secret and names this app's key, as Stream's are
  (gzipped when the case says so).
- With TOKEN_AUTH=jwt, a caller sends a bearer: SYNC_API_TOKEN, or a session JWT for a token.
- A scraper of /metrics sends METRICS_TOKEN, in either mode.

The service's settings come from the environment the run shares with it.
"""

import gzip
import hashlib
import hmac
import json
import os
import time

import jwt
import schemathesis


@schemathesis.hook
def map_body(context, body):
    """Make the generated creator one of the members, where the body has both, and give a
    channel without an id a second member."""
    path = context.operation.path if context.operation else None
    if path in ("/channel", "/message") and isinstance(body, dict):
        channel, members = body.get("channel"), body.get("members")
        if isinstance(channel, dict) and isinstance(members, dict) and members:
            if "creator_id" in channel:
                channel["creator_id"] = next(iter(members))
            if channel.get("id") is None and len(members) < 2:
                members["a-second-member"] = {}
    return body


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path == "/stream-incoming-wh":
        sign_webhook(case)
    elif case.operation.path == "/metrics":
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}
    elif os.environ.get("TOKEN_AUTH") == "jwt":
        send_bearer(case)


def send_bearer(case):
    """With TOKEN_AUTH=jwt: the sync routes' SYNC_API_TOKEN, and for a token, a session JWT
    whose user is the one the body asks for (any other is a 403, by design)."""
    if case.operation.path == "/generate-token":
        user_id = case.body.get("user_id") if isinstance(case.body, dict) else None
        claims = {"sub": user_id if isinstance(user_id, str) else "tommaso", "exp": int(time.time()) + 600}
        token = jwt.encode(claims, os.environ["AUTH_JWT_SECRET"], algorithm="HS256")
    else:
        token = os.environ["SYNC_API_TOKEN"]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


def sign_webhook(case):
    """Sign the webhook's body as Stream does: X-Signature is the hex HMAC-SHA256 of the JSON
    bytes (gzipped after signing when the case says `Content-Encoding: gzip`), so the body is
    serialized here and sent as it is."""
    if not isinstance(case.body, dict):
        return
    raw = json.dumps(case.body).encode()
    headers = {
        **(case.headers or {}),
        "X-Api-Key": os.environ["STREAM_API_KEY"],
        "X-Signature": hmac.new(os.environ["STREAM_API_SECRET"].encode(), raw, hashlib.sha256).hexdigest(),
    }
    case.body = gzip.compress(raw) if headers.get("Content-Encoding") in ("gzip", "x-gzip") else raw
    case.headers = headers
