"""The shared sync state: what one worker synced, no worker sends again; what Stream lost
(deleted elsewhere), the full path recreates; webhooks and expiry make it forget."""

import copy
import json
import re
import socket
import sqlite3
import time

import pytest
import redis

from app import create_app
from stream_backend.errors import StoreUnavailable
from stream_backend.mirror.state import BREAK_SECONDS, REDIS_TIMEOUT_SECONDS, RedisKeyValues, SQLiteKeyValues, SyncState

from live import free_port
from support.examples import CHANNEL_BODY, MESSAGE_BODY, sign
from support.stream import STREAM_URL


def message(number, body=MESSAGE_BODY, channel_id=None, members=None):
    changed = copy.deepcopy(body)
    changed["message"]["id"] = f"m-{number}"
    if channel_id:
        changed["channel"]["id"] = channel_id
    if members is not None:
        changed["members"] = {member: {"name": member.title()} for member in members}
        changed["channel"]["creator_id"] = changed["user"]["id"] = members[0]
        changed["user"]["name"] = members[0].title()
    return changed


def calls_for(stream, client, route, body, method="post"):
    stream.reset_mock()
    response = getattr(client, method)(route, json=body)
    assert response.status_code == 200, response.get_json()
    return [(request.method, request.path) for request in stream.request_history]


