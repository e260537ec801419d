"""A local stand-in for Stream Chat's API, for tests and demos only: never for production.

It speaks the v1 paths this service calls, in Stream's shapes, and keeps users, channels and
messages in memory until it stops:

    POST   /users                          upsert users
    POST   /channels/{type}/query          get or create a distinct channel (id from members)
    POST   /channels/{type}/{id}/query     get or create a channel by id
    POST   /channels/{type}/{id}           update a channel (add_members, remove_members)
    PATCH  /channels/{type}/{id}           partial update of a channel's data (set / unset)
    GET    /members?payload=...            query a channel's members (limit, offset)
    GET    /users?payload=...              query users by id (deleted users are not shown)
    POST   /users/delete                   delete users (soft; messages soft or hard)
    DELETE /channels/{type}/{id}           delete a channel (?hard_delete=true)
    POST   /channels/{type}/{id}/message   send a message
    GET    /messages/{id}                  get a message
    PUT    /messages/{id}                  partial update (set / unset)
    DELETE /messages/{id}                  delete a message (?hard=true)

Every call needs the `api_key` query parameter and an `Authorization` JWT signed with the
API secret, as Stream does. Errors use Stream's body: `{"code", "message", "StatusCode", ...}`.

For tests: `GET /_stand_in/requests` lists what it received (method, path, query, body; the
last 10,000) and `DELETE /_stand_in/requests` forgets it; `GET /_stand_in/calls` counts every
API call since start. `--latency-ms` delays every API answer.

    python tools/stream_stand_in.py --port 8765 --api-key KEY --api-secret SECRET
"""

import argparse
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt

USER_ID = re.compile(r"[A-Za-z0-9@_-]{1,255}")
STATE_MESSAGES = 25


