"""`flask verify FILE`: Stream is read in batches and compared with the file; every difference is
written as JSON Lines, and the exit status says whether there was any."""

import json
import re

from support.history import EXAMPLE, channel, member, message, read_jsonl, run_command, user, write_history


def backfilled_example(app, tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())
    status, output = run_command(app, "backfill", path)
    assert status == 0, output
    return path


def test_no_difference_after_a_backfill(app, stream, tmp_path):
    path = backfilled_example(app, tmp_path)

    status, output = run_command(app, "verify", path)

    assert status == 0, output
    assert "checked 7 messages" in output and "differences: 0" in output
    assert read_jsonl(f"{path}.differences.jsonl") == []


def test_finds_a_missing_message_an_edited_text_and_a_missing_member(app, stream, tmp_path):
    path = backfilled_example(app, tmp_path)
    state = stream.stand_in.state
    state.messages.pop("hist-0002")
    state.channel_messages["messaging:general"].remove("hist-0002")
    state.messages["hist-0006"]["text"] = "Second draft."
    state.channels["messaging:general"]["members"].remove("nash")

    status, output = run_command(app, "verify", path)

    assert status == 1
    assert "differences: 3" in output
    differences = {entry["id"]: entry for entry in read_jsonl(f"{path}.differences.jsonl")}
    assert differences["hist-0002"] == {
        "line": 13,
        "type": "message",
        "id": "hist-0002",
        "problem": "missing",
        "channel": "messaging:general",
    }
    assert differences["hist-0006"] == {
        "line": 17,
        "type": "message",
        "id": "hist-0006",
        "problem": "different text",
        "channel": "messaging:design-review",
        "expected": "First draft of the onboarding screens.",
        "actual": "Second draft.",
    }
    assert differences["messaging:general/nash"] == {
        "line": 9,
        "type": "member",
        "id": "messaging:general/nash",
        "problem": "not a member",
        "channel": "messaging:general",
    }


def test_finds_an_undeleted_message_a_missing_user_and_a_message_in_another_channel(app, stream, tmp_path):
    path = backfilled_example(app, tmp_path)
    state = stream.stand_in.state
    state.messages["hist-0005"].update(type="regular", deleted_at=None)
    state.users.pop("amin")
    state.messages["hist-0007"]["cid"] = "messaging:general"
    state.channel_messages["messaging:design-review"].remove("hist-0007")

    status, _ = run_command(app, "verify", path, "--out", tmp_path / "differences.jsonl")

    problems = {(entry["id"], entry["problem"]) for entry in read_jsonl(tmp_path / "differences.jsonl")}
    assert status == 1
    assert problems == {("hist-0005", "not deleted"), ("amin", "missing"), ("hist-0007", "in another channel")}


def test_a_missing_channel_is_a_difference_and_so_are_its_members_and_messages(app, stream, tmp_path):
    path = backfilled_example(app, tmp_path)
    del stream.stand_in.state.channels["messaging:design-review"]

    status, _ = run_command(app, "verify", path)

    problems = sorted((entry["type"], entry["problem"]) for entry in read_jsonl(f"{path}.differences.jsonl"))
    assert status == 1
    assert problems == [
        ("channel", "missing"),
        ("member", "not a member"),
        ("member", "not a member"),
        ("message", "missing"),
        ("message", "missing"),
    ]


def test_stream_is_read_in_batches(app, stream, tmp_path):
    records = [user(f"user-{number:03d}") for number in range(150)]
    records += [channel("general", created_by="user-000")]
    records += [member("general", f"user-{number:03d}") for number in range(120)]
    records += [message(f"m-{number:03d}", sender="user-001") for number in range(70)]
    path = write_history(tmp_path / "history.jsonl", records)
    run_command(app, "backfill", path)
    stream.reset_mock()

    status, output = run_command(app, "verify", path)

    assert status == 0, output
    calls = sorted((request.method, request.path) for request in stream.request_history)
    assert calls == [("GET", "/channels/messaging/general/messages")] * 2 + [("GET", "/members")] * 2 + [
        ("GET", "/users")
    ] * 2 + [("POST", "/channels")]
    message_batches = [
        request.qs["ids"][0].split(",") for request in stream.request_history if request.path.endswith("/messages")
    ]
    assert sorted(len(batch) for batch in message_batches) == [20, 50]
    user_queries = [
        json.loads(request.qs["payload"][0]) for request in stream.request_history if request.path == "/users"
    ]
    assert [
        (len(query["filter_conditions"]["id"]["$in"]), query["include_deactivated_users"]) for query in user_queries
    ] == [(100, True), (50, True)]  # a deactivated user is there, not missing


def test_verify_only_reads(app, stream, tmp_path):
    path = backfilled_example(app, tmp_path)
    stream.reset_mock()

    run_command(app, "verify", path)

    assert {request.method for request in stream.request_history} == {"GET", "POST"}
    assert [request.path for request in stream.request_history if request.method == "POST"] == ["/channels"]


def test_stream_failing_after_every_retry_is_exit_status_2(app, stream, tmp_path, monkeypatch):
    path = backfilled_example(app, tmp_path)
    monkeypatch.setattr(
        "stream_backend.migration.pacing.time.sleep", lambda seconds: None
    )  # the backoff, not the behaviour
    stream.get(re.compile(r".*/users\?"), status_code=503, json={"code": -1, "message": "unavailable"})

    status, output = run_command(app, "verify", path)

    assert status == 2
    assert "Verify could not finish: Stream answered 503" in output