@pytest.fixture(params=["sqlite", "redis"])
def shared_environ(request, environ):
    """The environment of several instances sharing one store: the SQLite file, or Redis."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(redis_url).flushdb()
        return {**environ, "REDIS_URL": redis_url}
    return environ


# --- The warm path ------------------------------------------------------------------------


def test_warm_message_is_one_stream_call(client, stream):
    client.post("/message", json=message(1))

    calls = calls_for(stream, client, "/message", message(2))

    assert len(calls) == 1
    assert calls[0][1].endswith("/message")


def test_warm_channel_is_one_stream_call_and_answers_the_current_state(client, stream):
    client.post("/channel", json=CHANNEL_BODY)

    calls = calls_for(stream, client, "/channel", CHANNEL_BODY)

    assert calls == [("POST", "/channels/messaging/query")]


def test_message_after_the_channel_route_is_one_call(client, stream):
    client.post("/channel", json=CHANNEL_BODY)
    client.post("/message", json=message(0))

    assert len(calls_for(stream, client, "/message", message(1))) == 1


def test_a_changed_name_still_reaches_stream(client, stream):
    client.post("/message", json=message(1))
    renamed = message(2)
    renamed["members"]["thierry"]["name"] = "Thierry S."

    calls = calls_for(stream, client, "/message", renamed)

    assert calls[0] == ("POST", "/users")
    assert stream.request_history[0].json() == {
        "users": {"thierry": {"id": "thierry", "name": "Thierry S.", "image": ""}}
    }
    assert len(calls) == 2  # the channel has these members: no get-or-create
    assert stream.stand_in.state.users["thierry"]["name"] == "Thierry S."


def test_a_new_member_of_a_known_channel_is_added_before_the_message(client, stream):
    client.post("/message", json=message(1, channel_id="team", members=["a", "b"]))

    calls = calls_for(stream, client, "/message", message(2, channel_id="team", members=["a", "b", "c"]))

    assert calls == [
        ("POST", "/users"),
        ("POST", "/channels/messaging/team/query"),
        ("POST", "/channels/messaging/team"),
        ("POST", "/channels/messaging/team/message"),
    ]
    assert stream.request_history[2].json() == {"add_members": [{"user_id": "c"}]}
    assert stream.stand_in.state.channels["messaging:team"]["members"] == ["a", "b", "c"]


def test_channel_route_adds_the_members_an_existing_channel_lacks(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"]["id"] = "team"
    client.post("/channel", json=body)
    body["members"]["ana"] = {"name": "Ana"}

    response = client.post("/channel", json=body)

    assert response.status_code == 200
    assert sorted(m["user_id"] for m in response.get_json()["members"]) == ["ana", "thierry", "tommaso"]
    assert sorted(stream.stand_in.state.channels["messaging:team"]["members"]) == ["ana", "thierry", "tommaso"]


def test_channel_deleted_elsewhere_is_recreated(client, stream):
    first = client.post("/message", json=message(1)).get_json()
    del stream.stand_in.state.channels[first["cid"]]  # deleted in Stream's dashboard, say

    calls = calls_for(stream, client, "/message", message(2))

    assert [path.split("/")[-1] for _, path in calls] == ["message", "users", "query", "message"]
    assert first["cid"] in stream.stand_in.state.channels


def test_user_deleted_elsewhere_is_upserted_again(client, stream):
    client.post("/message", json=message(1))
    del stream.stand_in.state.users["tommaso"]

    calls = calls_for(stream, client, "/message", message(2))

    assert [path.split("/")[-1] for _, path in calls] == ["message", "users", "query", "message"]
    assert "tommaso" in stream.stand_in.state.users


def test_user_deleted_elsewhere_before_a_warm_channel_sync(client, stream):
    client.post("/channel", json=CHANNEL_BODY)
    del stream.stand_in.state.users["thierry"]
    del stream.stand_in.state.channels[next(iter(stream.stand_in.state.channels))]

    calls = calls_for(stream, client, "/channel", CHANNEL_BODY)

    assert calls == [("POST", "/channels/messaging/query"), ("POST", "/users"), ("POST", "/channels/messaging/query")]


def test_the_full_path_runs_once_only(client, stream):
    client.post("/message", json=message(1))
    stream.post(
        re.compile(rf"{STREAM_URL}/channels/.*/message"),
        status_code=404,
        json={"code": 16, "message": "Can't find channel", "StatusCode": 404},
    )

    stream.reset_mock()
    response = client.post("/message", json=message(2))

    assert response.status_code == 404
    assert [request.path.split("/")[-1] for request in stream.request_history] == [
        "message",
        "users",
        "query",
        "message",
    ]


def test_channel_deleted_through_this_service_is_not_remembered(client, stream):
    client.post("/message", json=message(1, channel_id="general"))
    client.delete("/channel/messaging/general?hard=true")

    calls = calls_for(stream, client, "/message", message(2, channel_id="general"))

    assert [path for _, path in calls] == ["/channels/messaging/general/query", "/channels/messaging/general/message"]


def test_a_ttl_of_zero_syncs_everything_every_time(environ, stream):
    client = create_app({**environ, "SYNC_STATE_TTL_SECONDS": "0"}).test_client()
    client.post("/message", json=message(1))

    assert len(calls_for(stream, client, "/message", message(2))) == 3


# --- Shared by every worker and host --------------------------------------------------------


def test_a_rename_seen_by_another_instance_is_not_skipped(shared_environ, stream):
    """Worker 1 upserts Alice, worker 2 Alicia; the primary renames her back to Alice on
    worker 1: with a per-worker cache, Stream kept "Alicia" for good."""
    worker_1, worker_2 = (create_app(shared_environ).test_client() for _ in range(2))
    alice = message(1, channel_id="team", members=["alice", "bob"])
    alicia = message(2, channel_id="team", members=["alice", "bob"])
    alicia["members"]["alice"]["name"] = alicia["user"]["name"] = "Alicia"

    worker_1.post("/message", json=alice)
    worker_2.post("/message", json=alicia)
    worker_1.post("/message", json=message(3, channel_id="team", members=["alice", "bob"]))

    assert stream.stand_in.state.users["alice"]["name"] == "Alice"


def test_what_one_instance_synced_the_other_does_not_send_again(shared_environ, stream):
    worker_1, worker_2 = (create_app(shared_environ).test_client() for _ in range(2))
    worker_1.post("/message", json=message(1, channel_id="team", members=["a", "b"]))

    calls = calls_for(stream, worker_2, "/message", message(2, channel_id="team", members=["a", "b"]))

    assert calls == [("POST", "/channels/messaging/team/message")]


def test_entries_expire_after_the_ttl(environ, stream):
    client = create_app({**environ, "SYNC_STATE_TTL_SECONDS": "1"}).test_client()
    client.post("/message", json=message(1))

    time.sleep(1.1)

    assert len(calls_for(stream, client, "/message", message(2))) == 3


def test_redis_entries_carry_the_ttl(environ, stream, redis_url):
    client = create_app({**environ, "REDIS_URL": redis_url, "SYNC_STATE_TTL_SECONDS": "120"}).test_client()
    client.post("/message", json=message(1, channel_id="ttl-check", members=["ttl-user"]))

    ttl = redis.Redis.from_url(redis_url).pttl("stream-sync:user:ttl-user")

    assert 115_000 < ttl <= 120_000


def test_a_store_that_is_down_means_the_full_path_not_a_failure(environ, stream):
    client = create_app({**environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()

    first = calls_for(stream, client, "/message", message(1))
    second = calls_for(stream, client, "/message", message(2))

    assert len(first) == len(second) == 3


def test_a_sqlite_store_used_alone_makes_its_directory_and_uses_wal(tmp_path):
    path = tmp_path / "missing-dir" / "state.sqlite3"
    state = SyncState(SQLiteKeyValues(str(path)), ttl_seconds=60)

    state.remember_users({"a": {"id": "a"}})

    assert state.users_to_upsert({"a": {"id": "a"}}) == {}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_locked_sqlite_store_drops_the_write_and_is_skipped_for_a_while(tmp_path):
    path = str(tmp_path / "state.sqlite3")
    state = SyncState(SQLiteKeyValues(path, busy_timeout=0.05), ttl_seconds=60)
    state.remember_users({"a": {"id": "a"}})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    state.remember_users({"b": {"id": "b"}})  # waits out the busy timeout, then drops the write
    holder.execute("ROLLBACK")
    holder.close()

    assert state.users_to_upsert({"a": {"id": "a"}, "b": {"id": "b"}}) == {"a": {"id": "a"}, "b": {"id": "b"}}


class NeverAnswers:
    """A server that accepts connections (the kernel's backlog does) and never answers."""

    def __enter__(self):
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=16)
        return f"redis://127.0.0.1:{self.socket.getsockname()[1]}/0"

    def __exit__(self, *exc):
        self.socket.close()