class StreamError(Exception):
    """An answer in Stream's error shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ChatState:
    """Users, channels and messages, as Stream would keep them; one lock guards them all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}  # cid -> channel
        self.messages: dict[str, dict] = {}  # message id -> message
        self.channel_messages: dict[str, list[str]] = {}  # cid -> its message ids, oldest first

    def upsert_users(self, body: dict) -> dict:
        users = body.get("users")
        if not isinstance(users, dict) or not users:
            raise StreamError(400, 4, "UpdateUsers failed with error: \"users is a required field\"")
        if len(users) > 100:
            raise StreamError(400, 4, "UpdateUsers failed with error: \"users is more than 100\"")
        for key, user in users.items():
            if not isinstance(user, dict) or user.get("id") != key or not USER_ID.fullmatch(key):
                raise StreamError(400, 4, f"UpdateUsers failed with error: \"user {key!r} is not valid\"")
        stamp = now()
        for user_id, user in users.items():
            created = self.users.get(user_id, {}).get("created_at", stamp)
            self.users[user_id] = {**user, "role": "user", "created_at": created, "updated_at": stamp}
        return {"users": {user_id: self.users[user_id] for user_id in users}}

    def get_or_create_channel(self, channel_type: str, channel_id: str | None, body: dict) -> dict:
        data = dict(body.get("data") or {})
        member_ids = [member.get("user_id") for member in data.pop("members", None) or []]
        if channel_id is None:
            if not member_ids:
                raise StreamError(400, 4, "GetOrCreateChannel failed with error: \"When using member "
                                          "based IDs specify the members\"")
            digest = hashlib.sha256(json.dumps(sorted(member_ids)).encode()).hexdigest()[:32]
            channel_id = f"!members-{digest}"
        cid = f"{channel_type}:{channel_id}"
        channel = self.channels.get(cid)
        if channel is None or channel["deleted_at"]:
            creator = (data.pop("created_by", None) or {}).get("id") or data.pop("created_by_id", None)
            missing = [user_id for user_id in [*member_ids, creator] if user_id and user_id not in self.users]
            if missing:
                raise StreamError(400, 4, "GetOrCreateChannel failed with error: \"The following users "
                                          f"are involved in channel create operation, but don't exist: "
                                          f"[{', '.join(missing)}]. Please create the user objects before "
                                          "setting up the channel.\"")
            stamp = now()
            channel = {**data, "id": channel_id, "type": channel_type, "cid": cid,
                       "created_by": self.users.get(creator), "created_at": stamp, "updated_at": stamp,
                       "deleted_at": None, "members": list(dict.fromkeys(member_ids))}
            self.channels[cid] = channel
            # A recreated channel starts empty, as Stream's does after a delete.
            for message_id in self.channel_messages.pop(cid, []):
                self.messages.pop(message_id, None)
        return self.channel_state(channel)

    def update_channel(self, cid: str, body: dict) -> dict:
        channel = self._channel(cid)
        added = [member.get("user_id") for member in body.get("add_members") or []]
        missing = [user_id for user_id in added if user_id not in self.users]
        if missing:
            raise StreamError(400, 4, f"UpdateChannel failed with error: \"users don't exist: {missing}\"")
        removed = set(body.get("remove_members") or [])
        channel["members"] = [user_id for user_id in dict.fromkeys([*channel["members"], *added])
                              if user_id not in removed]
        channel.update({key: value for key, value in (body.get("data") or {}).items() if key != "members"})
        return self.channel_state(channel)

    def delete_channel(self, cid: str, hard: bool) -> dict:
        channel = self._channel(cid)
        if hard:
            del self.channels[cid]
        else:
            channel["deleted_at"] = now()
        return {"channel": self._channel_response(channel)}

    def send_message(self, cid: str, body: dict) -> dict:
        channel = self._channel(cid)
        message = body.get("message")
        if not isinstance(message, dict):
            raise StreamError(400, 4, "SendMessage failed with error: \"message is a required field\"")
        user_id = (message.get("user") or {}).get("id") or message.get("user_id")
        if user_id not in self.users:
            raise StreamError(400, 4, f"SendMessage failed with error: \"user '{user_id}' doesn't exist\"")
        message_id = message.get("id") or hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:36]
        if message_id in self.messages:
            raise StreamError(400, 4, f"SendMessage failed with error: \"a message with ID {message_id} "
                                      "already exists\"")
        stamp = now()
        fields = {key: value for key, value in message.items() if key not in ("user", "user_id")}
        self.messages[message_id] = {
            **fields, "id": message_id, "type": "regular", "cid": cid, "user": self.users[user_id],
            "html": f"<p>{message.get('text', '')}</p>\n", "created_at": stamp, "updated_at": stamp,
            "deleted_at": None,
        }
        self.channel_messages.setdefault(cid, []).append(message_id)
        channel["last_message_at"] = stamp
        return {"message": self.messages[message_id]}

    def get_message(self, message_id: str) -> dict:
        return {"message": self._message(message_id)}

    def update_message_partial(self, message_id: str, body: dict) -> dict:
        message = self._message(message_id)
        message.update(body.get("set") or {})
        for field in body.get("unset") or []:
            message.pop(field, None)
        message["updated_at"] = now()
        return {"message": message}

    def delete_message(self, message_id: str, hard: bool) -> dict:
        message = self._message(message_id)
        if hard:
            del self.messages[message_id]
            self.channel_messages[message["cid"]].remove(message_id)
        else:
            message.update(type="deleted", deleted_at=message["deleted_at"] or now())
        return {"message": {**message, "type": "deleted"}}

    # --- Channel partial updates, members and user deletes -------------------------------

    def update_channel_partial(self, cid: str, body: dict) -> dict:
        channel = self._channel(cid)
        channel.update({key: value for key, value in (body.get("set") or {}).items() if key != "members"})
        for field in body.get("unset") or []:
            if field not in ("id", "type", "cid", "members"):
                channel.pop(field, None)
        channel["updated_at"] = now()
        state = self.channel_state(channel)
        return {"channel": state["channel"], "members": state["members"]}

    def query_members(self, query: dict) -> dict:
        payload = json.loads(query.get("payload") or "{}")
        channel = self._channel(f"{payload.get('type')}:{payload.get('id')}")
        offset, limit = int(payload.get("offset") or 0), int(payload.get("limit") or 100)
        return {"members": self.channel_state(channel)["members"][offset:offset + limit]}

    def query_users(self, query: dict) -> dict:
        payload = json.loads(query.get("payload") or "{}")
        wanted = (payload.get("filter_conditions") or {}).get("id", {}).get("$eq")
        return {"users": [user for user_id, user in self.users.items()
                          if user_id == wanted and not user.get("deleted_at")]}

    def delete_users(self, body: dict) -> dict:
        """Stream marks the users deleted at once and deletes their messages in a task; here
        the task is done before the answer."""
        stamp = now()
        for user_id in body.get("user_ids") or []:
            if user_id in self.users:
                self.users[user_id]["deleted_at"] = stamp
            if body.get("messages") in ("soft", "hard"):
                for message in [m for m in self.messages.values() if m["user"]["id"] == user_id]:
                    self.delete_message(message["id"], hard=body["messages"] == "hard")
        return {"task_id": hashlib.sha256(stamp.encode()).hexdigest()[:36]}

    # --- Edits made directly in Stream (a chat client, the dashboard), for tests -----------
    # Each changes the state as Stream would and returns the webhook event Stream would send.

    def edit_user_directly(self, user_id: str, **fields) -> dict:
        self.users[user_id].update(fields, updated_at=now())
        return {"type": "user.updated", "user": dict(self.users[user_id]), "created_at": now()}

    def edit_channel_directly(self, cid: str, **fields) -> dict:
        channel = self._channel(cid)
        channel.update(fields, updated_at=now())
        return self._channel_event("channel.updated", channel, channel=self._channel_response(channel))

    def add_member_directly(self, cid: str, user_id: str) -> dict:
        channel = self._channel(cid)
        channel["members"] = list(dict.fromkeys([*channel["members"], user_id]))
        return self._channel_event("member.added", channel, member={"user_id": user_id},
                                   user=self.users[user_id])

    def remove_member_directly(self, cid: str, user_id: str) -> dict:
        channel = self._channel(cid)
        channel["members"] = [member for member in channel["members"] if member != user_id]
        return self._channel_event("member.removed", channel, member={"user_id": user_id},
                                   user=self.users.get(user_id, {"id": user_id}))

    def send_message_directly(self, cid: str, user_id: str, message: dict) -> dict:
        """A chat client's message: it may choose the id and carry any custom field."""
        sent = self.send_message(cid, {"message": {**message, "user_id": user_id}})["message"]
        return self._channel_event("message.new", self._channel(cid), message=dict(sent), user=sent["user"])

    def edit_message_directly(self, message_id: str, text: str) -> dict:
        message = self.update_message_partial(message_id, {"set": {"text": text}})["message"]
        return self._channel_event("message.updated", self._channel(message["cid"]), message=dict(message),
                                   user=message["user"])

    def _channel_event(self, event_type: str, record: dict, **fields) -> dict:
        return {"type": event_type, "cid": record["cid"], "channel_type": record["type"],
                "channel_id": record["id"], "created_at": now(), **fields}

    def channel_state(self, channel: dict) -> dict:
        # Stream's channel state holds the latest messages only (25 unless asked for more).
        messages = [self.messages[mid] for mid in self.channel_messages.get(channel["cid"], [])[-STATE_MESSAGES:]]
        return {
            "channel": self._channel_response(channel),
            "members": [{"user_id": user_id, "user": self.users.get(user_id, {"id": user_id})}
                        for user_id in channel["members"]],
            "messages": messages,
        }

    def _channel_response(self, channel: dict) -> dict:
        fields = {key: value for key, value in channel.items() if key != "members"}
        return {**fields, "member_count": len(channel["members"])}

    def _channel(self, cid: str) -> dict:
        channel = self.channels.get(cid)
        if channel is None or channel["deleted_at"]:
            raise StreamError(404, 16, f"Can't find channel with id {cid}")
        return channel

    def _message(self, message_id: str) -> dict:
        if message_id not in self.messages:
            raise StreamError(404, 16, f"Message with id {message_id} not found")
        return self.messages[message_id]


