"""A local stand-in for Stream Chat's API, for tests and demos only: never for production.

It speaks the v1 paths this service calls, in Stream's shapes, and keeps users, channels and
messages in memory until it stops:

    POST   /users                          upsert users
    POST   /channels/{type}/query          get or create a distinct channel (id from members)
    POST   /channels/{type}/{id}/query     get or create a channel by id
    POST   /channels/{type}/{id}           update a channel (add_members, remove_members)
    PATCH  /channels/{type}/{id}           partial update of a channel's data (set / unset)
    POST   /users/delete                   delete users (soft; messages soft or hard)
    DELETE /channels/{type}/{id}           delete a channel (?hard_delete=true)
    POST   /channels/{type}/{id}/message   send a message
    GET    /messages/{id}                  get a message
    PUT    /messages/{id}                  partial update (set / unset)
    DELETE /messages/{id}                  delete a message (?hard=true)

It answers as Stream's own SDK test suites show Stream answering (docs/stream-behaviour.md,
each behaviour checked by tests/tools/test_stream_behaviour.py): POSTs and PUTs 201, the rest
200; errors in Stream's body, `{"code", "message", "StatusCode", ...}`, whose message names
the operation (`SendMessage failed with error: "..."`). A message that does not exist is
answered in today's form (code 16, "message with id ... doesn't exist") or, with
`--message-not-found-code 4`, in the form Stream answered until 2026-03 (400, code 4).
Every call needs the `api_key` query parameter and an `Authorization` JWT signed with the API
secret, as Stream does.

For tests: `GET /_stand_in/requests` lists what it received (method, path, query, body; the
last 10,000) and `DELETE /_stand_in/requests` forgets it; `GET /_stand_in/calls` counts every
API call since start; `GET /_stand_in/sends` counts the sends of each message id and lists
the messages held. `--latency-ms` delays every API answer.

    python tools/stream_stand_in.py --port 8765 --api-key KEY --api-secret SECRET
"""

import argparse
import contextlib
import hashlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt

USER_ID = re.compile(r"[A-Za-z0-9@_-]{1,255}")
STATE_MESSAGES = 25
# Stream's error codes (its docs' table): 4 bad input, 16 not found, 17 not allowed, 22 payload
# too big, 9 rate limited; 2 and 5 for a wrong key or token.
INPUT_ERROR, NOT_FOUND, NOT_ALLOWED, TOO_BIG, RATE_LIMITED = 4, 16, 17, 22, 9
# Custom data on a message: at most 5 KB (Stream's docs; 413 over it).
MAX_CUSTOM_BYTES = 5 * 1024
# A message's own fields: the rest of what is sent is custom data.
MESSAGE_FIELDS = {"id", "text", "type", "user", "user_id", "attachments", "mentioned_users", "parent_id", "silent"}
# What Stream's answer to a channel delete keeps of the channel: not its custom data.
DELETED_CHANNEL_FIELDS = ("id", "type", "cid", "created_at", "updated_at", "deleted_at", "frozen", "disabled")


class StreamError(Exception):
    """An answer in Stream's error shape: the HTTP status, Stream's code, and what went wrong
    (`message`); the answer's message names the operation (StandIn.error_body)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def member_id(member: dict) -> str | None:
    """A member's user id: Stream's spec asks for `{"user_id"}`, and Stream also takes a user
    object, as the workshop's reference backend sent (`{"user": {"id"}}`)."""
    return member.get("user_id") or (member.get("user") or {}).get("id")


def distinct_id(member_ids) -> str:
    """A distinct channel's id, from its members in any order (Stream's own is a longer hash)."""
    return "!members-" + hashlib.sha256(json.dumps(sorted(member_ids)).encode()).hexdigest()[:32]


