"""Versions through the routes: a late retry of an older version never undoes a newer write
(the six cases of issue 19, each ending with the newer value in Stream), a delete's version is
a tombstone, stale parts are named, bad versions are refused before Stream, a busy object or a
store that is down is a 503, and writes without versions behave as before."""

import copy
import sqlite3
import threading

import pytest

from app import create_app
from stream_backend.mirror.versions import message_object
from stream_backend.store.locks import ObjectLocks, SQLiteLeases

from live import free_port
from support.examples import MESSAGE_BODY

TEAM = {
    "channel": {"type": "messaging", "id": "team", "creator_id": "ana"},
    "members": {"ana": {"name": "Ana"}, "bo": {"name": "Bo"}},
}


def message(message_id="m-1", text="hello", version=None, channel=TEAM, user_version=None, name="Ana", **parts):
    body = {**copy.deepcopy(channel), "message": {"id": message_id, "text": text}, "user": {"id": "ana", "name": name}}
    if version is not None:
        body["message"]["version"] = version
    if user_version is not None:
        body["user"]["version"] = user_version
    for field, value in parts.items():  # channel_version=..., members=...
        if field == "channel_version":
            body["channel"]["version"] = value
        else:
            body[field] = value
    return body


def ok(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def sent_during(stream, call):
    """What the service sent to Stream while `call()` ran, and its answer."""
    stream.reset_mock()
    answer = call()
    return answer, [(request.method, request.path) for request in stream.request_history]


# --- The six cases: the late older version changes nothing -----------------------------------


def test_a_late_older_message_update_leaves_the_newer_text(client, stream):
    ok(client.post("/message", json=message()))
    ok(client.put("/message/m-1", json={"message": {"text": "v1", "version": 1}, "user": {"id": "ana"}}))
    ok(client.put("/message/m-1", json={"message": {"text": "v2", "version": 2}, "user": {"id": "ana"}}))

    late, calls = sent_during(
        stream,
        lambda: ok(client.put("/message/m-1", json={"message": {"text": "v1", "version": 1}, "user": {"id": "ana"}})),
    )

    assert stream.stand_in.state.messages["m-1"]["text"] == "v2"
    assert late == {"message": {"id": "m-1"}, "stale": True, "stale_objects": ["message:m-1"]}
    assert calls == []


def test_a_late_older_channel_update_leaves_the_newer_title(client, stream):
    ok(client.post("/channel", json=TEAM))
    ok(client.put("/channel/messaging/team", json={"custom_data": {"title": "v1"}, "version": 1}))
    ok(client.put("/channel/messaging/team", json={"custom_data": {"title": "v2"}, "version": 2}))

    late, calls = sent_during(
        stream, lambda: ok(client.put("/channel/messaging/team", json={"custom_data": {"title": "v1"}, "version": 1}))
    )

    assert stream.stand_in.state.channels["messaging:team"]["title"] == "v2"
    assert late["stale_objects"] == ["channel:messaging:team"]
    assert late["channel"] == {"cid": "messaging:team", "type": "messaging", "id": "team"}
    assert calls == []


def test_a_late_older_user_name_through_message_is_not_rewritten(client, stream):
    ok(client.post("/message", json=message("m-1", name="Old", user_version=1)))
    ok(client.post("/message", json=message("m-2", name="New", user_version=2)))

    late, calls = sent_during(
        stream, lambda: ok(client.post("/message", json=message("m-1", name="Old", user_version=1)))
    )

    assert stream.stand_in.state.users["ana"]["name"] == "New"
    assert late["stale_objects"] == ["user:ana"]
    assert ("POST", "/users") not in calls


def test_a_new_message_with_a_stale_sender_is_sent_without_renaming_them(client, stream):
    ok(client.post("/message", json=message("m-1", name="New", user_version=2)))

    answer, calls = sent_during(
        stream, lambda: ok(client.post("/message", json=message("m-2", name="Old", user_version=1)))
    )

    assert stream.stand_in.state.messages["m-2"]["text"] == "hello"
    assert stream.stand_in.state.users["ana"]["name"] == "New"
    assert answer["stale"] is True and answer["stale_objects"] == ["user:ana"]
    assert calls == [("POST", "/channels/messaging/team/message")]


def test_a_late_message_retry_does_not_revert_a_later_edit(client, stream):
    ok(client.post("/message", json=message("m-1", "first", version=1)))
    ok(client.put("/message/m-1", json={"message": {"text": "edited", "version": 2}, "user": {"id": "ana"}}))

    late, calls = sent_during(stream, lambda: ok(client.post("/message", json=message("m-1", "first", version=1))))

    assert stream.stand_in.state.messages["m-1"]["text"] == "edited"
    assert late["message"] == {"id": "m-1"} and late["stale_objects"] == ["message:m-1"]
    assert not any(path.startswith("/messages") or path.endswith("/message") for _, path in calls)


def test_a_late_message_does_not_re_add_a_member_a_channel_update_removed(client, stream):
    ok(client.post("/channel", json={**TEAM, "channel": {**TEAM["channel"], "version": 1}}))
    ok(client.put("/channel/messaging/team", json={"members": {"ana": {"name": "Ana"}}, "version": 2}))

    late, calls = sent_during(stream, lambda: ok(client.post("/message", json=message("m-1", channel_version=1))))

    assert stream.stand_in.state.channels["messaging:team"]["members"] == ["ana"]
    assert stream.stand_in.state.messages["m-1"]["text"] == "hello"  # the message itself is new
    assert late["stale_objects"] == ["channel:messaging:team"]
    assert calls == [("POST", "/channels/messaging/team/message")]  # its users as synced before


def test_a_late_message_does_not_bring_back_a_hard_deleted_message(client, stream):
    ok(client.post("/message", json=message("m-1", version=1)))
    ok(client.delete("/message/m-1?hard=true&version=2"))

    late, calls = sent_during(stream, lambda: ok(client.post("/message", json=message("m-1", version=1))))

    assert "m-1" not in stream.stand_in.state.messages
    assert late["stale_objects"] == ["message:m-1"]
    assert not any(path.endswith("/message") for _, path in calls)


# --- Tombstones, equal versions, stale deletes ----------------------------------------------


def test_a_create_as_new_as_the_delete_does_not_bring_it_back(client, stream):
    """A primary may delete with the version the object had: as new as a delete is stale."""
    ok(client.post("/message", json=message("m-1", version=3)))
    ok(client.delete("/message/m-1?hard=true&version=3"))

    ok(client.post("/message", json=message("m-1", version=3)))

    assert "m-1" not in stream.stand_in.state.messages


def test_a_newer_create_after_a_delete_brings_it_back(client, stream):
    ok(client.post("/message", json=message("m-1", version=1)))
    ok(client.delete("/message/m-1?hard=true&version=2"))

    answer = ok(client.post("/message", json=message("m-1", "again", version=3)))

    assert stream.stand_in.state.messages["m-1"]["text"] == "again"
    assert "stale" not in answer


def test_an_older_delete_is_stale_and_deletes_nothing(client, stream):
    ok(client.post("/message", json=message("m-1", version=5)))

    answer, calls = sent_during(stream, lambda: ok(client.delete("/message/m-1?version=4")))

    assert answer == {"message": {"id": "m-1"}, "stale": True, "stale_objects": ["message:m-1"]}
    assert stream.stand_in.state.messages["m-1"]["deleted_at"] is None
    assert calls == []


def test_an_equal_version_is_applied_again_and_repairs_an_edit_made_in_stream(client, stream):
    ok(client.post("/channel", json=TEAM))
    ok(client.put("/channel/messaging/team", json={"custom_data": {"title": "Team"}, "version": 2}))
    stream.stand_in.state.edit_channel_directly("messaging:team", title="renamed in a chat client")

    answer = ok(client.put("/channel/messaging/team", json={"custom_data": {"title": "Team"}, "version": 2}))

    assert stream.stand_in.state.channels["messaging:team"]["title"] == "Team"
    assert "stale" not in answer


def test_no_message_goes_into_a_channel_deleted_since_its_version(client, stream):
    ok(client.post("/message", json=message("m-1", channel_version=4)))
    ok(client.delete("/channel/messaging/team?hard=true&version=5"))

    late, calls = sent_during(stream, lambda: ok(client.post("/message", json=message("m-2", channel_version=4))))

    assert "messaging:team" not in stream.stand_in.state.channels
    assert "m-2" not in stream.stand_in.state.messages
    assert late["stale_objects"] == ["channel:messaging:team", "message:m-2"]
    assert calls == []


@pytest.mark.parametrize("hard, sent", [(True, False), (False, True)])
def test_a_late_message_of_a_deleted_sender_is_sent_unless_their_messages_went_too(client, stream, hard, sent):
    ok(client.post("/message", json=message("m-1", user_version=4)))
    ok(client.delete(f"/user/ana?hard={str(hard).lower()}&version=5"))

    late = ok(client.post("/message", json=message("m-2", user_version=4)))

    assert ("m-2" in stream.stand_in.state.messages) is sent
    assert stream.stand_in.state.users["ana"]["deleted_at"]  # the user is not upserted back
    assert ("message:m-2" in late["stale_objects"]) is not sent


def test_a_distinct_channel_deleted_by_its_id_is_not_brought_back_by_a_late_sync(client, stream):
    body = copy.deepcopy(MESSAGE_BODY)
    body["channel"]["version"] = 2
    cid = ok(client.post("/message", json=body))["cid"]
    ok(client.delete(f"/channel/{cid.replace(':', '/')}?hard=true&version=3"))
    body["message"]["id"] = "a-late-one"

    late = ok(client.post("/message", json=body))

    assert cid not in stream.stand_in.state.channels
    assert late["cid"] == cid and late["stale_objects"] == [f"channel:{cid}", "message:a-late-one"]


def test_timestamps_compare_as_instants_to_the_nanosecond(client, stream):
    ok(client.post("/message", json=message()))
    update = {
        "message": {"text": "at 10:00 UTC", "version": "2026-11-28T11:00:00.000000001+01:00"},
        "user": {"id": "ana"},
    }
    ok(client.put("/message/m-1", json=update))

    older = ok(client.put("/message/m-1", json={**update, "message": {"text": "x", "version": "2026-11-28T10:00:00Z"}}))
    newer = ok(
        client.put(
            "/message/m-1", json={**update, "message": {"text": "later", "version": "2026-11-28T10:00:00.000000002Z"}}
        )
    )

    assert older["stale"] is True and "stale" not in newer
    assert stream.stand_in.state.messages["m-1"]["text"] == "later"


# --- What is refused, before Stream ------------------------------------------------------------


@pytest.mark.parametrize(
    "route, body, field",
    [
        ("/message", message(version=-1), "message.version"),
        ("/message", message(version=True), "message.version"),
        ("/message", message(version=1.5), "message.version"),
        ("/message", message(version=2**63), "message.version"),
        ("/message", message(version="2026-11-28"), "message.version"),
        ("/message", message(version="2026-11-28T10:00:00"), "message.version"),
        ("/message", message(version="2026-02-30T10:00:00Z"), "message.version"),
        ("/message", message(version="2026-11-28T10:00:00.1234567890Z"), "message.version"),
        ("/message", message(user_version="soon"), "user.version"),
        ("/message", message(channel_version=[1]), "channel.version"),
        ("/channel", {**TEAM, "members": {"ana": {"version": None}}}, "members.ana.version"),
    ],
)
def test_a_bad_version_is_a_400_naming_it_and_nothing_is_sent(client, stream, route, body, field):
    response = client.post(route, json=body)

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


@pytest.mark.parametrize("query", ["version=-1", "version=soon", "version=2026-11-28T10:00:00 01:00", "version="])
def test_a_bad_delete_version_is_a_400_naming_it(client, stream, query):
    response = client.delete(f"/message/m-1?{query}")

    assert response.status_code == 400
    assert response.get_json()["field"] == "version"
    assert stream.call_count == 0


def test_a_timestamp_after_an_integer_version_is_a_409_naming_the_field(client, stream):
    ok(client.post("/message", json=message(version=3)))
    stream.reset_mock()

    response = client.put(
        "/message/m-1", json={"message": {"text": "x", "version": "2026-11-28T10:00:00Z"}, "user": {"id": "ana"}}
    )

    assert response.status_code == 409
    assert response.get_json()["field"] == "message.version"
    assert "message:m-1 has an integer version" in response.get_json()["error"]
    assert stream.call_count == 0


def test_an_update_that_sets_only_its_version_is_a_400(client, stream):
    response = client.put("/message/m-1", json={"message": {"version": 3}, "user": {"id": "ana"}})

    assert response.status_code == 400
    assert response.get_json()["field"] == "message"


# --- Locks and the store --------------------------------------------------------------------


@pytest.fixture
def other_worker(environ):
    """Another worker's locks on the same SQLite file."""
    return ObjectLocks(SQLiteLeases(environ["WEBHOOK_DB"]))


def test_an_object_another_worker_writes_is_a_503_naming_it(app, client, stream, other_worker):
    app.extensions["mirror"].versions.locks.wait_seconds = 0.2
    with other_worker.holding([message_object("m-1")]):
        response = client.post("/message", json=message(version=1))

    assert response.status_code == 503
    assert response.get_json()["objects"] == ["message:m-1"]
    assert response.headers["Retry-After"] == "1"
    assert stream.call_count == 0


def test_an_object_waits_for_another_workers_write_then_goes(app, client, stream, other_worker):
    released = threading.Event()

    def hold():
        with other_worker.holding([message_object("m-1")]):
            released.wait(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    response = client.post("/message", json=message(version=1))
    holder.join()

    assert response.status_code == 200


def test_unrelated_objects_never_wait(app, client, stream, other_worker):
    app.extensions["mirror"].versions.locks.wait_seconds = 0.2
    with other_worker.holding([message_object("m-1")]):
        response = client.post("/message", json=message("m-2", version=1))

    assert response.status_code == 200


def test_a_store_of_versions_that_is_down_is_a_503_and_nothing_is_sent(environ, stream):
    client = create_app({**environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()

    response = client.post("/message", json=message(version=1))

    assert response.status_code == 503
    assert "could not lock the version of message:m-1" in response.get_json()["error"]
    assert "127.0.0.1" not in response.get_json()["error"]
    assert stream.call_count == 0


# --- Without versions ------------------------------------------------------------------------


def test_writes_without_versions_touch_no_version_and_no_lock(client, stream, environ):
    ok(client.post("/message", json=message()))
    ok(client.put("/message/m-1", json={"message": {"text": "edited"}, "user": {"id": "ana"}}))
    ok(client.delete("/message/m-1"))

    with sqlite3.connect(environ["WEBHOOK_DB"]) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts = [
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("object_versions", "object_locks")
            if table in tables
        ]
    assert counts == [0] * len(counts)


def test_without_versions_a_late_retry_still_wins_as_before(client, stream):
    """What the docs warn of: without versions, last arrival wins."""
    ok(client.post("/message", json=message("m-1", "first")))
    ok(client.put("/message/m-1", json={"message": {"text": "edited"}, "user": {"id": "ana"}}))

    ok(client.post("/message", json=message("m-1", "first")))

    assert stream.stand_in.state.messages["m-1"]["text"] == "first"


def test_the_warm_path_with_versions_is_one_stream_call(client, stream):
    versions = {"channel_version": 1, "user_version": 1}
    ok(client.post("/message", json=message("m-1", version=1, **versions)))

    answer, calls = sent_during(stream, lambda: ok(client.post("/message", json=message("m-2", version=1, **versions))))

    assert calls == [("POST", "/channels/messaging/team/message")]
    assert "stale" not in answer


def test_the_warm_path_does_not_wait_for_its_channels_lock(app, client, stream, other_worker):
    """Users and channel at the versions applied, and known to the state: nothing of them is
    written, so another worker writing the channel does not hold the message up."""
    versions = {"channel_version": 1, "user_version": 1}
    ok(client.post("/message", json=message("m-1", version=1, **versions)))
    app.extensions["mirror"].versions.locks.wait_seconds = 0.2

    with other_worker.holding(["channel:messaging:team", "user:ana"]):
        warm = client.post("/message", json=message("m-2", version=1, **versions))
        newer = client.post("/message", json=message("m-3", version=1, channel_version=2))

    assert warm.status_code == 200
    assert newer.status_code == 503 and newer.get_json()["objects"] == ["channel:messaging:team"]


def test_a_version_written_with_a_zero_fraction_is_the_integer_the_document_allows(client, stream):
    """JSON Schema's `integer` (the document's) counts 2.0 as 2: a primary whose JSON library
    writes floats is answered as if it had written 2, and its 1 is then stale."""
    ok(client.post("/message", json=message()))
    ok(client.put("/message/m-1", json={"message": {"text": "v2", "version": 2.0}, "user": {"id": "ana"}}))
    late, calls = sent_during(
        stream,
        lambda: ok(client.put("/message/m-1", json={"message": {"text": "v1", "version": 1}, "user": {"id": "ana"}})),
    )

    assert late["stale"] is True
    assert not [call for call in calls if call[0] != "GET"]  # nothing written to Stream
