"""A primary system's outbox retries every write: creates, updates and deletes are safe to repeat."""

import copy
import json
import re
import time

import pytest

from app import create_app

from support.examples import CHANNEL_BODY, MESSAGE_BODY, sign
from support.stream import STREAM_URL


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
    # A soft-deleted message is read only so (docs/stream-behaviour.md, B31).
    assert calls(stream)[-1][2]["show_deleted_message"] == ["true"]


def test_retry_with_other_text_updates_the_stored_text(client, stream):
    sent(client, MESSAGE_BODY)
    changed = copy.deepcopy(MESSAGE_BODY)
    changed["message"]["text"] = "edited in the primary system"
    stream.reset_mock()

    retry = client.post("/message", json=changed)

    assert retry.status_code == 200
    assert retry.get_json()["message"]["text"] == "edited in the primary system"
    assert stream.stand_in.state.messages["123-456-789-01234"]["text"] == "edited in the primary system"
    assert stream.request_history[-1].method == "PUT"
    assert stream.request_history[-1].path == "/messages/123-456-789-01234"
    assert stream.request_history[-1].json()["set"] == {"text": "edited in the primary system"}


def test_other_stream_400s_on_send_are_not_taken_for_retries(client, stream):
    stream.post(
        re.compile(rf"{STREAM_URL}/channels/.*/message"),
        status_code=400,
        json={"code": 4, "message": 'SendMessage failed with error: "text is too long"', "StatusCode": 400},
    )

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


@pytest.mark.parametrize(
    "field, value", [("type", "team:x"), ("type", ""), ("type", 3), ("id", "a/b"), ("id", "x" * 65), ("id", 42)]
)
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
        m["user_id"] for add in additions for m in add["add_members"]
    ]
    assert sorted(added) == sorted(body["members"])
    assert len(stream.stand_in.state.channels["messaging:town-hall"]["members"]) == 250


# --- Updates -----------------------------------------------------------------------------


def test_update_sets_the_given_fields(client, stream):
    sent(client, MESSAGE_BODY)
    stream.reset_mock()

    response = client.put(
        "/message/123-456-789-01234", json={"message": {"text": "edited", "mood": "happy"}, "user": {"id": "tommaso"}}
    )

    assert response.status_code == 200
    assert response.get_json()["message"]["text"] == "edited"
    assert response.get_json()["message"]["mood"] == "happy"
    assert calls(stream) == [("PUT", "/messages/123-456-789-01234", {"api_key": ["test-key"]})]
    assert stream.request_history[0].json() == {"set": {"text": "edited", "mood": "happy"}, "user": {"id": "tommaso"}}


# Stream's two answers for a message that does not exist (docs/stream-behaviour.md, B30): code 16
# (404) today, code 4 (400) until 2026-03.
NOT_FOUND_FORMS = pytest.mark.parametrize("not_found_code", [16, 4])


@NOT_FOUND_FORMS
def test_update_of_an_unknown_message_is_a_json_404(client, stream, not_found_code):
    stream.stand_in.state.message_not_found_code = not_found_code

    response = client.put("/message/never-sent", json={"message": {"text": "x"}, "user": {"id": "tommaso"}})

    assert response.status_code == 404
    assert response.is_json
    assert "never-sent" in response.get_json()["api_error"]
    assert response.get_json()["stream_code"] == not_found_code