class ChatState:
    """Users, channels and messages, as Stream would keep them; one lock guards them all.

    `message_not_found_code`: 16 answers a missing message as Stream does today, 4 as it did
    until 2026-03 (stream-node's messages test; docs/stream-behaviour.md)."""

    def __init__(self, message_not_found_code: int = NOT_FOUND) -> None:
        self.lock = threading.Lock()
        self.message_not_found_code = message_not_found_code
        self.users: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}  # cid -> channel
        self.messages: dict[str, dict] = {}  # message id -> message
        self.channel_messages: dict[str, list[str]] = {}  # cid -> its message ids, oldest first
        self.sends: Counter[str] = Counter()  # message id -> sends of it, refused ones too

    def upsert_users(self, body: dict) -> dict:
        users = body.get("users")
        if not isinstance(users, dict) or not users:
            raise StreamError(400, INPUT_ERROR, "users is a required field")
        if len(users) > 100:
            raise StreamError(400, INPUT_ERROR, "users is more than 100")
        for key, user in users.items():
            if not isinstance(user, dict) or user.get("id") != key or not USER_ID.fullmatch(key):
                raise StreamError(400, INPUT_ERROR, f"user {key!r} is not valid")
        stamp = now()
        for user_id, user in users.items():
            created = self.users.get(user_id, {}).get("created_at", stamp)
            self.users[user_id] = {**user, "role": "user", "created_at": created, "updated_at": stamp}
        return {"users": {user_id: self.users[user_id] for user_id in users}}

    def get_or_create_channel(self, channel_type: str, channel_id: str | None, body: dict) -> dict:
        data = dict(body.get("data") or {})
        member_ids = [member_id(member) for member in data.pop("members", None) or []]
        distinct = channel_id is None
        if distinct:
            if len(set(member_ids)) < 2:
                raise StreamError(400, INPUT_ERROR, "When using member based IDs specify at least 2 members")
            channel_id = distinct_id(member_ids)
        cid = f"{channel_type}:{channel_id}"
        channel = self.channels.get(cid)
        if channel is not None and channel["deleted_at"]:
            # Queried again, a soft-deleted channel comes back: its data and members too, its
            # messages not.
            self._forget_messages(cid)
            channel.update(deleted_at=None, updated_at=now())
        if channel is None:
            channel = self._create_channel(channel_type, channel_id, member_ids, data)
            if distinct:
                channel["distinct_members"] = sorted(set(member_ids))
        return self.channel_state(channel)

    def _create_channel(self, channel_type: str, channel_id: str, member_ids: list, data: dict) -> dict:
        self._members_exist(member_ids, "create")
        # A creator given as a user object need not exist: Stream creates the user.
        creator = data.pop("created_by", None) or {}
        creator_id = creator.get("id") or data.pop("created_by_id", None)
        if creator_id and creator_id not in self.users:
            self.users[creator_id] = {**creator, "id": creator_id, "role": "user", "created_at": now()}
        stamp = now()
        cid = f"{channel_type}:{channel_id}"
        self.channels[cid] = {
            **data,
            "id": channel_id,
            "type": channel_type,
            "cid": cid,
            "created_by": self.users.get(creator_id),
            "created_at": stamp,
            "updated_at": stamp,
            "deleted_at": None,
            "members": list(dict.fromkeys(member_ids)),
        }
        return self.channels[cid]

    def update_channel(self, cid: str, body: dict) -> dict:
        channel = self._channel(cid)
        added = [member_id(member) for member in body.get("add_members") or []]
        removed = set(body.get("remove_members") or [])
        if removed & set(added):
            raise StreamError(400, INPUT_ERROR, "cannot add and remove the same members in one request")
        self._members_exist(added, "update")
        outsiders = [user_id for user_id in added if user_id not in channel.get("distinct_members", added)]
        if outsiders:
            raise StreamError(
                403,
                NOT_ALLOWED,
                "cannot add members to the distinct channel they don't belong to, "
                "please create a new distinct channel with the desired members",
            )
        channel["members"] = [
            user_id for user_id in dict.fromkeys([*channel["members"], *added]) if user_id not in removed
        ]
        channel.update({key: value for key, value in (body.get("data") or {}).items() if key != "members"})
        return self.channel_state(channel)

    def delete_channel(self, cid: str, hard: bool) -> dict:
        channel = self._channel(cid)
        stamp = now()
        if hard:
            del self.channels[cid]
            self._forget_messages(cid)
        else:
            channel["deleted_at"] = stamp
        # The answer keeps none of the channel's custom data, and shows it truncated.
        kept = {name: channel.get(name) for name in DELETED_CHANNEL_FIELDS if name in channel}
        return {"channel": {**kept, "deleted_at": stamp, "truncated_at": stamp, "created_by": None}}

    def send_message(self, cid: str, body: dict) -> dict:
        channel = self._channel(cid)
        message = body.get("message")
        if not isinstance(message, dict):
            raise StreamError(400, INPUT_ERROR, "message is a required field")
        user_id = (message.get("user") or {}).get("id") or message.get("user_id")
        if user_id not in self.users:
            raise StreamError(400, INPUT_ERROR, f"user '{user_id}' doesn't exist")
        message_id = message.get("id") or hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:36]
        self.sends[message_id] += 1
        if message_id in self.messages:
            raise StreamError(400, INPUT_ERROR, f"a message with ID {message_id} already exists")
        fields = {key: value for key, value in message.items() if key not in ("user", "user_id")}
        custom = {key: value for key, value in fields.items() if key not in MESSAGE_FIELDS}
        if len(json.dumps(custom).encode()) > MAX_CUSTOM_BYTES:
            raise StreamError(413, TOO_BIG, f"message custom data is more than {MAX_CUSTOM_BYTES} bytes")
        stamp = now()
        self.messages[message_id] = {
            "silent": False,
            **fields,
            "id": message_id,
            "type": "regular",
            "cid": cid,
            "user": self.users[user_id],
            "html": f"<p>{message.get('text', '')}</p>\n",
            "created_at": stamp,
            "updated_at": stamp,
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
        return self._channel_event("member.added", channel, member={"user_id": user_id}, user=self.users[user_id])

    def remove_member_directly(self, cid: str, user_id: str) -> dict:
        channel = self._channel(cid)
        channel["members"] = [member for member in channel["members"] if member != user_id]
        return self._channel_event(
            "member.removed", channel, member={"user_id": user_id}, user=self.users.get(user_id, {"id": user_id})
        )

    def send_message_directly(self, cid: str, user_id: str, message: dict) -> dict:
        """A chat client's message: it may choose the id and carry any custom field."""
        sent = self.send_message(cid, {"message": {**message, "user_id": user_id}})["message"]
        return self._channel_event("message.new", self._channel(cid), message=dict(sent), user=sent["user"])

    def edit_message_directly(self, message_id: str, text: str) -> dict:
        message = self.update_message_partial(message_id, {"set": {"text": text}})["message"]
        return self._channel_event(
            "message.updated", self._channel(message["cid"]), message=dict(message), user=message["user"]
        )

    def _channel_event(self, event_type: str, record: dict, **fields) -> dict:
        return {
            "type": event_type,
            "cid": record["cid"],
            "channel_type": record["type"],
            "channel_id": record["id"],
            "created_at": now(),
            **fields,
        }

    def channel_state(self, channel: dict) -> dict:
        # Stream's channel state holds the latest messages only (25 unless asked for more).
        messages = [self.messages[mid] for mid in self.channel_messages.get(channel["cid"], [])[-STATE_MESSAGES:]]
        return {
            "channel": self._channel_response(channel),
            "members": [
                {"user_id": user_id, "user": self.users.get(user_id, {"id": user_id})} for user_id in channel["members"]
            ],
            "messages": messages,
        }

    def _channel_response(self, channel: dict) -> dict:
        fields = {key: value for key, value in channel.items() if key not in ("members", "distinct_members")}
        return {**fields, "member_count": len(channel["members"])}

    def _channel(self, cid: str) -> dict:
        channel = self.channels.get(cid)
        if channel is None or channel["deleted_at"]:
            raise StreamError(404, NOT_FOUND, f"Can't find channel with id {cid}")
        return channel

    def _message(self, message_id: str) -> dict:
        if message_id not in self.messages:
            if self.message_not_found_code == INPUT_ERROR:
                raise StreamError(400, INPUT_ERROR, f"Message with id {message_id} doesn't exist")
            raise StreamError(404, NOT_FOUND, f"message with id {message_id} doesn't exist")
        return self.messages[message_id]

    def _members_exist(self, user_ids: list, operation: str) -> None:
        """Stream's refusal of members that are not users, in a channel's create or update."""
        missing = [user_id for user_id in user_ids if user_id not in self.users]
        if missing:
            raise StreamError(
                400,
                INPUT_ERROR,
                f"The following users are involved in channel {operation} operation, but don't exist: "
                f"[{', '.join(map(str, missing))}]. Please create the user objects before setting up the channel.",
            )

    def _forget_messages(self, cid: str) -> None:
        for message_id in self.channel_messages.pop(cid, []):
            self.messages.pop(message_id, None)


# Each route: its method, path, Stream's name for the operation (what its error messages begin
# with) and what it does.
ROUTES = [
    ("POST", re.compile(r"/users"), "UpdateUsers", lambda s, m, q, b: s.upsert_users(b)),
    (
        "POST",
        re.compile(r"/channels/(?P<type>[^/]+)/query"),
        "GetOrCreateChannel",
        lambda s, m, q, b: s.get_or_create_channel(m["type"], None, b),
    ),
    (
        "POST",
        re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)/query"),
        "GetOrCreateChannel",
        lambda s, m, q, b: s.get_or_create_channel(m["type"], m["id"], b),
    ),
    (
        "POST",
        re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
        "UpdateChannel",
        lambda s, m, q, b: s.update_channel(f"{m['type']}:{m['id']}", b),
    ),
    (
        "DELETE",
        re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
        "DeleteChannel",
        lambda s, m, q, b: s.delete_channel(f"{m['type']}:{m['id']}", q.get("hard_delete") == "true"),
    ),
    (
        "POST",
        re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)/message"),
        "SendMessage",
        lambda s, m, q, b: s.send_message(f"{m['type']}:{m['id']}", b),
    ),
    ("GET", re.compile(r"/messages/(?P<id>[^/]+)"), "GetMessage", lambda s, m, q, b: s.get_message(m["id"])),
    (
        "PUT",
        re.compile(r"/messages/(?P<id>[^/]+)"),
        "UpdateMessagePartial",
        lambda s, m, q, b: s.update_message_partial(m["id"], b),
    ),
    (
        "DELETE",
        re.compile(r"/messages/(?P<id>[^/]+)"),
        "DeleteMessage",
        lambda s, m, q, b: s.delete_message(m["id"], q.get("hard") == "true"),
    ),
    (
        "PATCH",
        re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)"),
        "UpdateChannelPartial",
        lambda s, m, q, b: s.update_channel_partial(f"{m['type']}:{m['id']}", b),
    ),
    ("POST", re.compile(r"/users/delete"), "DeleteUsers", lambda s, m, q, b: s.delete_users(b)),
    # The app's settings: the cheap authenticated call of the service's readiness check.
    (
        "GET",
        re.compile(r"/app"),
        "GetApp",
        lambda s, m, q, b: {"app": {"name": "stand-in", "disable_auth_checks": False}},
    ),
]


