"""What JSON Schema cannot say about this API, told to schemathesis (SCHEMATHESIS_HOOKS).

- A channel's creator must be one of its members (or, for `/message`, the sender).
- A webhook delivery is signed with the API secret and names this app's key, as Stream's are
  (gzipped when the case says so).

The service's settings come from the environment the run shares with it.
"""

import gzip
import hashlib
import hmac
import json
import os

import schemathesis


@schemathesis.hook
def map_body(context, body):
    """Make the generated creator one of the members, where the body has both."""
    path = context.operation.path if context.operation else None
    if path in ("/channel", "/message") and isinstance(body, dict):
        channel, members = body.get("channel"), body.get("members")
        if isinstance(channel, dict) and isinstance(members, dict) and members and "creator_id" in channel:
            channel["creator_id"] = next(iter(members))
    return body


@schemathesis.hook
def before_call(context, case, kwargs):
    """Sign the webhook's body as Stream does: X-Signature is the hex HMAC-SHA256 of the JSON
    bytes (gzipped after signing when the case says `Content-Encoding: gzip`), so the body is
    serialized here and sent as it is."""
    if case.operation.path != "/stream-incoming-wh" or not isinstance(case.body, dict):
        return
    raw = json.dumps(case.body).encode()
    headers = {**(case.headers or {}), "X-Api-Key": os.environ["STREAM_API_KEY"],
               "X-Signature": hmac.new(os.environ["STREAM_API_SECRET"].encode(), raw, hashlib.sha256).hexdigest()}
    case.body = gzip.compress(raw) if headers.get("Content-Encoding") == "gzip" else raw
    case.headers = headers