@pytest.mark.parametrize(
    "route, body, field",
    [
        ("/message/m-1", {"user": {"id": "tommaso"}}, "message"),
        ("/message/m-1", {"message": {}, "user": {"id": "tommaso"}}, "message"),
        ("/message/m-1", {"message": {"text": 5}, "user": {"id": "tommaso"}}, "message.text"),
        ("/message/m-1", {"message": {"text": ""}, "user": {"id": "tommaso"}}, "message.text"),
        ("/message/m-1", {"message": {"user_id": "thierry"}, "user": {"id": "tommaso"}}, "message.user_id"),
        ("/message/m-1", {"message": {"type": "deleted"}, "user": {"id": "tommaso"}}, "message.type"),
        ("/message/m-1", {"message": {"mood": "x" * 6000}, "user": {"id": "tommaso"}}, "message"),
        ("/message/m-1", {"message": {"text": "ok"}}, "user"),
        ("/message/m-1", {"message": {"text": "ok"}, "user": {"id": "no spaces"}}, "user.id"),
        ("/channel/messaging/team", {}, "custom_data"),
        ("/channel/messaging/team", {"members": None}, "members"),
        ("/channel/messaging/team", {"custom_data": []}, "custom_data"),
        ("/channel/messaging/team", {"custom_data": {"members": ["x"]}}, "custom_data.members"),
        ("/channel/messaging/team", {"members": {}}, "members"),
        ("/channel/messaging/team", {"members": {"bad id": {}}}, "members.bad id"),
        ("/channel/messaging/team", {"members": {"ana": {"role": "admin"}}}, "members.ana.role"),
    ],
)
def test_an_invalid_update_is_a_400_naming_the_field(client, stream, route, body, field):
    response = client.put(route, json=body)

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


@NOT_FOUND_FORMS
@pytest.mark.parametrize("query", ["", "?hard=true"])
def test_repeated_delete_message_succeeds(client, stream, query, not_found_code):
    stream.stand_in.state.message_not_found_code = not_found_code
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
    assert calls(stream) == [
        ("DELETE", "/channels/messaging/general", {"api_key": ["test-key"], "hard_delete": ["false"]})
    ]


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


@pytest.mark.parametrize(
    "path, field",
    [
        ("/channel/bad:type/general", "channel type"),
        ("/channel/messaging/" + "x" * 65, "channel id"),
        ("/channel/messaging/general?hard=yes", "hard"),
    ],
)
def test_delete_channel_with_bad_input_is_a_400(client, stream, path, field):
    response = client.delete(path)

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


def test_other_stream_errors_on_delete_are_not_swallowed(client, stream):
    stream.delete(f"{STREAM_URL}/messages/m-1", status_code=403, json={"code": 17, "message": "not allowed"})

    response = client.delete("/message/m-1")

    assert response.status_code == 502


# --- Channel updates -------------------------------------------------------------------------


def team_channel(client, members=("tommaso", "thierry"), custom_data=None):
    body = {
        "channel": {"id": "team", "creator_id": members[0], "custom_data": custom_data or {"title": "Team"}},
        "members": {member: {"name": member.title()} for member in members},
    }
    assert client.post("/channel", json=body).status_code == 200


def test_update_channel_sets_and_unsets_custom_data_and_keeps_the_rest(client, stream):
    team_channel(client, custom_data={"title": "Team", "topic": "launch", "color": "red"})
    stream.reset_mock()

    response = client.put("/channel/messaging/team", json={"custom_data": {"title": "Renamed", "topic": None}})

    assert response.status_code == 200
    assert calls(stream) == [("PATCH", "/channels/messaging/team", {"api_key": ["test-key"]})]
    assert stream.request_history[0].json() == {"set": {"title": "Renamed"}, "unset": ["topic"]}
    channel = stream.stand_in.state.channels["messaging:team"]
    assert (channel["title"], channel["color"], "topic" in channel) == ("Renamed", "red", False)


def test_update_channel_makes_its_members_exactly_the_given_ones(client, stream):
    team_channel(client, members=("tommaso", "thierry", "ana"))
    stream.reset_mock()

    response = client.put(
        "/channel/messaging/team", json={"members": {"tommaso": {"name": "Tommaso"}, "bo": {"name": "Bo"}}}
    )

    assert response.status_code == 200
    assert response.get_json()["members"] == ["bo", "tommaso"]
    assert (response.get_json()["added"], response.get_json()["removed"]) == (["bo"], ["ana", "thierry"])
    assert [body for body in (r.json() for r in stream.request_history) if "users" not in body][1:] == [
        {"add_members": [{"user_id": "bo"}]},
        {"remove_members": ["ana", "thierry"]},
    ]
    assert sorted(stream.stand_in.state.channels["messaging:team"]["members"]) == ["bo", "tommaso"]