# --- Backfill and verify: queries, reactions, Stream's importer, rate limits and faults -----
#
#   GET    /users?payload=...               query users (filter `id`: a value, `$eq` or `$in`)
#   POST   /channels                        query channels (filter `cid`: a value, `$eq` or `$in`)
#   GET    /members?payload=...             query a channel's members (filter `id` or `user_id`)
#   GET    /channels/{type}/{id}/messages   messages by id (`?ids=a,b`), as Stream's get_many
#   POST   /messages/{id}/reaction          add a reaction
#   POST   /import_urls                     an upload URL for an import file (served below)
#   POST   /imports, GET /imports[/{id}]    import tasks: each read of a task moves it one state
#                                           on (uploaded, analyzing, importing, completed); the
#                                           records are applied as Stream's importer does, with
#                                           their original times; a malformed file ends in
#                                           analyze_failed
#
# With `Faults`, every API answer carries X-RateLimit-Limit/-Remaining/-Reset per endpoint and
# a call over the limit gets a 429 (code 9, Remaining 0); a fraction of calls fail on purpose: a
# 500 (nothing done), a timeout (done, but answered after `timeout_seconds`) or a 429 with a
# Retry-After of `retry_after_seconds`.

IMPORT_STATES = ("uploaded", "analyzing", "importing", "completed")


