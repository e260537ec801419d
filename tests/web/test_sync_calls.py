"""POST /channel and POST /message: what reaches Stream, call by call."""

import copy

from support.examples import CHANNEL_BODY, MESSAGE_BODY, origin_mark


def member_ids(query):
    """Members in the order sent; the test client sends JSON keys sorted, as Flask does."""
    return sorted(member["user_id"] for member in query["data"].pop("members"))


def calls(stream):
    return [(request.method, request.path) for request in stream.request_history]


def test_channel_upserts_members_once_then_gets_or_creates_their_channel(client, stream):
    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 200
    assert response.get_json()["channel"]["cid"].startswith("messaging:!members-")
    assert calls(stream) == [("POST", "/users"), ("POST", "/channels/messaging/query")]
    assert stream.request_history[0].json() == {
        "users": {
            "tommaso": {"id": "tommaso", "name": "Tommaso", "image": ""},
            "thierry": {"id": "thierry", "name": "Thierry", "image": ""},
        }
    }


def test_channel_members_go_as_user_id_objects_and_custom_data_into_the_channel_data(client, stream):
    client.post("/channel", json=CHANNEL_BODY)

    query = stream.request_history[1].json()
    assert member_ids(query) == ["thierry", "tommaso"]
    assert query["data"] == {"title": "Just a test", "created_by": {"id": "tommaso"}}
    assert "title" not in {key for key in query if key != "data"}


def test_channel_sends_the_api_key_and_a_server_token(client, stream):
    client.post("/channel", json=CHANNEL_BODY)

    for request in stream.request_history:
        assert request.qs["api_key"] == ["test-key"]
        assert request.headers["Stream-Auth-Type"] == "jwt"
        assert request.headers["Authorization"]


def test_channel_without_custom_data_is_fine(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    del body["channel"]["custom_data"]

    response = client.post("/channel", json=body)

    assert response.status_code == 200
    query = stream.request_history[1].json()
    assert member_ids(query) == ["thierry", "tommaso"]
    assert query["data"] == {"created_by": {"id": "tommaso"}}


def test_message_upserts_members_and_sender_once_creates_the_channel_then_sends(client, stream):
    response = client.post("/message", json=MESSAGE_BODY)

    assert response.status_code == 200
    assert response.get_json()["message"]["id"] == "123-456-789-01234"
    assert calls(stream)[:2] == [("POST", "/users"), ("POST", "/channels/messaging/query")]
    assert calls(stream)[2][1].startswith("/channels/messaging/!members-")
    assert calls(stream)[2][1].endswith("/message")
    assert len(calls(stream)) == 3
    cid = response.get_json()["cid"]
    assert stream.request_history[2].json() == {
        "message": {
            "id": "123-456-789-01234",
            "text": "hello there!",
            "user": {"id": "tommaso"},
            "primary_origin": origin_mark("123-456-789-01234", cid, "tommaso"),
        }
    }


def test_message_sender_who_is_not_a_member_is_upserted_with_them(client, stream):
    body = copy.deepcopy(MESSAGE_BODY)
    body["user"] = {"id": "moderator", "name": "Mod"}

    client.post("/message", json=body)

    upserted = stream.request_history[0].json()["users"]
    assert upserted["moderator"] == {"id": "moderator", "name": "Mod"}
    assert set(upserted) == {"tommaso", "thierry", "moderator"}
    assert member_ids(stream.request_history[1].json()) == ["thierry", "tommaso"]
    assert stream.request_history[2].json()["message"]["user"] == {"id": "moderator"}


def test_a_sender_beyond_a_hundred_members_is_upserted_in_a_second_call(client, stream):
    body = copy.deepcopy(MESSAGE_BODY)
    body["members"] = {f"user-{n}": {"name": f"User {n}"} for n in range(100)}
    body["channel"]["creator_id"] = "user-0"

    response = client.post("/message", json=body)

    assert response.status_code == 200
    upserts = [r.json()["users"] for r in stream.request_history if r.path == "/users"]
    assert [len(users) for users in upserts] == [100, 1]
    assert set().union(*upserts) == set(body["members"]) | {"tommaso"}
