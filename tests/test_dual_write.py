"""A primary system's outbox retries every write: creates, updates and deletes are safe to repeat."""

import copy
import re

import pytest

from conftest import STREAM_URL
from examples import CHANNEL_BODY, MESSAGE_BODY


def calls(stream):
    return [(request.method, request.path, request.qs) for request in stream.request_history]


def sent(client, body):
    response = client.post("/message", json=body)
    assert response.status_code == 200, response.get_json()
    return response


def test_retried_message_answers_the_stored_message(client, stream):
    first = sent(client, MESSAGE_BODY).get_json()
    stream.reset_mock()

    retry = client.post("/message", json=MESSAGE_BODY)

    assert retry.status_code == 200
    assert retry.get_json()["message"]["id"] == "123-456-789-01234"
    assert retry.get_json()["message"]["text"] == first["message"]["text"]
    assert retry.get_json()["cid"] == first["cid"]
    assert [(method, path) for method, path, _ in calls(stream)][-2:] == [
        ("POST", f"/channels/{first['cid'].replace(':', '/')}/message"),
        ("GET", "/messages/123-456-789-01234"),
    ]


def test_retry_with_other_text_keeps_the_stored_text(client, stream):
    sent(client, MESSAGE_BODY)
    changed = copy.deepcopy(MESSAGE_BODY)
    changed["message"]["text"] = "edited in the primary system"

    retry = client.post("/message", json=changed)

    assert retry.status_code == 200
    assert retry.get_json()["message"]["text"] == "hello there!"


def test_other_stream_400s_on_send_are_not_taken_for_retries(client, stream):
    stream.post(re.compile(rf"{STREAM_URL}/channels/.*/message"), status_code=400,
                json={"code": 4, "message": "SendMessage failed with error: \"text is too long\"",
                      "StatusCode": 400})

    response = client.post("/message", json=MESSAGE_BODY)

    assert response.status_code == 400
    assert "too long" in response.get_json()["api_error"]
    assert not any(request.method == "GET" for request in stream.request_history)