def _filter_values(conditions: dict, *fields: str) -> list | None:
    """The values a filter allows for the first of `fields` it names, or None (no filter)."""
    for field in fields:
        if field in conditions:
            condition = conditions[field]
            if isinstance(condition, dict):
                return list(condition.get("$in") or []) + ([condition["$eq"]] if "$eq" in condition else [])
            return [condition]
    return None


def _payload(query: dict) -> dict:
    try:
        payload = json.loads(query.get("payload") or "{}")
    except ValueError:
        raise StreamError(400, INPUT_ERROR, "payload is not valid JSON") from None
    return payload if isinstance(payload, dict) else {}


def query_users(state: ChatState, query: dict) -> dict:
    payload = _payload(query)
    ids = _filter_values(payload.get("filter_conditions") or {}, "id")
    # Deleted users are not shown, as in Stream.
    users = [
        user for user_id, user in state.users.items() if (ids is None or user_id in ids) and not user.get("deleted_at")
    ]
    return {"users": users[: int(payload.get("limit") or 30)]}


def query_channels(state: ChatState, body: dict) -> dict:
    cids = _filter_values(body.get("filter_conditions") or {}, "cid")
    channels = [
        channel
        for cid, channel in state.channels.items()
        if not channel["deleted_at"] and (cids is None or cid in cids)
    ]
    return {"channels": [state.channel_state(channel) for channel in channels[: int(body.get("limit") or 10)]]}


