"""The Stream stand-in over HTTP, driven by the real SDK, and its tools for tests (what it
received, latency, injected failures). What Stream answers, call by call, is checked in
test_stream_behaviour.py."""

import threading

import jwt
import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from live import free_port
from stream_stand_in import Faults, StandIn, StandInServer, answer_with_faults

KEY, SECRET = "stand-in-key", "stand-in-secret-" + "z" * 32


@pytest.fixture
def stand_in_url():
    server = StandInServer(("127.0.0.1", free_port()), StandIn(KEY, SECRET))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sdk(stand_in_url):
    return StreamChat(KEY, SECRET, base_url=stand_in_url, timeout=5)


def stream_error(call):
    with pytest.raises(StreamAPIException) as caught:
        call()
    return caught.value


def test_users_channel_and_message_round_trip(sdk):
    sdk.upsert_users([{"id": "ana", "name": "Ana"}, {"id": "bo"}])
    channel = sdk.channel("messaging", data={"members": [{"user_id": "ana"}, {"user_id": "bo"}], "title": "T"})
    state = channel.create("ana")
    sent = channel.send_message({"id": "m-1", "text": "hi"}, user_id="ana")

    assert state["channel"]["cid"] == channel.cid
    assert channel.id.startswith("!members-")
    assert state["channel"]["title"] == "T"
    assert [member["user_id"] for member in state["members"]] == ["ana", "bo"]
    assert sent["message"]["user"]["name"] == "Ana"
    assert sdk.get_message("m-1")["message"]["text"] == "hi"


def test_update_and_delete_a_message(sdk):
    sdk.upsert_user({"id": "ana"})
    channel = sdk.channel("messaging", "c", {"members": [{"user_id": "ana"}]})
    channel.create("ana")
    channel.send_message({"id": "m-1", "text": "hi"}, user_id="ana")

    updated = sdk.update_message_partial("m-1", {"set": {"text": "edited"}}, "ana")
    soft = sdk.delete_message("m-1")
    hard = sdk.delete_message("m-1", hard=True)

    assert updated["message"]["text"] == "edited"
    assert soft["message"]["type"] == "deleted"
    assert hard["message"]["id"] == "m-1"
    assert stream_error(lambda: sdk.delete_message("m-1", hard=True)).status_code == 404


def test_deleted_channel_is_gone_then_recreated_empty(sdk):
    sdk.upsert_user({"id": "ana"})
    channel = sdk.channel("messaging", "c", {"members": [{"user_id": "ana"}]})
    channel.create("ana")
    channel.send_message({"id": "m-1", "text": "hi"}, user_id="ana")

    channel.delete(hard=True)

    assert stream_error(lambda: channel.delete()).status_code == 404
    assert sdk.channel("messaging", "c", {"members": [{"user_id": "ana"}]}).create("ana")["messages"] == []


@pytest.mark.parametrize("credentials", [("other-key", SECRET), (KEY, "another-secret-" + "q" * 32)])
def test_wrong_api_key_or_secret_is_a_401(stand_in_url, credentials):
    sdk = StreamChat(*credentials, base_url=stand_in_url, timeout=5)

    error = stream_error(lambda: sdk.upsert_user({"id": "ana"}))

    assert error.status_code == 401


def test_missing_authorization_is_a_401_in_stream_s_shape(stand_in_url):
    response = requests.post(f"{stand_in_url}/users?api_key={KEY}", json={"users": {}}, timeout=5)

    assert response.status_code == 401
    assert set(response.json()) >= {"code", "message", "StatusCode", "duration"}


def test_it_shows_what_it_received_without_the_key(sdk, stand_in_url):
    sdk.upsert_user({"id": "ana"})

    received = requests.get(f"{stand_in_url}/_stand_in/requests", timeout=5).json()["requests"]
    requests.delete(f"{stand_in_url}/_stand_in/requests", timeout=5)

    assert received == [{"method": "POST", "path": "/users", "query": {}, "body": {"users": {"ana": {"id": "ana"}}}}]
    assert requests.get(f"{stand_in_url}/_stand_in/requests", timeout=5).json() == {"requests": []}


def test_latency_is_added_to_every_call(monkeypatch):
    slept = []
    monkeypatch.setattr("stream_stand_in.time.sleep", slept.append)

    StandIn(KEY, SECRET, latency_ms=25).answer("POST", "/users", {"api_key": KEY}, b"{}", None)

    assert slept == [0.025]


def test_injected_failures_are_a_fraction_of_the_calls():
    stand_in = StandIn(KEY, SECRET)
    stand_in.faults = Faults(fail_rate=0.2, fail_kinds=("500",), seed=1)
    token = jwt.encode({"server": True}, SECRET, algorithm="HS256")

    statuses = [answer_with_faults(stand_in, "GET", "/users", {"api_key": KEY}, b"", token)[0] for _ in range(500)]

    assert 60 < statuses.count(500) < 140 and set(statuses) == {200, 500}