def test_update_channel_is_repeatable(client, stream):
    team_channel(client)
    body = {"custom_data": {"title": "Again"}, "members": {"tommaso": {"name": "Tommaso"}}}

    first, again = client.put("/channel/messaging/team", json=body), client.put("/channel/messaging/team", json=body)

    assert first.status_code == again.status_code == 200
    assert again.get_json()["added"] == again.get_json()["removed"] == []
    assert stream.stand_in.state.channels["messaging:team"]["members"] == ["tommaso"]


def test_update_channel_adds_and_removes_a_hundred_members_a_call(client, stream):
    team_channel(client, members=[f"old-{n}" for n in range(150)])
    stream.reset_mock()

    client.put("/channel/messaging/team", json={"members": {f"new-{n}": {} for n in range(120)}})

    bodies = [r.json() for r in stream.request_history if r.method == "POST" and r.path == "/channels/messaging/team"]
    assert [len(b.get("add_members", b.get("remove_members"))) for b in bodies] == [100, 20, 100, 50]
    assert len(stream.stand_in.state.channels["messaging:team"]["members"]) == 120


def test_update_of_an_unknown_channel_is_a_json_404_that_writes_nothing(client, stream):
    response = client.put(
        "/channel/messaging/nowhere", json={"custom_data": {"title": "x"}, "members": {"ana": {"name": "Ana"}}}
    )

    assert response.status_code == 404
    assert response.is_json
    assert calls(stream) == [("PATCH", "/channels/messaging/nowhere", {"api_key": ["test-key"]})]


def test_members_of_a_distinct_channel_cannot_change(client, stream):
    cid = client.post("/channel", json=CHANNEL_BODY).get_json()["cid"]
    stream.reset_mock()

    response = client.put(f"/channel/{cid.replace(':', '/')}", json={"members": {"ana": {}}})

    assert response.status_code == 400
    assert response.get_json()["field"] == "members"
    assert stream.call_count == 0


# --- User deletes ----------------------------------------------------------------------------


def test_delete_user_is_soft_and_keeps_their_messages(client, stream):
    sent(client, MESSAGE_BODY)
    stream.reset_mock()

    response = client.delete("/user/tommaso")

    assert response.status_code == 200
    assert response.get_json()["user"] == {"id": "tommaso"}
    assert response.get_json()["task_id"]
    assert [(method, path) for method, path, _ in calls(stream)] == [("GET", "/users"), ("POST", "/users/delete")]
    assert stream.request_history[1].json() == {"user": "soft", "user_ids": ["tommaso"]}
    assert stream.stand_in.state.users["tommaso"]["deleted_at"]
    assert stream.stand_in.state.messages["123-456-789-01234"]["deleted_at"] is None


@pytest.mark.parametrize("soft_delete_first", [False, True])
def test_delete_user_hard_deletes_their_messages_even_after_a_soft_delete(client, stream, soft_delete_first):
    sent(client, MESSAGE_BODY)
    if soft_delete_first:
        client.delete("/user/tommaso")
    stream.reset_mock()

    response = client.delete("/user/tommaso?hard=true")

    assert response.status_code == 200 and "already_deleted" not in response.get_json()
    assert [(method, path) for method, path, _ in calls(stream)] == [("POST", "/users/delete")]
    assert stream.request_history[0].json() == {"user": "soft", "messages": "hard", "user_ids": ["tommaso"]}
    assert "123-456-789-01234" not in stream.stand_in.state.messages


def test_repeated_delete_user_answers_already_deleted(client, stream):
    sent(client, MESSAGE_BODY)
    client.delete("/user/tommaso")
    stream.reset_mock()

    again = client.delete("/user/tommaso")

    assert again.status_code == 200
    assert again.get_json() == {"user": {"id": "tommaso"}, "already_deleted": True}
    assert [path for _, path, _ in calls(stream)] == ["/users"]