def test_channel_with_an_id_and_a_type_is_that_channel(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"].update(type="team", id="general")

    response = client.post("/channel", json=body)

    assert response.status_code == 200
    assert response.get_json()["cid"] == "team:general"
    assert response.get_json()["channel"]["cid"] == "team:general"
    assert calls(stream)[1][:2] == ("POST", "/channels/team/general/query")


def test_channel_type_defaults_to_messaging(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"]["id"] = "general"

    response = client.post("/channel", json=body)

    assert response.get_json()["cid"] == "messaging:general"


def test_channel_without_an_id_is_the_members_distinct_channel_and_answers_its_cid(client, stream):
    first = client.post("/channel", json=CHANNEL_BODY).get_json()
    again = client.post("/channel", json=CHANNEL_BODY).get_json()

    assert first["cid"].startswith("messaging:!members-")
    assert again["cid"] == first["cid"]


def test_message_goes_to_the_channel_with_an_id(client, stream):
    body = copy.deepcopy(MESSAGE_BODY)
    body["channel"].update(type="team", id="general")

    response = sent(client, body)

    assert response.get_json()["cid"] == "team:general"
    assert calls(stream)[2][:2] == ("POST", "/channels/team/general/message")


@pytest.mark.parametrize("field, value", [("type", "team:x"), ("type", ""), ("type", 3),
                                          ("id", "a/b"), ("id", "x" * 65), ("id", 42)])
def test_invalid_channel_type_or_id_is_a_400(client, stream, field, value):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"][field] = value

    response = client.post("/channel", json=body)

    assert response.status_code == 400
    assert response.get_json()["field"] == f"channel.{field}"
    assert stream.call_count == 0


def test_many_members_are_upserted_and_added_a_hundred_at_a_time(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"].update(id="town-hall", creator_id="user-0")
    body["members"] = {f"user-{n}": {"name": f"User {n}"} for n in range(250)}

    response = client.post("/channel", json=body)

    assert response.status_code == 200
    upserts = [r.json()["users"] for r in stream.request_history if r.path == "/users"]
    assert [len(users) for users in upserts] == [100, 100, 50]
    assert set().union(*upserts) == set(body["members"])
    query, *additions = [r.json() for r in stream.request_history if r.path.startswith("/channels")]
    assert len(query["data"]["members"]) == 100
    assert [len(add["add_members"]) for add in additions] == [100, 50]
    added = [m["user_id"] for m in query["data"]["members"]] + [
        m["user_id"] for add in additions for m in add["add_members"]]
    assert sorted(added) == sorted(body["members"])
    assert len(stream.stand_in.state.channels["messaging:town-hall"]["members"]) == 250


# --- Updates -----------------------------------------------------------------------------

def test_update_sets_the_given_fields(client, stream):
    sent(client, MESSAGE_BODY)
    stream.reset_mock()

    response = client.put("/message/123-456-789-01234",
                          json={"message": {"text": "edited", "mood": "happy"}, "user": {"id": "tommaso"}})

    assert response.status_code == 200
    assert response.get_json()["message"]["text"] == "edited"
    assert response.get_json()["message"]["mood"] == "happy"
    assert calls(stream) == [("PUT", "/messages/123-456-789-01234", {"api_key": ["test-key"]})]
    assert stream.request_history[0].json() == {
        "set": {"text": "edited", "mood": "happy"}, "user": {"id": "tommaso"}}


def test_update_of_an_unknown_message_is_a_json_404(client, stream):
    response = client.put("/message/never-sent", json={"message": {"text": "x"}, "user": {"id": "tommaso"}})

    assert response.status_code == 404
    assert response.is_json
    assert "never-sent" in response.get_json()["api_error"]


@pytest.mark.parametrize("body, field", [
    ({"user": {"id": "tommaso"}}, "message"),
    ({"message": {}, "user": {"id": "tommaso"}}, "message"),
    ({"message": {"text": 5}, "user": {"id": "tommaso"}}, "message.text"),
    ({"message": {"text": ""}, "user": {"id": "tommaso"}}, "message.text"),
    ({"message": {"user_id": "thierry"}, "user": {"id": "tommaso"}}, "message.user_id"),
    ({"message": {"type": "deleted"}, "user": {"id": "tommaso"}}, "message.type"),
    ({"message": {"mood": "x" * 6000}, "user": {"id": "tommaso"}}, "message"),
    ({"message": {"text": "ok"}}, "user"),
    ({"message": {"text": "ok"}, "user": {"id": "no spaces"}}, "user.id"),
])
def test_invalid_update_is_a_400_naming_the_field(client, stream, body, field):
    response = client.put("/message/m-1", json=body)

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


def test_update_of_an_invalid_message_id_is_a_400(client, stream):
    response = client.put("/message/bad%20id", json={"message": {"text": "x"}, "user": {"id": "tommaso"}})

    assert response.status_code == 400
    assert stream.call_count == 0


# --- Deletes -----------------------------------------------------------------------------

def test_delete_message_is_soft_by_default(client, stream):
    sent(client, MESSAGE_BODY)
    stream.reset_mock()

    response = client.delete("/message/123-456-789-01234")

    assert response.status_code == 200
    assert response.get_json()["message"]["type"] == "deleted"
    assert calls(stream) == [("DELETE", "/messages/123-456-789-01234", {"api_key": ["test-key"], "hard": ["false"]})]


def test_delete_message_hard(client, stream):
    sent(client, MESSAGE_BODY)
    stream.reset_mock()

    response = client.delete("/message/123-456-789-01234?hard=true")

    assert response.status_code == 200
    assert calls(stream)[0][2]["hard"] == ["true"]
    assert "123-456-789-01234" not in stream.stand_in.state.messages


@pytest.mark.parametrize("query", ["", "?hard=true"])
def test_repeated_delete_message_succeeds(client, stream, query):
    sent(client, MESSAGE_BODY)
    client.delete(f"/message/123-456-789-01234{query}")

    again = client.delete("/message/123-456-789-01234?hard=true")
    and_again = client.delete("/message/123-456-789-01234?hard=true")

    assert again.status_code == 200
    assert and_again.status_code == 200
    assert and_again.get_json() == {"message": {"id": "123-456-789-01234"}, "already_deleted": True}


def test_delete_with_a_bad_hard_flag_is_a_400(client, stream):
    response = client.delete("/message/m-1?hard=maybe")

    assert response.status_code == 400
    assert response.get_json()["field"] == "hard"
    assert stream.call_count == 0


def test_delete_channel_is_soft_by_default(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"]["id"] = "general"
    client.post("/channel", json=body)
    stream.reset_mock()

    response = client.delete("/channel/messaging/general")

    assert response.status_code == 200
    assert calls(stream) == [("DELETE", "/channels/messaging/general",
                              {"api_key": ["test-key"], "hard_delete": ["false"]})]


def test_delete_channel_hard_and_repeat(client, stream):
    body = copy.deepcopy(CHANNEL_BODY)
    body["channel"]["id"] = "general"
    client.post("/channel", json=body)

    first = client.delete("/channel/messaging/general?hard=true")
    again = client.delete("/channel/messaging/general?hard=true")

    assert first.status_code == 200
    assert stream.request_history[-2].qs["hard_delete"] == ["true"]
    assert again.status_code == 200
    assert again.get_json() == {"channel": {"cid": "messaging:general"}, "already_deleted": True}


def test_channel_created_again_after_a_delete_starts_empty(client, stream):
    body = copy.deepcopy(MESSAGE_BODY)
    body["channel"]["id"] = "general"
    sent(client, body)
    client.delete("/channel/messaging/general?hard=true")

    state = client.post("/channel", json={k: body[k] for k in ("channel", "members")}).get_json()

    assert state["messages"] == []


@pytest.mark.parametrize("path, field", [("/channel/bad:type/general", "channel type"),
                                         ("/channel/messaging/" + "x" * 65, "channel id"),
                                         ("/channel/messaging/general?hard=yes", "hard")])
def test_delete_channel_with_bad_input_is_a_400(client, stream, path, field):
    response = client.delete(path)

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


def test_other_stream_errors_on_delete_are_not_swallowed(client, stream):
    stream.delete(f"{STREAM_URL}/messages/m-1", status_code=403, json={"code": 17, "message": "not allowed"})

    response = client.delete("/message/m-1")

    assert response.status_code == 502