def test_a_hung_store_costs_one_timeout_then_is_skipped(monkeypatch):
    with NeverAnswers() as url:
        store = RedisKeyValues(url)
        asked = []
        get_many = store.get_many
        monkeypatch.setattr(store, "get_many", lambda keys: asked.append(keys) or get_many(keys))
        state = SyncState(store, ttl_seconds=60)

        started = time.monotonic()
        first = state.users_to_upsert({"a": {"id": "a"}})
        state.remember_users({"a": {"id": "a"}})
        state.forget_users(["a"])
        again = state.channel("messaging", "team")
        took = time.monotonic() - started

    assert first == {"a": {"id": "a"}} and again is None
    assert asked == [["user:a"]]
    assert took < 3 * REDIS_TIMEOUT_SECONDS


def test_the_store_is_asked_again_after_the_break():
    clock = [1000.0]
    state = SyncState(FlakyKeyValues(), ttl_seconds=60, clock=lambda: clock[0])

    state.remember_users({"a": {"id": "a"}})  # fails: the store is skipped for BREAK_SECONDS
    state.remember_users({"a": {"id": "a"}})
    clock[0] += BREAK_SECONDS
    state.remember_users({"a": {"id": "a"}})

    assert state.store.calls == 2
    assert state.users_to_upsert({"a": {"id": "a"}}) == {}


class FlakyKeyValues:
    """Fails its first call, then keeps values in a dict."""

    def __init__(self):
        self.calls, self.values = 0, {}

    def get_many(self, keys):
        return {key: self.values[key] for key in keys if key in self.values}

    def set_many(self, values, ttl_seconds):
        self.calls += 1
        if self.calls == 1:
            raise StoreUnavailable("refused")
        self.values.update(values)


