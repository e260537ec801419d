"""The warm path: what this worker already synced is not sent again; when Stream lost it
(deleted elsewhere), the full path runs once and recreates it."""

import copy
import re

from app import create_app
from conftest import STREAM_URL
from examples import CHANNEL_BODY, MESSAGE_BODY
from sync_cache import SyncCache


def message(number, body=MESSAGE_BODY):
    changed = copy.deepcopy(body)
    changed["message"]["id"] = f"m-{number}"
    return changed


def calls_for(stream, client, route, body):
    stream.reset_mock()
    response = client.post(route, json=body)
    assert response.status_code == 200, response.get_json()
    return [(request.method, request.path) for request in stream.request_history]


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
    assert stream.request_history[0].json() == {"users": {"thierry": {"id": "thierry", "name": "Thierry S.", "image": ""}}}
    assert len(calls) == 2  # the channel's data did not change: no get-or-create
    assert stream.stand_in.state.users["thierry"]["name"] == "Thierry S."


def test_other_custom_data_is_another_channel_sync(client, stream):
    client.post("/message", json=message(1))
    retitled = message(2)
    retitled["channel"]["custom_data"]["title"] = "Renamed"

    calls = calls_for(stream, client, "/message", retitled)

    assert [path for _, path in calls][0] == "/channels/messaging/query"


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
    stream.post(re.compile(rf"{STREAM_URL}/channels/.*/message"), status_code=404,
                json={"code": 16, "message": "Can't find channel", "StatusCode": 404})

    stream.reset_mock()
    response = client.post("/message", json=message(2))

    assert response.status_code == 404
    assert [request.path.split("/")[-1] for request in stream.request_history] == ["message", "users", "query", "message"]


def test_channel_deleted_through_this_service_is_not_remembered(client, stream):
    body = message(1)
    body["channel"]["id"] = "general"
    client.post("/message", json=body)
    client.delete("/channel/messaging/general?hard=true")
    again = message(2)
    again["channel"]["id"] = "general"

    calls = calls_for(stream, client, "/message", again)

    assert [path for _, path in calls] == ["/channels/messaging/general/query", "/channels/messaging/general/message"]


def test_a_cache_size_of_zero_syncs_everything_every_time(environ, stream):
    client = create_app({**environ, "SYNC_CACHE_SIZE": "0"}).test_client()
    client.post("/message", json=message(1))

    assert len(calls_for(stream, client, "/message", message(2))) == 3


def test_the_cache_keeps_its_most_recently_used_entries_only():
    cache = SyncCache(size=2)
    users = {name: {"id": name} for name in ("a", "b", "c")}
    cache.remember_users({"a": users["a"], "b": users["b"]})
    cache.users_to_upsert({"a": users["a"]})  # a is used again: b is now the oldest
    cache.remember_users({"c": users["c"]})

    assert len(cache.users) == 2
    assert cache.users_to_upsert(users) == {"b": users["b"]}