def test_a_deleted_user_sent_again_is_upserted_again(client, stream):
    sent(client, MESSAGE_BODY)
    client.delete("/user/tommaso")
    again = copy.deepcopy(MESSAGE_BODY)
    again["message"]["id"] = "after-delete"
    stream.reset_mock()

    sent(client, again)

    assert stream.request_history[0].path == "/users"
    assert "tommaso" in stream.request_history[0].json()["users"]


@pytest.mark.parametrize("path, field", [("/user/bad%20id", "user id"), ("/user/tommaso?hard=maybe", "hard")])
def test_delete_user_with_bad_input_is_a_400(client, stream, path, field):
    response = client.delete(path)

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


# --- Squatted message ids --------------------------------------------------------------------


def deliver(client, event, webhook_id):
    body = json.dumps(event).encode()
    return client.post(
        "/stream-incoming-wh", data=body, headers={"X-Signature": sign(body), "X-Webhook-Id": webhook_id}
    )


def test_a_message_id_squatted_by_a_chat_client_is_a_409_and_nothing_is_forwarded_as_ours(environ, stream, primary):
    client = create_app({**environ, "PRIMARY_SYNC_URL": primary.url}).test_client()
    stream.post(primary.url, real_http=True)  # the primary system is a real local server
    mirrored = sent(client, MESSAGE_BODY).get_json()["message"]  # the squatter can read its mark
    state = stream.stand_in.state
    state.upsert_users({"users": {"squatter": {"id": "squatter"}}})
    state.get_or_create_channel("messaging", "own", {"data": {"members": [{"user_id": "squatter"}]}})
    squatted = state.send_message_directly(
        "messaging:own", "squatter", {"id": "sq-1", "text": "mine now", "primary_origin": mirrored["primary_origin"]}
    )
    assert deliver(client, squatted, "wh-squat").get_json()["outcome"] == "queued"  # a chat client's message
    primary.wait_for(1)
    taken = copy.deepcopy(MESSAGE_BODY)
    taken["message"] = {"id": "sq-1", "text": "the primary's message"}
    forwarded_before = len(primary.received)

    response = client.post("/message", json=taken)
    time.sleep(0.3)  # anything the service would have handed over by now
    client.application.extensions["handover"].close()
    # The hand-overs went to the primary, not to Stream: keep them out of the contract test.
    stream.request_history[:] = [sent for sent in stream.request_history if sent.url.startswith(STREAM_URL)]

    assert response.status_code == 409
    assert response.is_json
    assert response.get_json()["message_id"] == "sq-1"
    assert "sq-1" in response.get_json()["error"] and "taken" in response.get_json()["error"]
    assert state.messages["sq-1"]["text"] == "mine now"
    assert len(primary.received) == forwarded_before  # nothing under the primary's id
    forwarded = [entry["event"]["message"] for entry in primary.received if entry["event"]["message"]["id"] == "sq-1"]
    assert [(message["user"]["id"], message["cid"], message["text"]) for message in forwarded] == [
        ("squatter", "messaging:own", "mine now")
    ]


def test_a_retry_of_our_own_message_is_still_answered_with_it(client, stream):
    first = sent(client, MESSAGE_BODY).get_json()

    retry = client.post("/message", json=MESSAGE_BODY)

    assert retry.status_code == 200
    assert retry.get_json()["message"]["primary_origin"] == first["message"]["primary_origin"]


def test_our_own_id_sent_again_by_another_sender_is_a_409(client, stream):
    sent(client, MESSAGE_BODY)
    other_sender = copy.deepcopy(MESSAGE_BODY)
    other_sender["user"] = {"id": "thierry", "name": "Thierry", "image": ""}

    response = client.post("/message", json=other_sender)

    assert response.status_code == 409