def query_members(state: ChatState, query: dict) -> dict:
    payload = _payload(query)
    channel = state._channel(f"{payload.get('type')}:{payload.get('id')}")
    user_ids = _filter_values(payload.get("filter_conditions") or {}, "id", "user_id")
    members = [user_id for user_id in channel["members"] if user_ids is None or user_id in user_ids]
    offset = int(payload.get("offset") or 0)
    return {
        "members": [
            {"user_id": user_id, "user": state.users.get(user_id, {"id": user_id})}
            for user_id in members[offset : offset + int(payload.get("limit") or 100)]
        ]
    }


def get_many_messages(state: ChatState, cid: str, query: dict) -> dict:
    state._channel(cid)
    ids = dict.fromkeys(message_id for message_id in (query.get("ids") or "").split(",") if message_id)
    if not ids:
        raise StreamError(400, INPUT_ERROR, "ids is a required field")
    return {
        "messages": [
            state.messages[message_id]
            for message_id in ids
            if message_id in state.messages and state.messages[message_id]["cid"] == cid
        ]
    }


def send_reaction(state: ChatState, message_id: str, body: dict) -> dict:
    message = state._message(message_id)
    reaction = dict(body.get("reaction") or {})
    user_id = reaction.pop("user_id", None) or (reaction.pop("user", None) or {}).get("id")
    if user_id not in state.users:
        raise StreamError(400, INPUT_ERROR, f"user '{user_id}' doesn't exist")
    reactions = message.setdefault("latest_reactions", [])
    reactions[:] = [r for r in reactions if (r["type"], r["user_id"]) != (reaction.get("type"), user_id)]
    stored = {
        **reaction,
        "message_id": message_id,
        "user_id": user_id,
        "created_at": reaction.get("created_at") or now(),
    }
    reactions.append(stored)
    message["reaction_counts"] = {}
    for each in reactions:
        message["reaction_counts"][each["type"]] = message["reaction_counts"].get(each["type"], 0) + 1
    return {"message": message, "reaction": stored}