class DownKeyValues:
    """A store that is down: every call fails."""

    def get_many(self, *args):
        raise StoreUnavailable("down")

    set_many = delete_many = get_many


# --- Webhooks make it forget ------------------------------------------------------------------


def deliver(client, event):
    body = json.dumps(event).encode()
    response = client.post("/stream-incoming-wh", data=body, headers={"X-Signature": sign(body), "X-Webhook-Id": "x"})
    assert response.status_code == 200, response.get_json()


def test_a_name_edited_in_stream_is_rewritten_after_its_webhook(shared_environ, stream):
    worker_1, worker_2 = (create_app(shared_environ).test_client() for _ in range(2))
    worker_1.post("/message", json=message(1, channel_id="team", members=["alice", "bob"]))
    deliver(worker_2, stream.stand_in.state.edit_user_directly("alice", name="Al from the app"))

    calls = calls_for(stream, worker_1, "/message", message(2, channel_id="team", members=["alice", "bob"]))

    assert calls[0] == ("POST", "/users")
    assert stream.stand_in.state.users["alice"]["name"] == "Alice"


def test_a_member_removed_in_stream_is_added_again_after_its_webhook(shared_environ, stream):
    worker_1, worker_2 = (create_app(shared_environ).test_client() for _ in range(2))
    worker_1.post("/message", json=message(1, channel_id="team", members=["a", "b"]))
    deliver(worker_2, stream.stand_in.state.remove_member_directly("messaging:team", "b"))

    worker_1.post("/message", json=message(2, channel_id="team", members=["a", "b"]))

    assert stream.stand_in.state.channels["messaging:team"]["members"] == ["a", "b"]


def test_a_webhook_whose_forget_fails_is_a_503_so_stream_sends_it_again(client, stream, app):
    client.post("/message", json=message(1, channel_id="team", members=["alice", "bob"]))
    state = app.extensions["mirror"].state
    clock, working = [1000.0], state.store
    state.clock = lambda: clock[0]
    event = stream.stand_in.state.edit_user_directly("alice", name="Alicia")
    body = json.dumps(event).encode()
    headers = {"X-Signature": sign(body), "X-Webhook-Id": "edit-1"}
    state.store = DownKeyValues()
    state.remember_users({"carol": {"id": "carol"}})  # fails: the breaker is open

    refused = client.post("/stream-incoming-wh", data=body, headers=headers)  # asks the store all the same
    state.store = working  # the store is back
    retried = client.post("/stream-incoming-wh", data=body, headers=headers)
    clock[0] += BREAK_SECONDS  # the breaker's 5 s are over
    client.post("/message", json=message(2, channel_id="team", members=["alice", "bob"]))

    assert refused.status_code == 503
    assert retried.status_code == 200
    assert stream.stand_in.state.users["alice"]["name"] == "Alice"


@pytest.mark.parametrize(
    "event_type",
    ["channel.updated", "channel.deleted", "channel.truncated", "member.added", "member.removed", "member.updated"],
)
def test_channel_events_forget_the_channel(client, stream, event_type):
    client.post("/message", json=message(1, channel_id="team", members=["a", "b"]))
    deliver(
        client,
        {
            "type": event_type,
            "cid": "messaging:team",
            "channel_type": "messaging",
            "channel_id": "team",
            "user": {"id": "a"},
        },
    )

    calls = calls_for(stream, client, "/message", message(2, channel_id="team", members=["a", "b"]))

    assert [path for _, path in calls] == ["/channels/messaging/team/query", "/channels/messaging/team/message"]


@pytest.mark.parametrize("event_type", ["user.updated", "user.deleted"])
def test_user_events_forget_the_user(client, stream, event_type):
    client.post("/message", json=message(1, channel_id="team", members=["a", "b"]))
    deliver(client, {"type": event_type, "user": {"id": "b"}})

    calls = calls_for(stream, client, "/message", message(2, channel_id="team", members=["a", "b"]))

    assert calls[0] == ("POST", "/users")
    assert list(stream.request_history[0].json()["users"]) == ["b"]