ROUTES = [
    ("POST", re.compile(r"/users"), lambda s, m, q, b: s.upsert_users(b)),
    ("POST", re.compile(r"/channels/(?P<type>[^/]+)/query"),
     lambda s, m, q, b: s.get_or_create_channel(m["type"], None, b)),
    ("POST", re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)/query"),
     lambda s, m, q, b: s.get_or_create_channel(m["type"], m["id"], b)),
    ("POST", re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
     lambda s, m, q, b: s.update_channel(f"{m['type']}:{m['id']}", b)),
    ("DELETE", re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
     lambda s, m, q, b: s.delete_channel(f"{m['type']}:{m['id']}", q.get("hard_delete") == "true")),
    ("POST", re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)/message"),
     lambda s, m, q, b: s.send_message(f"{m['type']}:{m['id']}", b)),
    ("GET", re.compile(r"/messages/(?P<id>[^/]+)"), lambda s, m, q, b: s.get_message(m["id"])),
    ("PUT", re.compile(r"/messages/(?P<id>[^/]+)"),
     lambda s, m, q, b: s.update_message_partial(m["id"], b)),
    ("DELETE", re.compile(r"/messages/(?P<id>[^/]+)"),
     lambda s, m, q, b: s.delete_message(m["id"], q.get("hard") == "true")),
    ("PATCH", re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
     lambda s, m, q, b: s.update_channel_partial(f"{m['type']}:{m['id']}", b)),
    ("GET", re.compile(r"/members"), lambda s, m, q, b: s.query_members(q)),
    ("GET", re.compile(r"/users"), lambda s, m, q, b: s.query_users(q)),
    ("POST", re.compile(r"/users/delete"), lambda s, m, q, b: s.delete_users(b)),
]