class Importer:
    """Stream's importer, in memory: upload URLs, uploads, and tasks that apply the file."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytes] = {}  # path -> the uploaded file
        self.tasks: dict[str, dict] = {}

    def create_url(self, base_url: str, body: dict) -> dict:
        upload_id = hashlib.sha256(f"{time.time_ns()}{len(self.uploads)}".encode()).hexdigest()[:32]
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", str(body.get("filename") or "import.jsonl"))
        path = f"s3://stand-in-import/{upload_id}/{filename}"
        self.uploads[path] = b""
        return {"path": path, "upload_url": f"{base_url}/_stand_in/uploads/{upload_id}/{filename}"}

    def upload(self, upload_path: str, data: bytes) -> bool:
        path = "s3://stand-in-import/" + upload_path.removeprefix("/_stand_in/uploads/")
        if path not in self.uploads:
            return False
        self.uploads[path] = data
        return True

    def create_task(self, body: dict) -> dict:
        path, mode = body.get("path"), body.get("mode")
        if path not in self.uploads or mode not in ("insert", "upsert"):
            raise StreamError(400, INPUT_ERROR, "path or mode is not valid")
        stamp = now()
        task_id = hashlib.sha256(f"{path}{time.time_ns()}".encode()).hexdigest()[:36]
        self.tasks[task_id] = {
            "id": task_id,
            "path": path,
            "mode": mode,
            "state": "uploaded",
            "history": [],
            "size": len(self.uploads[path]),
            "created_at": stamp,
            "updated_at": stamp,
        }
        return {"import_task": self.tasks[task_id]}

    def get_task(self, state: ChatState, task_id: str) -> dict:
        task = self.tasks.get(task_id)
        if task is None:
            raise StreamError(404, NOT_FOUND, f"import task {task_id} not found")
        if task["state"] in IMPORT_STATES[:-1]:
            next_state = IMPORT_STATES[IMPORT_STATES.index(task["state"]) + 1]
            if task["state"] == "analyzing":
                next_state = "importing" if self._readable(task["path"]) else "analyze_failed"
            if next_state == "completed":
                self._apply(state, self.uploads.pop(task["path"]))
            task["history"].append({"prev_state": task["state"], "next_state": next_state, "created_at": now()})
            task.update(state=next_state, updated_at=now())
        return {"import_task": task}

    def list_tasks(self) -> dict:
        return {"import_tasks": list(self.tasks.values())}

    def _readable(self, path: str) -> bool:
        try:
            return all(isinstance(json.loads(line), dict) for line in self.uploads[path].splitlines() if line.strip())
        except ValueError:
            return False

    @staticmethod
    def _apply(state: ChatState, data: bytes) -> None:
        """The records, in the file's order, with their own times."""

        def cid_of(item, record_type):
            channel_type = item.get("type") if record_type == "channel" else item.get("channel_type")
            channel_id = item.get("id") if record_type == "channel" else item.get("channel_id")
            members = item.get("member_ids") if record_type == "channel" else item.get("channel_member_ids")
            if not channel_id:
                channel_id = distinct_id(members)
            return channel_type, channel_id

        for line in data.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            record_type, item = record.get("type"), dict(record.get("item") or {})
            if record_type == "user":
                state.users[item["id"]] = {
                    **item,
                    "role": item.get("role", "user"),
                    "created_at": item.get("created_at") or now(),
                }
            elif record_type == "channel":
                channel_type, channel_id = cid_of(item, "channel")
                cid = f"{channel_type}:{channel_id}"
                member_ids = item.pop("member_ids", None) or []
                state.channels[cid] = {
                    **item,
                    "id": channel_id,
                    "type": channel_type,
                    "cid": cid,
                    "created_by": state.users.get(item.pop("created_by", None)),
                    "created_at": item.get("created_at") or now(),
                    "updated_at": now(),
                    "deleted_at": None,
                    "members": list(member_ids),
                }
            elif record_type == "member":
                channel = state.channels[":".join(cid_of(item, "member"))]
                channel["members"] = list(dict.fromkeys([*channel["members"], item["user_id"]]))
            elif record_type == "message":
                cid = ":".join(cid_of(item, "message"))
                message_id = item.get("id") or hashlib.sha256(line).hexdigest()[:36]
                fields = {
                    k: v
                    for k, v in item.items()
                    if k not in ("user", "channel_type", "channel_id", "channel_member_ids")
                }
                state.messages[message_id] = {
                    "html": f"<p>{item.get('text', '')}</p>\n",
                    "updated_at": item.get("created_at") or now(),
                    "deleted_at": None,
                    "created_at": now(),
                    **fields,
                    "id": message_id,
                    "type": item.get("type", "regular"),
                    "cid": cid,
                    "user": state.users[item["user"]],
                }
                if message_id not in state.channel_messages.setdefault(cid, []):
                    state.channel_messages[cid].append(message_id)
            elif record_type == "reaction":
                send_reaction(state, item["message_id"], {"reaction": item})


@dataclass
class Faults:
    """Rate limits and failures to inject: none by default."""

    rate_limit: int = 0  # calls per endpoint per window; 0: no limit, no headers
    rate_window_seconds: float = 60
    fail_rate: float = 0.0  # the fraction of calls that fail on purpose
    fail_kinds: tuple[str, ...] = ("500", "timeout", "429")
    timeout_seconds: float = 2.0  # how late a "timeout" answers
    seed: int = 0
    retry_after_seconds: int = 1  # the Retry-After of an injected 429

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.Lock()
        self.windows: dict[str, list] = {}  # endpoint -> [window start, calls in it]

    def rate_headers(self, method: str, path: str) -> tuple[dict, bool]:
        """The rate-limit headers for one more call to this endpoint, and whether it is over.
        The reset is in whole epoch seconds, as Stream's is (its SDKs parse it as an integer)."""
        if not self.rate_limit:
            return {}, False
        endpoint = f"{method} {re.sub(r'/(channels/[^/]+/[^/]+|messages/[^/]+|imports/[^/]+)', '/*', path)}"
        with self.lock:
            clock = time.time()
            window = self.windows.setdefault(endpoint, [clock, 0])
            if clock >= window[0] + self.rate_window_seconds:
                window[:] = [clock, 0]
            window[1] += 1
            reset = math.ceil(window[0] + self.rate_window_seconds)
            remaining = self.rate_limit - window[1]
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(reset),
        }, remaining < 0

    def pick_failure(self) -> str | None:
        with self.lock:
            if self.fail_rate and self.random.random() < self.fail_rate:
                return self.random.choice(self.fail_kinds)
        return None


