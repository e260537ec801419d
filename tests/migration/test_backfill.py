"""`flask backfill FILE`: Stream's import format, checked as stream-cli checks it, mirrored over
Stream's API (batched, quiet, deleted when deleted, paced, retried, resumable) or handed to
Stream's importer.

Stream is answered by the stand-in's own logic: in memory through requests-mock (the
`stream` fixture: every request is also checked against Stream's spec), or over HTTP with
rate limits and injected failures."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from stream_backend.errors import StreamError, StreamTimeout
from stream_backend.migration import backfill, import_file
from stream_backend.migration.backfill import Tracker
from stream_backend.migration.pacing import GaveUp, Pacer, paced_client, retrying

from live import ROOT  # noqa: E402
from stream_stand_in import Faults
from support.examples import origin_mark
from support.history import (
    EXAMPLE,
    channel,
    member,
    message,
    read_jsonl,
    run_command,
    small_history,
    user,
    write_history,
)
from support.stream import stand_in_over_http
from support.stream import stream_in_memory as stream_stand_in


def sent(stream, method, path_end=""):
    return [
        request for request in stream.request_history if request.method == method and request.path.endswith(path_end)
    ]


def live_run(app, path, **options):
    """A live backfill as the command runs it, with options the command does not expose."""
    settings = app.config["SETTINGS"]
    pacer = Pacer(1.0)
    client = paced_client(
        settings.stream_api_key, settings.stream_api_secret, settings.stream_chat_url, settings.stream_timeout, pacer, 8
    )
    mirror = app.extensions["mirror"].with_client(client)
    return backfill.run_live(str(path), mirror, pacer, backfill.Options(**{"concurrency": 8, **options}))


# --- The file: checked as stream-cli's validate-import checks it ---------------------------


def test_check_validates_without_calling_stream(app, stream, tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())

    status, output = run_command(app, "backfill", path, "--check")

    assert status == 0, output
    assert "valid 4 users" in output and "valid 7 messages" in output and "refused: 0" in output
    assert stream.request_history == []


def test_malformed_and_refused_lines_are_reported_by_line_and_skipped(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana"),  # 1
            '{"type": "user", "item": {"id": "bo"',  # 2 malformed JSON
            user("bad id!"),  # 3 invalid user id
            ("thread", {"id": "x"}),  # 4 unknown type
            channel("general"),  # 5
            member("general", "ghost"),  # 6 user not in the file
            message("m-1"),  # 7
            message("m-1", text="again"),  # 8 duplicate id
            message("m-2", type="deleted"),  # 9 deleted without deleted_at
            message("m-3", channel_id="nowhere"),  # 10 channel not in the file
            ("reaction", {"message_id": "m-1", "type": "like", "user_id": "ana"}),  # 11 no created_at
            "[1, 2]",  # 12 not a record
            message("m-4"),  # 13
        ],
    )

    status, output = run_command(app, "backfill", path)

    assert status == 1
    assert "mirrored: 4" in output and "refused: 9" in output
    refused = {entry["line"]: entry["reason"] for entry in read_jsonl(f"{path}.refused.jsonl")}
    assert sorted(refused) == [2, 3, 4, 6, 8, 9, 10, 11, 12]
    assert "malformed JSON" in refused[2]
    assert "user.id invalid" in refused[3]
    assert "invalid item type 'thread'" in refused[4]
    assert "user 'ghost' doesn't exist" in refused[6]
    assert "duplicate message 'm-1'" in refused[8]
    assert 'message.type "deleted" while message.deleted_at is null' in refused[9]
    assert "channel 'messaging:nowhere' doesn't exist" in refused[10]
    assert "reaction.created_at required" in refused[11]
    assert [request.json()["message"]["text"] for request in sent(stream, "POST", "/message")] == [
        "text of m-1",
        "text of m-4",
    ]


def test_check_reports_the_same_refusals(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", [user("ana"), channel("general", created_by="ghost")])

    status, output = run_command(app, "backfill", path, "--check")

    assert status == 1 and "refused: 1" in output
    assert read_jsonl(f"{path}.refused.jsonl") == [
        {"line": 2, "type": "channel", "outcome": "refused", "reason": "user 'ghost' doesn't exist"}
    ]


# --- Over the live API ------------------------------------------------------------------------


def test_users_and_members_go_in_stream_s_batches_of_100(app, stream, tmp_path):
    users = [user(f"user-{number:03d}") for number in range(250)]
    members = [member("big", f"user-{number:03d}") for number in range(150)]
    path = write_history(tmp_path / "history.jsonl", [*users, channel("big", created_by="user-000"), *members])

    status, output = run_command(app, "backfill", path)

    assert status == 0, output
    assert sorted(len(request.json()["users"]) for request in sent(stream, "POST", "/users")) == [50, 100, 100]
    adds = sent(stream, "POST", "/channels/messaging/big")
    assert sorted(len(request.json()["add_members"]) for request in adds) == [50, 100]
    assert {member["user_id"] for request in adds for member in request.json()["add_members"]} == {
        f"user-{number:03d}" for number in range(150)
    }
    assert len(stream.stand_in.state.channels["messaging:big"]["members"]) == 150


def test_history_is_sent_quietly_with_its_original_time(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana"),
            channel("general"),
            member("general", "ana"),
            message("m-1", created_at="2019-02-03T04:05:06Z", priority="high"),
        ],
    )

    run_command(app, "backfill", path)

    [send] = sent(stream, "POST", "/channels/messaging/general/message")
    assert send.json() == {
        "message": {
            "id": "m-1",
            "text": "text of m-1",
            "priority": "high",
            "original_created_at": "2019-02-03T04:05:06Z",
            "silent": True,
            "primary_origin": origin_mark("m-1", "messaging:general", "ana"),
            "user": {"id": "ana"},
        },
        "skip_push": True,
    }


def test_deleted_messages_arrive_deleted(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=3))

    status, _ = run_command(app, "backfill", path)

    assert status == 0
    assert [request.path for request in sent(stream, "DELETE")] == ["/messages/m-0002"]
    assert stream.stand_in.state.messages["m-0002"]["type"] == "deleted"
    assert stream.stand_in.state.messages["m-0001"]["type"] == "regular"


def test_a_message_stream_has_undeleted_is_deleted_on_a_rerun(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=3))
    run_command(app, "backfill", path)
    stream.stand_in.state.messages["m-0002"].update(type="regular", deleted_at=None)
    stream.reset_mock()

    run_command(app, "backfill", path)

    assert [request.path for request in sent(stream, "DELETE")] == ["/messages/m-0002"]


def test_a_rerun_changes_nothing_that_arrived(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=5))
    run_command(app, "backfill", path)
    before = {message_id: dict(stored) for message_id, stored in stream.stand_in.state.messages.items()}
    stream.reset_mock()

    status, output = run_command(app, "backfill", path)

    assert status == 0
    assert "already there: 5" in output
    assert sent(stream, "DELETE") == []
    assert stream.stand_in.state.messages == before


def test_a_message_without_an_id_gets_the_same_id_on_every_run(app, stream, tmp_path):
    records = [user("ana"), channel("general"), message(None)]
    del records[2][1]["id"]
    path = write_history(tmp_path / "history.jsonl", records)

    run_command(app, "backfill", path)
    status, output = run_command(app, "backfill", path)

    assert status == 0 and "already there: 1" in output
    [message_id] = stream.stand_in.state.messages
    assert message_id.startswith("import-")


def test_resume_after_an_interrupted_run_skips_what_is_done(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=60))
    stop = threading.Event()
    original = stream.stand_in.answer

    def interrupt_after_20_messages(method, path, *args):
        if path.endswith("/message") and stream.stand_in.calls >= 25:
            stop.set()  # what Ctrl-C does: no new record is started, those under way finish
        return original(method, path, *args)

    stream.stand_in.answer = interrupt_after_20_messages
    first = live_run(app, path, stop=stop)
    stream.stand_in.answer = original
    sent_first = len(sent(stream, "POST", "/message"))
    stream.reset_mock()

    status, output = run_command(app, "backfill", path, "--resume")

    assert first.interrupted and 0 < sent_first < 60
    assert status == 0, output
    resent = [request.json()["message"]["id"] for request in sent(stream, "POST", "/message")]
    done_before = int(output.split("done by an earlier run: ")[1].split()[0])
    assert done_before >= 5 + sent_first - 2 * 8  # at most the records under way at the stop are redone
    assert len(resent) == 60 + 5 - done_before
    assert len(stream.stand_in.state.messages) == 60
    assert stream.stand_in.state.messages["m-0059"]["type"] == "deleted"


def test_resume_refuses_a_checkpoint_of_a_changed_file(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=3))
    run_command(app, "backfill", path)
    write_history(path, small_history(messages=4))

    status, output = run_command(app, "backfill", path, "--resume")

    assert status == 2 and "Cannot resume" in output


def test_distinct_channels_are_left_to_stream_s_importer(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [user("ana"), user("bo"), ("channel", {"type": "messaging", "member_ids": ["ana", "bo"], "created_by": "ana"})],
    )

    status, _ = run_command(app, "backfill", path)

    assert status == 1
    assert "--via import" in read_jsonl(f"{path}.refused.jsonl")[0]["reason"]


# --- Pacing and retries ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def pacer_after_an_answer(clock: Clock, remaining: int, reset_in: float) -> Pacer:
    """A pacer keeping half of a 100-call limit for live traffic, told of one answer."""
    pacer = Pacer(0.5, clock=lambda: clock.now, sleep=clock.sleep)
    pacer.after(
        "POST /users",
        201,
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(clock.now + reset_in),
        },
    )
    return pacer


def test_the_pacer_keeps_to_its_share_of_the_limit():
    clock = Clock()
    # 90 of 100 calls left for 60 s: 50 are kept for live traffic, 40 are ours, one each 1.5 s.
    pacer = pacer_after_an_answer(clock, remaining=90, reset_in=60)

    pacer.before("POST /users")
    pacer.before("POST /users")
    pacer.before("GET /users")  # another endpoint, another limit

    assert clock.slept == [1.5]


def test_the_pacer_waits_for_the_next_window_when_its_share_is_used():
    clock = Clock()
    pacer = pacer_after_an_answer(clock, remaining=40, reset_in=30)

    pacer.before("POST /users")

    assert clock.slept == [30]


@pytest.mark.parametrize(
    "headers, pause",
    [
        ({"Retry-After": "7"}, 7),
        ({"X-RateLimit-Reset": "1012"}, 12),
        ({}, 1),
        ({"X-RateLimit-Reset": "990"}, 1),  # a reset already past
        ({"Retry-After": "0"}, 1),
    ],
)
def test_a_429_pauses_every_call_of_the_run(headers, pause):
    clock = Clock()
    pacer = Pacer(0.5, clock=lambda: clock.now, sleep=clock.sleep)

    pacer.after("POST /channels/{type}/{id}/message", 429, headers)
    pacer.before("POST /users")

    assert clock.slept == [pause] and pacer.rate_limited == 1


def test_the_pacer_reports_waits_in_wall_clock_time_however_many_calls_wait():
    now = [1_000.0]
    pacer = Pacer(0.5, clock=lambda: now[0], sleep=lambda seconds: None)  # the calls wait side by side

    pacer.after("POST /users", 429, {"Retry-After": "20"})
    for _ in range(64):
        pacer.before("POST /users")
    now[0] = 1_030.0
    pacer.after("POST /users", 429, {"Retry-After": "5"})
    for _ in range(64):
        pacer.before("GET /users")

    assert pacer.waited == 25  # not 64 × 20 + 64 × 5


def test_retrying_retries_5xx_429_and_timeouts_but_not_refusals():
    outcomes = iter(
        [StreamError(503, None, None), StreamError(429, 9, "Too many requests"), StreamTimeout("late"), "done"]
    )

    def call():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retrying(call, sleep=lambda seconds: None) == "done"
    with pytest.raises(StreamError):
        retrying(lambda: (_ for _ in ()).throw(StreamError(400, 4, "bad")), sleep=lambda s: None)
    with pytest.raises(GaveUp, match="did not answer in time"):
        retrying(lambda: (_ for _ in ()).throw(StreamTimeout("late")), attempts=3, sleep=lambda s: None)


def test_wrong_credentials_fail_the_run_and_stop_it(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", [user(f"user-{number:03d}") for number in range(60 * 100)])
    stream.post(re.compile(r".*/users"), status_code=401, json={"code": 5, "message": "api key not valid"})

    status, output = run_command(app, "backfill", path, "--concurrency", "4")

    calls = len(sent(stream, "POST", "/users"))
    assert status == 130, output  # stopped after 50 failures in a row, resumable
    assert 50 <= calls <= 50 + 4  # those under way at the stop finish; no other starts
    assert f"failed: {calls * 100}" in output and "refused: 0" in output


def test_429s_do_not_use_up_the_attempts():
    answers = iter([StreamError(429, 9, "Too many requests")] * 20 + [StreamError(503, None, None), "done"])

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(call, attempts=2, sleep=lambda seconds: None) == "done"


def app_for(url, environ, **settings):
    return create_app({**environ, "STREAM_CHAT_URL": url, **settings})


def test_a_rate_limited_run_slows_down_instead_of_failing(environ, tmp_path):
    channels = [f"room-{number}" for number in range(4)]
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana"),
            *[channel(name) for name in channels],
            *[member(name, "ana") for name in channels],
            *[message(f"m-{number:02d}", channel_id=channels[number % 4]) for number in range(40)],
        ],
    )
    # 20 calls per endpoint per 0.5 s: the messages alone (four channels at once) need two windows and more.
    with stand_in_over_http(Faults(rate_limit=20, rate_window_seconds=0.5)) as (url, stand_in):
        started = time.monotonic()
        status, output = run_command(app_for(url, environ), "backfill", path, "--rate-share", "1")
        elapsed = time.monotonic() - started

        assert status == 0, output
        assert "failed: 0" in output and "paced: waited" in output
        assert elapsed > 0.5
        assert len(stand_in.state.messages) == 40


# --- Stream's importer, end to end over HTTP ------------------------------------------------------


def test_via_import_uploads_the_file_and_follows_the_task(environ, tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())
    with stand_in_over_http() as (url, stand_in):
        app = app_for(url, environ)
        status, output = run_command(app, "backfill", path, "--via", "import")

        assert status == 0, output
        assert "imported: 20" in output
        calls = [(request["method"], request["path"].split("/")[1]) for request in stand_in.received]
        assert calls[:3] == [("POST", "import_urls"), ("POST", "imports"), ("GET", "imports")]
        [task] = stand_in.state.importer.tasks.values()
        assert task["state"] == "completed"
        assert [step["next_state"] for step in task["history"]] == ["analyzing", "importing", "completed"]
        first = stand_in.state.messages["hist-0001"]
        assert first["created_at"] == "2021-03-01T09:12:00Z"  # the importer keeps original times
        assert stand_in.state.messages["hist-0005"]["type"] == "deleted"

        assert run_command(app, "verify", path)[0] == 0


@contextmanager
def example_over_http(environ, tmp_path):
    """The example file, the stand-in over HTTP, an app and a client for it."""
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())
    with stand_in_over_http() as (url, stand_in):
        app = app_for(url, environ)
        settings = app.config["SETTINGS"]
        client = paced_client(settings.stream_api_key, settings.stream_api_secret, url, 5, Pacer(1.0), 2)
        yield path, app, client, stand_in


def test_via_import_splits_the_file_into_parts_users_first(environ, tmp_path):
    with example_over_http(environ, tmp_path) as (path, app, client, stand_in):
        summary = backfill.run_import(str(path), client, backfill.Options(part_bytes=1200, poll_seconds=0))

        assert summary.ok() and summary.mirrored == 20
        tasks = list(stand_in.state.importer.tasks.values())
        assert len(tasks) >= 3 and all(task["state"] == "completed" for task in tasks)
        assert all(task["size"] <= 1200 for task in tasks)
        assert run_command(app, "verify", path)[0] == 0
    types = [read_jsonl(part)[0]["type"] for part in parts_of(path, 1200, tmp_path)]
    assert types == sorted(types, key=import_file.RECORD_TYPES.index) and types[0] == "user"


def test_via_import_resumes_with_the_first_part_not_completed(environ, tmp_path):
    with example_over_http(environ, tmp_path) as (path, app, client, stand_in):
        stop, importer = threading.Event(), stand_in.state.importer
        get_task = importer.get_task

        def stop_after_the_first_part(*args):
            answer = get_task(*args)
            if answer["import_task"]["state"] == "completed":
                stop.set()
            return answer

        importer.get_task = stop_after_the_first_part
        first = backfill.run_import(str(path), client, backfill.Options(part_bytes=1200, poll_seconds=0, stop=stop))
        importer.get_task = get_task
        second = backfill.run_import(str(path), client, backfill.Options(part_bytes=1200, poll_seconds=0, resume=True))

        assert first.interrupted and 0 < first.mirrored < 20
        assert second.ok() and second.done_before == first.mirrored
        assert second.mirrored + second.done_before == 20
        assert len(importer.tasks) == len(parts_of(path, 1200, tmp_path)) >= 3  # no part imported twice
        assert run_command(app, "verify", path)[0] == 0


def parts_of(path, part_bytes, directory) -> list[str]:
    """The parts `--via import` uploads, written again into `directory`."""
    index = import_file.index_file(str(path), lambda refusal: None)
    report = backfill.Report(str(directory / "parts.refused.jsonl"), backfill.Summary())
    try:
        return [part for part, _ in backfill.write_parts(str(path), index, report, str(directory), part_bytes)]
    finally:
        report.close()


# --- Injected failures, an interruption, a resume, then verify -------------------------------------


def test_injected_failures_interrupted_and_resumed_then_verify_finds_no_difference(environ, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        small_history(messages=80)
        + [
            (
                "reaction",
                {"message_id": "m-0001", "type": "like", "user_id": "bo", "created_at": "2022-05-01T10:01:00Z"},
            )
        ],
    )
    # A fifth of the calls fail: a 500, a timeout (done, answered too late) or a 429.
    faults = Faults(fail_rate=0.2, fail_kinds=("500", "timeout", "429"), timeout_seconds=0.5, seed=14)
    with stand_in_over_http(faults) as (url, stand_in):
        app = app_for(url, environ, STREAM_CHAT_TIMEOUT="0.25")
        stop = threading.Event()
        threading.Thread(
            target=lambda: (wait_for(lambda: len(stand_in.state.messages) >= 30), stop.set()), daemon=True
        ).start()

        interrupted = live_run(app, path, stop=stop)
        status, output = run_command(app, "backfill", path, "--resume", "--concurrency", "8")
        verified, differences = run_command(app, "verify", path)

        assert interrupted.interrupted
        assert status == 0, output
        assert "failed: 0" in output and "refused: 0" in output
        assert verified == 0, differences
        assert "differences: 0" in differences
        assert len(stand_in.state.messages) == 80
        assert stand_in.state.messages["m-0001"]["reaction_counts"] == {"like": 1}


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


# --- Ctrl-C and the progress bar ----------------------------------------------------------------


def test_ctrl_c_stops_resumably_and_the_resume_finishes(environ, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=300))
    with stand_in_over_http(latency_ms=20) as (url, stand_in):
        command = [sys.executable, "-m", "flask", "--app", "app", "backfill", str(path), "--concurrency", "2"]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **environ, "STREAM_CHAT_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(lambda: len(stand_in.state.messages) >= 20)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
        arrived_before = len(stand_in.state.messages)

        status, resumed = run_command(app_for(url, environ), "backfill", path, "--resume")

        assert process.returncode == 130, output
        assert "run again with --resume" in output
        assert 20 <= arrived_before < 300
        assert status == 0, resumed
        assert int(resumed.split("done by an earlier run: ")[1].split()[0]) >= 5 + arrived_before - 4
        assert len(stand_in.state.messages) == 300


def test_the_progress_bar_shows_records_per_second_on_a_terminal(app, stream, tmp_path, capsys):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=5))

    live_run(app, path, progress=True)

    bars = capsys.readouterr().err
    assert "messages: 100%" in bars and "records/s" in bars


def test_without_a_terminal_each_phase_is_a_line_named_right_and_empty_ones_are_left_out(app, stream, tmp_path):
    history = small_history(messages=5) + [message("m-reply", parent_id="m-0000")]
    path = write_history(tmp_path / "history.jsonl", history)

    _, output = run_command(app, "backfill", path)

    assert "\r" not in output and "|" not in output
    assert "messages: 5/5 records (100%)" in output and "replies: 1/1 records (100%)" in output
    assert "replys" not in output and "reactions" not in output  # the file has no reaction


# --- Over time: any completion order, any stop -------------------------------------------------


@given(st.permutations(range(1, 31)), st.integers(min_value=0, max_value=30))
def test_the_checkpoint_knows_every_line_done_and_no_other_in_any_order(order, stopped_after):
    tracker = Tracker(done_through=0)
    for line in range(1, 31):
        tracker.read(line)
    finished = set(order[:stopped_after])

    tracker.done(order[:stopped_after])
    saved = json.loads(json.dumps(tracker.state()))  # as the checkpoint file holds it
    resumed = Tracker(saved["done_through"], saved["read_through"], backfill.lines_of(saved["open"]))

    assert all(done in finished for done in range(1, tracker.done_through + 1))
    assert tracker.done_through + 1 not in finished or tracker.done_through == 30
    assert {line for line in range(1, 31) if resumed.is_done(line)} == finished
    assert len(saved["open"]) <= 30 - stopped_after


def test_a_checkpoint_of_the_earlier_version_keeps_its_mark(app, tmp_path):
    path = write_history(tmp_path / "history.jsonl", small_history(messages=5))
    earlier = backfill.Checkpoint(str(path), "live")
    earlier.start_phase(4)
    state = {"file": earlier.file, "via": "live", "phase": 4, "done_through": 9, "failed": [[4, 7]]}
    (tmp_path / "history.jsonl.checkpoint.json").write_text(json.dumps({**state, "parts_done": 0, "task": None}))

    checkpoint = backfill.Checkpoint(str(path), "live")
    checkpoint.load()

    assert [line for line in range(1, 12) if checkpoint.is_done(4, line)] == [1, 2, 3, 4, 5, 6, 8, 9]
    assert checkpoint.is_done(3, 10) and not checkpoint.is_done(5, 1)


def test_a_resume_sends_again_nothing_that_arrived_beyond_a_slow_record(environ, tmp_path):
    channels = [f"room-{number}" for number in range(4)]
    history = [user("ana"), user("bo")] + [channel(name) for name in channels]
    history += [member(name, person) for name in channels for person in ("ana", "bo")]
    history += [message(f"m-{number:04d}", channel_id=channels[number % 4]) for number in range(40)]
    path = write_history(tmp_path / "history.jsonl", history)
    stop = threading.Event()

    def slow_first_message(method, path, body, original):
        if path.endswith("/message") and '"m-0000"' in body:
            stop.wait(10)  # room-0's first message is slow: the run is stopped while it is under way
        return original()

    # Over HTTP: requests-mock answers one call at a time, and the slow one would hold them all.
    with stand_in_over_http() as (url, stand_in):
        app = app_for(url, environ)
        fault(None, slow_first_message, stand_in)
        threading.Thread(target=lambda: (wait_for(lambda: len(stand_in.state.messages) >= 20), stop.set())).start()
        first = live_run(app, path, stop=stop)
        second = live_run(app, path, resume=True)

    assert first.interrupted and second.ok()
    assert len(stand_in.state.messages) == 40
    # Each message sent once: what finished after room-0's slow one, while room-0's next ones
    # waited behind it, is done, and the resume knows it.
    assert max(stand_in.state.sends.values()) == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop_after=st.integers(min_value=1, max_value=60), concurrency=st.sampled_from([1, 4, 16]))
def test_stopped_anywhere_then_resumed_every_message_arrives_once(environ, tmp_path_factory, stop_after, concurrency):
    path = write_history(tmp_path_factory.mktemp("history") / "history.jsonl", small_history(messages=40))
    app = create_app(environ)  # a process of its own, as each run of the command is
    with stream_stand_in() as stream:
        stop = threading.Event()
        original = stream.stand_in.answer

        def stop_after_calls(*args):
            if stream.stand_in.calls >= stop_after:
                stop.set()
            return original(*args)

        stream.stand_in.answer = stop_after_calls
        first = live_run(app, path, stop=stop, concurrency=concurrency)
        stream.stand_in.answer = original
        second = live_run(app, path, resume=True, concurrency=concurrency)

        sends = [request.json()["message"]["id"] for request in sent(stream, "POST", "/message")]
        assert second.ok(), second
        assert sorted(stream.stand_in.state.messages) == [f"m-{number:04d}" for number in range(40)]
        assert first.mirrored + second.mirrored + second.already_there + second.done_before >= 45
        assert len(sends) == len(set(sends))  # those under way at the stop finished, and count as done


# --- A record's outcome: failed (retried by --resume) or refused, and never lost ----------------


def fault(stream, answer, stand_in=None):
    """Stream's answers through `answer(method, path, body, original)` (the stand-in's by default)."""
    stand_in = stand_in or stream.stand_in
    original = stand_in.answer

    def answering(method, path, query, body, authorization):
        text = body.decode() if isinstance(body, bytes) else body
        return answer(method, path, text, lambda: original(method, path, query, body, authorization))

    stand_in.answer = answering


def stream_error(status, message, code=4):
    return status, {
        "code": code,
        "message": message,
        "StatusCode": status,
        "duration": "0ms",
        "more_info": "",
        "details": [],
    }


def sent_messages(stream):
    return [request.json()["message"]["id"] for request in sent(stream, "POST", "/message")]


def test_a_write_that_raises_fails_its_record_and_the_run_goes_on(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl", [user("ana"), channel("general"), *[message(f"m-{number}") for number in range(4)]]
    )
    crashed = []

    def crash_once_on_m_1(method, path, body, answer):
        if '"m-1"' in body and not crashed:
            crashed.append(path)
            raise TypeError("a bug")
        return answer()

    fault(stream, crash_once_on_m_1)

    status, output = run_command(app, "backfill", path)

    assert status == 1, output  # not stopped (130): the other records went on
    assert "failed: 1" in output and "refused: 0" in output
    assert sent_messages(stream) == ["m-0", "m-1", "m-2", "m-3"]
    assert read_jsonl(f"{path}.refused.jsonl") == [
        {"line": 4, "type": "message", "outcome": "failed", "reason": "error: TypeError('a bug')"}
    ]
    stream.reset_mock()

    status, output = run_command(app, "backfill", path, "--resume")

    assert status == 0, output
    assert sent_messages(stream) == ["m-1"]
    assert sorted(stream.stand_in.state.messages) == ["m-0", "m-1", "m-2", "m-3"]


def test_an_attachment_whose_custom_is_not_an_object_is_refused(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana"),
            channel("general"),
            message("m-0", attachments=[{"type": "image", "custom": None}]),
            message("m-1", attachments=[{"type": "image", "custom": {"size": 3}}]),
        ],
    )

    status, output = run_command(app, "backfill", path)

    assert status == 1 and "refused: 1" in output and "failed: 0" in output
    assert read_jsonl(f"{path}.refused.jsonl") == [
        {"line": 3, "type": "message", "outcome": "refused", "reason": "attachment.custom must be an object"}
    ]
    [send] = sent(stream, "POST", "/message")
    assert send.json()["message"]["attachments"] == [{"type": "image", "custom": {"size": 3}}]


def test_a_resume_keeps_the_earlier_run_s_refusals(app, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana"),
            user("gone", deactivated_at="2020-01-01T00:00:00Z"),
            "{not json",
            channel("general"),
            message("m-0"),
        ],
    )
    expected = [
        {"line": 3, "type": None, "outcome": "refused", "reason": "not a JSON object: malformed JSON"},
        {
            "line": 2,
            "type": "user",
            "outcome": "refused",
            "stage": "write",
            "reason": "deleted and deactivated users are imported by --via import only",
        },
    ]
    assert run_command(app, "backfill", path)[0] == 1
    assert read_jsonl(f"{path}.refused.jsonl") == expected
    stream.reset_mock()

    status, output = run_command(app, "backfill", path, "--resume")

    assert status == 1, output
    assert "refused: 2" in output and "done by an earlier run: 4" in output
    assert sorted(read_jsonl(f"{path}.refused.jsonl"), key=lambda entry: entry["line"]) == sorted(
        expected, key=lambda entry: entry["line"]
    )
    assert [request.method for request in stream.request_history] == []
    assert sorted(stream.stand_in.state.users) == ["ana"]


def test_records_of_a_channel_that_failed_are_failed_and_resumed(app, stream, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "stream_backend.migration.pacing.time.sleep", lambda seconds: None
    )  # the backoff, not the behaviour
    path = write_history(tmp_path / "history.jsonl", small_history(messages=3))
    down = [True]
    fault(
        stream,
        lambda method, path, body, answer: (
            stream_error(503, "unavailable", -1) if down[0] and path.endswith("/query") else answer()
        ),
    )

    status, output = run_command(app, "backfill", path)

    assert status == 1, output
    assert "failed: 6" in output and "refused: 0" in output  # the channel, its 2 members, its 3 messages
    failed = read_jsonl(f"{path}.refused.jsonl")
    assert [(entry["line"], entry["outcome"]) for entry in failed] == [(line, "failed") for line in range(3, 9)]
    assert "Can't find channel with id messaging:general" in failed[1]["reason"]
    down[0] = False
    stream.reset_mock()

    status, output = run_command(app, "backfill", path, "--resume")

    assert status == 0, output
    assert "mirrored: 6" in output and "done by an earlier run: 2" in output
    assert sent_messages(stream) == ["m-0000", "m-0001", "m-0002"]
    assert stream.stand_in.state.channels["messaging:general"]["members"] == ["ana", "bo"]


def test_failed_lines_of_an_earlier_phase_survive_an_interrupted_resume(app, stream, tmp_path, monkeypatch):
    monkeypatch.setattr("stream_backend.migration.pacing.time.sleep", lambda seconds: None)
    path = write_history(tmp_path / "history.jsonl", small_history(messages=10)[:-1])  # 9 messages, none deleted
    down = [True]
    fault(
        stream,
        lambda method, path, body, answer: (
            stream_error(503, "unavailable", -1) if down[0] and path.endswith("/message") else answer()
        ),
    )
    assert run_command(app, "backfill", path)[0] == 1  # every message failed; the later phases done
    down[0] = False
    stop = threading.Event()

    def ctrl_c_during_the_first_write(method, path, body, answer):
        threading.Event().wait(0.2)  # the next records are read meanwhile (time.sleep is patched out)
        stop.set()
        return answer()

    fault(stream, ctrl_c_during_the_first_write)

    first = live_run(app, path, resume=True, stop=stop, concurrency=1)
    sent_first = sent_messages(stream)[9 * 8 :]  # after the first run's 8 attempts each

    assert first.interrupted and 1 <= len(sent_first) < 9
    stream.reset_mock()
    status, output = run_command(app, "backfill", path, "--resume")

    assert status == 0, output
    assert sorted(sent_first + sent_messages(stream)) == [f"m-{number:04d}" for number in range(9)]
    assert len(stream.stand_in.state.messages) == 9


def test_one_bad_user_or_member_refuses_only_itself(app, stream, tmp_path):
    users = [user(f"user-{number}") for number in range(5)]
    users[2][1]["role"] = "no-such-role"
    path = write_history(
        tmp_path / "history.jsonl",
        [
            *users,
            channel("general", created_by="user-0"),
            *[member("general", f"user-{number}") for number in range(5)],
        ],
    )
    fault(
        stream,
        lambda method, path, body, answer: (
            stream_error(400, 'UpdateUsers failed: "role no-such-role"')
            if path == "/users" and "no-such-role" in body
            else answer()
        ),
    )

    status, output = run_command(app, "backfill", path)

    assert status == 1, output
    assert [
        [user["id"] for user in request.json()["users"].values()] for request in sent(stream, "POST", "/users")
    ] == [[f"user-{number}" for number in range(5)], *[[f"user-{number}"] for number in range(5)]]
    adds = [
        [entry["user_id"] for entry in request.json()["add_members"]]
        for request in sent(stream, "POST", "/channels/messaging/general")
    ]
    assert adds == [[f"user-{number}" for number in range(5)], *[[f"user-{number}"] for number in range(5)]]
    assert stream.stand_in.state.channels["messaging:general"]["members"] == ["user-0", "user-1", "user-3", "user-4"]
    assert [(entry["line"], entry["outcome"]) for entry in read_jsonl(f"{path}.refused.jsonl")] == [
        (3, "refused"),
        (9, "failed"),
    ]  # the member: its user is not in Stream, --resume retries it


# --- One channel's history in order ----------------------------------------------------------------


def test_a_channel_s_messages_arrive_in_file_order_and_channels_go_at_once(environ, tmp_path):
    channels = ["a", "b", "c"]
    records = [user("ana"), *[channel(name) for name in channels]]
    records += [
        message(f"{channels[number % 3]}-{number // 3}", channel_id=channels[number % 3]) for number in range(30)
    ]
    records += [
        message("a-quote", channel_id="a", quoted_message_id="a-0"),
        message("a-reply", channel_id="a", parent_id="a-quote"),  # its parent is sent in the reply phase
        message("a-reply-2", channel_id="a", parent_id="a-quote"),
    ]
    path = write_history(tmp_path / "history.jsonl", records)
    arrived, under_way, most = [], [0], [0]
    lock = threading.Lock()

    def slow_first_of_each_channel(method, path, body, answer):
        if not path.endswith("/message"):
            return answer()
        with lock:
            under_way[0] += 1
            most[0] = max(most[0], under_way[0])
        message_id = json.loads(body)["message"]["id"]
        time.sleep(0.2 if message_id.endswith(("-0", "-quote")) else 0.001)
        with lock:
            arrived.append(message_id)
            under_way[0] -= 1
        return answer()

    with stand_in_over_http() as (url, stand_in):  # requests-mock would answer one call at a time
        fault(None, slow_first_of_each_channel, stand_in)
        status, output = run_command(app_for(url, environ), "backfill", path, "--concurrency", "8")

    assert status == 0, output
    for name in channels:
        assert [message_id for message_id in arrived if message_id.startswith(f"{name}-")][:10] == [
            f"{name}-{number}" for number in range(10)
        ]
    assert arrived[-3:] == ["a-quote", "a-reply", "a-reply-2"]
    assert most[0] == 3  # the three channels at once, one message each


# --- Lines that must not be read whole, numbers that are not JSON -------------------------------


def test_an_over_long_line_is_read_no_further_than_the_limit(app, stream, tmp_path, monkeypatch):
    monkeypatch.setattr(import_file, "MAX_LINE_BYTES", 1000)
    path = write_history(tmp_path / "history.jsonl", [user("ana"), user("bo", bio="x" * 5000), user("cy")])

    assert [(number, len(raw)) for number, raw in import_file.read_lines(str(path))] == [
        (1, len(user_line("ana"))),
        (2, 1001),
        (3, len(user_line("cy"))),
    ]
    status, output = run_command(app, "backfill", path)

    assert status == 1 and "refused: 1" in output
    assert read_jsonl(f"{path}.refused.jsonl") == [
        {"line": 2, "type": "user", "outcome": "refused", "reason": "line is over 1000 bytes"}
    ]
    assert sorted(stream.stand_in.state.users) == ["ana", "cy"]


def user_line(user_id):
    return (json.dumps({"type": "user", "item": {"id": user_id}}) + "\n").encode()


def test_a_number_json_cannot_hold_is_refused_at_the_check(app, stream, tmp_path):
    path = write_history(tmp_path / "history.jsonl", [user("ana"), channel("general")])
    with open(path, "a") as file:
        file.write(
            '{"type": "message", "item": {"id": "m-0", "channel_type": "messaging", "channel_id": "general", '
            '"user": "ana", "text": "hi", "score": 1e999}}\n'
        )

    status, output = run_command(app, "backfill", path, "--check")

    assert status == 1 and "refused: 1" in output
    assert read_jsonl(f"{path}.refused.jsonl") == [
        {"line": 3, "type": "message", "outcome": "refused", "reason": "number 1e999 is out of range"}
    ]
    assert stream.request_history == []


# --- --via import when Stream stays unreachable -----------------------------------------------------


def test_via_import_with_stream_failing_is_exit_status_2(app, stream, tmp_path, monkeypatch):
    monkeypatch.setattr("stream_backend.migration.pacing.time.sleep", lambda seconds: None)
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())
    stream.post(re.compile(r".*/import_urls"), status_code=503, json={"code": -1, "message": "unavailable"})

    status, output = run_command(app, "backfill", path, "--via", "import")

    assert status == 2
    assert "Backfill could not finish: Stream answered 503: unavailable; run again with --resume" in output
    assert len(sent(stream, "POST", "/import_urls")) == 8


# --- Versions: the backfill never overwrites a newer live write -----------------------------


def test_a_backfill_never_overwrites_a_newer_live_write(app, client, stream, tmp_path):
    """The live primary wrote newer versions (timestamps) of a user, a message and a channel, and
    deleted another message; the history's `updated_at`s are older: none of them is written."""
    newer = "2022-06-01T00:00:00Z"
    live = {
        "channel": {"id": "general", "creator_id": "ana", "custom_data": {"title": "live"}, "version": newer},
        "members": {"ana": {"name": "Ana (live)", "version": newer}, "bo": {"name": "Bo", "version": newer}},
        "message": {"id": "m-1", "text": "edited live", "version": newer},
        "user": {"id": "ana", "name": "Ana (live)", "version": newer},
    }
    assert client.post("/message", json=live).status_code == 200
    assert client.delete(f"/message/m-2?hard=true&version={newer.replace('+', '%2B')}").status_code == 200
    older = "2022-05-01T12:00:00Z"
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana", name="Ana (history)", updated_at=older),
            user("cy", name="Cy", updated_at=older),
            channel("general", title="history", updated_at=older),
            member("general", "cy"),
            message("m-1", text="the history's text", updated_at=older),
            message("m-2", updated_at=older),
            message("m-3", updated_at=older),
        ],
    )

    summary = live_run(app, path)

    state = stream.stand_in.state
    assert state.users["ana"]["name"] == "Ana (live)" and state.users["cy"]["name"] == "Cy"
    assert state.channels["messaging:general"]["title"] == "live"
    assert state.messages["m-1"]["text"] == "edited live"
    assert "m-2" not in state.messages
    assert state.messages["m-3"]["text"] == "text of m-3"
    assert (summary.refused, summary.failed) == (0, 0)
    assert summary.already_there >= 2  # m-1 and m-2: a newer version of each


def test_a_live_retry_older_than_the_backfill_does_not_undo_it(app, client, stream, tmp_path):
    path = write_history(
        tmp_path / "history.jsonl",
        [
            user("ana", name="Ana"),
            channel("general"),
            message("m-1", text="from history", updated_at="2022-05-02T00:00:00Z"),
        ],
    )
    live_run(app, path)

    late = client.put(
        "/message/m-1",
        json={"message": {"text": "a late retry", "version": "2022-05-01T00:00:00Z"}, "user": {"id": "ana"}},
    )

    assert late.get_json()["stale"] is True
    assert stream.stand_in.state.messages["m-1"]["text"] == "from history"