class StandIn:
    """The stand-in's API, apart from any transport: the HTTP server below serves it, and the
    unit tests plug it into requests-mock."""

    def __init__(self, api_key: str, api_secret: str, latency_ms: float = 0) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.latency = latency_ms / 1000
        self.state = ChatState()
        self.received: deque[dict] = deque(maxlen=10_000)
        self.calls = 0  # every API call since start, for the benchmark's calls per request
        self.verified_tokens: set[str] = set()

    def answer(self, method: str, path: str, query: dict, raw_body: bytes,
               authorization: str | None) -> tuple[int, dict]:
        """Stream's status and JSON body for one API call."""
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, self._error(StreamError(400, 4, "invalid JSON body"))
        self.calls += 1
        # Kept without the api_key: what a test needs is the call, not the credentials.
        self.received.append({"method": method, "path": path, "body": body,
                              "query": {key: value for key, value in query.items() if key != "api_key"}})
        if self.latency:
            time.sleep(self.latency)
        try:
            self._authenticate(query, authorization)
            return 201, {**self._route(method, path, query, body), "duration": "0.10ms"}
        except StreamError as error:
            return error.status, self._error(error)

    def _authenticate(self, query: dict, authorization: str | None) -> None:
        if query.get("api_key") != self.api_key:
            raise StreamError(401, 2, "api_key not found")
        if not authorization:
            raise StreamError(401, 5, "Authorization header is missing")
        if authorization in self.verified_tokens:  # a server token is the same on every call
            return
        try:
            jwt.decode(authorization, self.api_secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as error:
            raise StreamError(401, 5, f"JWTAuth error: signature is not valid ({error})") from None
        if len(self.verified_tokens) < 100:
            self.verified_tokens.add(authorization)

    def _route(self, method: str, path: str, query: dict, body: dict) -> dict:
        for route_method, pattern, action in ROUTES:
            match = pattern.fullmatch(path)
            if match and method == route_method:
                with self.state.lock:
                    return action(self.state, match, query, body)
        raise StreamError(404, 16, f"{method} {path} is not served by the stand-in")

    @staticmethod
    def _error(error: StreamError) -> dict:
        return {"code": error.code, "message": error.message, "StatusCode": error.status,
                "duration": "0.00ms", "more_info": "https://getstream.io/chat/docs/api_errors_response",
                "details": []}


class StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: "StandInServer"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stand_in = self.server.stand_in
        if url.path == "/_stand_in/requests":
            if self.command == "DELETE":
                stand_in.received.clear()
            self._send(200, {"requests": list(stand_in.received)})
            return
        if url.path == "/_stand_in/calls":
            self._send(200, {"calls": stand_in.calls})
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self._send(*stand_in.answer(self.command, url.path, query, raw_body, self.headers.get("Authorization")))

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, stand_in: StandIn, verbose: bool = False) -> None:
        super().__init__(address, StandInHandler)
        self.stand_in = stand_in
        self.verbose = verbose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--api-secret", required=True)
    parser.add_argument("--latency-ms", type=float, default=0, help="delay before every API answer")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args()
    server = StandInServer((args.host, args.port),
                           StandIn(args.api_key, args.api_secret, args.latency_ms), args.verbose)
    print(f"Stream stand-in listening on http://{args.host}:{args.port} (test and demo only)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