def answer_with_faults(
    stand_in: "StandIn", method: str, path: str, query: dict, raw_body: bytes, authorization: str | None
) -> tuple[int, dict, dict]:
    """`StandIn.answer`, with the rate-limit headers and failures of `stand_in.faults`."""
    faults = stand_in.faults
    headers, over_limit = faults.rate_headers(method, path)
    failure = "429" if over_limit else faults.pick_failure()
    if failure in ("429", "500"):
        stand_in.calls += 1  # answered here, without reaching `answer`, which counts the others
    if failure == "429":
        # Over the limit, Stream's own 429 says when its window resets (X-RateLimit-Reset);
        # an injected one stands for the 429s that carry a Retry-After (Stream's API budget, a
        # proxy): in whole seconds, as RFC 9110 (section 10.2.3) defines it.
        extra = {} if over_limit else {"Retry-After": str(faults.retry_after_seconds)}
        error = StreamError(429, RATE_LIMITED, "Too many requests, check response headers for more information.")
        return 429, stand_in.error_body(error, stand_in.operation(method, path)), {**headers, **extra}
    if failure == "500":
        error = StreamError(500, -1, "internal error (injected)")
        return 500, stand_in.error_body(error, stand_in.operation(method, path)), headers
    status, body = stand_in.answer(method, path, query, raw_body, authorization)
    if failure == "timeout":
        time.sleep(faults.timeout_seconds)
    return status, body, headers


ROUTES.extend(
    [
        ("GET", re.compile(r"/users"), "QueryUsers", lambda s, m, q, b: query_users(s, q)),
        ("POST", re.compile(r"/channels"), "QueryChannels", lambda s, m, q, b: query_channels(s, b)),
        ("GET", re.compile(r"/members"), "QueryMembers", lambda s, m, q, b: query_members(s, q)),
        (
            "GET",
            re.compile(r"/channels/(?P<type>[^/]+)/(?P<id>[^/]+)/messages"),
            "GetManyMessages",
            lambda s, m, q, b: get_many_messages(s, f"{m['type']}:{m['id']}", q),
        ),
        (
            "POST",
            re.compile(r"/messages/(?P<id>[^/]+)/reaction"),
            "SendReaction",
            lambda s, m, q, b: send_reaction(s, m["id"], b),
        ),
        (
            "POST",
            re.compile(r"/import_urls"),
            "CreateImportURL",
            lambda s, m, q, b: s.importer.create_url(s.base_url, b),
        ),
        ("POST", re.compile(r"/imports"), "CreateImport", lambda s, m, q, b: s.importer.create_task(b)),
        ("GET", re.compile(r"/imports"), "ListImports", lambda s, m, q, b: s.importer.list_tasks()),
        (
            "GET",
            re.compile(r"/imports/(?P<id>[^/]+)"),
            "GetImport",
            lambda s, m, q, b: s.importer.get_task(s, m["id"]),
        ),
    ]
)


class StandIn:
    """The stand-in's API, apart from any transport: the HTTP server below serves it, and the
    unit tests plug it into requests-mock."""

    def __init__(
        self, api_key: str, api_secret: str, latency_ms: float = 0, message_not_found_code: int = NOT_FOUND
    ) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.latency = latency_ms / 1000
        self.state = ChatState(message_not_found_code)
        self.received: deque[dict] = deque(maxlen=10_000)
        self.calls = 0  # every API call since start, for the benchmark's calls per request
        self.verified_tokens: set[str] = set()
        # Backfill and verify: Stream's importer, and the faults to inject (none by default).
        self.faults = Faults()
        self.state.importer = Importer()
        self.state.base_url = "http://stand-in.invalid"  # the HTTP server sets its own

    def answer(
        self, method: str, path: str, query: dict, raw_body: bytes, authorization: str | None
    ) -> tuple[int, dict]:
        """Stream's status and JSON body for one API call."""
        route = self._route(method, path)
        operation = route[2] if route else "Unknown"
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, self.error_body(StreamError(400, INPUT_ERROR, "invalid JSON body"), operation)
        self.calls += 1
        # Kept without the api_key: what a test needs is the call, not the credentials.
        self.received.append(
            {
                "method": method,
                "path": path,
                "body": body,
                "query": {key: value for key, value in query.items() if key != "api_key"},
            }
        )
        if self.latency:
            time.sleep(self.latency)
        try:
            self._authenticate(query, authorization)
            if route is None:
                raise StreamError(404, NOT_FOUND, f"{method} {path} is not served by the stand-in")
            with self.state.lock:
                answer = route[3](self.state, route[1].fullmatch(path), query, body)
        except StreamError as error:
            return error.status, self.error_body(error, operation)
        # Stream's spec: a POST or PUT that succeeds answers 201, the rest 200.
        return 201 if method in ("POST", "PUT") else 200, {**answer, "duration": "0.10ms"}

    def operation(self, method: str, path: str) -> str:
        """Stream's name for the operation a call is."""
        route = self._route(method, path)
        return route[2] if route else "Unknown"

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

    @staticmethod
    def _route(method: str, path: str) -> tuple | None:
        return next((route for route in ROUTES if route[0] == method and route[1].fullmatch(path)), None)

    @staticmethod
    def error_body(error: StreamError, operation: str) -> dict:
        """Stream's error body, its message naming the operation as Stream's do."""
        return {
            "code": error.code,
            "message": f'{operation} failed with error: "{error.message}"',
            "StatusCode": error.status,
            "duration": "0.00ms",
            "more_info": "https://getstream.io/chat/docs/api_errors_response",
            "details": [],
        }


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
        if url.path == "/_stand_in/sends":  # for the benchmark's resends after a resume
            with stand_in.state.lock:
                sends = {"sends": dict(stand_in.state.sends), "held": list(stand_in.state.messages)}
            self._send(200, sends)
            return
        if url.path.startswith("/_stand_in/uploads/") and self.command == "PUT":  # an import file's upload URL
            with stand_in.state.lock:
                uploaded = stand_in.state.importer.upload(url.path, raw_body)
            self._send(200 if uploaded else 404, {})
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self._send(
            *answer_with_faults(stand_in, self.command, url.path, query, raw_body, self.headers.get("Authorization"))
        )

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
        stand_in.state.base_url = f"http://{self.server_address[0]}:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (an injected timeout) is gone when its answer is written.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--api-secret", required=True)
    parser.add_argument("--latency-ms", type=float, default=0, help="delay before every API answer")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        help="calls per endpoint per window, with X-RateLimit-* headers and 429s over it (default: no limit)",
    )
    parser.add_argument("--rate-window-s", type=float, default=60, help="the rate limit's window")
    parser.add_argument("--fail-rate", type=float, default=0, help="fraction of calls that fail on purpose")
    parser.add_argument("--fail-kinds", default="500,timeout,429", help="failures to pick from")
    parser.add_argument("--timeout-ms", type=float, default=2000, help="how late an injected timeout answers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected failures")
    parser.add_argument("--retry-after-s", type=int, default=1, help="the Retry-After of an injected 429")
    parser.add_argument(
        "--message-not-found-code",
        type=int,
        choices=(16, 4),
        default=16,
        help="Stream's answer for a message that does not exist: 16 (404, as today) or 4 (400, until 2026-03)",
    )
    args = parser.parse_args()
    stand_in = StandIn(args.api_key, args.api_secret, args.latency_ms, args.message_not_found_code)
    stand_in.faults = Faults(
        args.rate_limit,
        args.rate_window_s,
        args.fail_rate,
        tuple(args.fail_kinds.split(",")),
        args.timeout_ms / 1000,
        args.seed,
        args.retry_after_s,
    )
    server = StandInServer((args.host, args.port), stand_in, args.verbose)
    print(
        f"Stream stand-in listening on http://{args.host}:{args.port} (test and demo only)", file=sys.stderr, flush=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
