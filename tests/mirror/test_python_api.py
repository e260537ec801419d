"""The package's public API, as a Python primary backend calls it: `Mirror.connect` builds
everything from the app's keys, the parsers check bodies with the HTTP routes' rules, and
every failure is a StreamBackendError."""

import math
from datetime import UTC, datetime

import pytest

import stream_backend
from app import create_app
from stream_backend import (
    ChannelSync,
    InvalidRequest,
    MessageSync,
    MessageUpdate,
    Mirror,
    SettingsError,
    StreamBackendError,
    StreamError,
    StreamUnreachable,
    parse_channel,
    parse_message,
)
from stream_backend.mirror.origin import derive_origin_key, is_primary_message

from support.examples import API_KEY, API_SECRET, CHANNEL_BODY, MESSAGE_BODY
from support.stream import STREAM_URL


def test_connect_builds_a_mirror_that_marks_its_messages_with_the_secrets_origin_key(stream):
    mirror = Mirror.connect(API_KEY, API_SECRET)

    channel, sent = mirror.sync_message(parse_message(MESSAGE_BODY))

    assert channel.cid.startswith("messaging:!members-")
    assert is_primary_message(derive_origin_key(API_SECRET), sent["message"])
    assert {request.url.split("?")[0] for request in stream.request_history} >= {f"{STREAM_URL}/users"}


def test_connect_takes_another_base_url_and_timeout():
    mirror = Mirror.connect(API_KEY, API_SECRET, base_url="http://127.0.0.1:9", timeout=0.5)

    assert (mirror.client.base_url, mirror.client.timeout) == ("http://127.0.0.1:9", 0.5)
    with pytest.raises(StreamUnreachable):
        mirror.sync_channel(parse_channel(CHANNEL_BODY))


@pytest.mark.parametrize("state", [None, "sqlite:///{tmp}/mirror.sqlite3", "redis"])
def test_a_second_message_to_a_known_channel_is_one_call_with_a_state(stream, tmp_path, redis_url, state):
    location = redis_url if state == "redis" else state and state.format(tmp=tmp_path)
    mirror = Mirror.connect(API_KEY, API_SECRET, state=location)
    mirror.sync_message(parse_message(MESSAGE_BODY))
    stream.reset_mock()

    mirror.sync_message(parse_message({**MESSAGE_BODY, "message": {"id": "m-2", "text": "again"}}))

    assert len(stream.request_history) == (3 if state is None else 1)


def test_an_unknown_state_location_is_refused():
    with pytest.raises(SettingsError, match="state must be"):
        Mirror.connect(API_KEY, API_SECRET, state="postgres://db")


def test_the_parsers_take_json_text_and_bytes_too():
    assert parse_channel(CHANNEL_BODY) == parse_channel(str(CHANNEL_BODY).replace("'", '"'))
    assert (
        parse_message(
            b'{"channel": {"creator_id": "a", "id": "c"}, "members": {"a": {}}, '
            b'"message": {"id": "m", "text": "t"}, "user": {"id": "a"}}'
        ).message_id
        == "m"
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({**CHANNEL_BODY, "members": {"bad id": {}}}, "members.bad id"),
        ({**CHANNEL_BODY, "channel": {"creator_id": "someone-else"}}, "channel.creator_id"),
        (
            {**CHANNEL_BODY, "channel": {"creator_id": "tommaso", "custom_data": {"score": math.nan}}},
            "channel.custom_data.score",
        ),
        (
            {**CHANNEL_BODY, "channel": {"creator_id": "tommaso", "custom_data": {"when": {1, 2}}}},
            "channel.custom_data.when",
        ),
    ],
)
def test_a_body_that_breaks_a_rule_is_invalid_naming_the_field(body, field):
    with pytest.raises(InvalidRequest) as refused:
        parse_channel(body)

    assert refused.value.field == field


def test_a_channel_has_the_http_apis_defaults_and_members_need_no_inner_id():
    sync = ChannelSync(creator_id="ana", members={"ana": {"name": "Ana"}, "bo": {}})

    assert (sync.type, sync.id, sync.custom_data) == ("messaging", None, {})
    assert sync.members == {"ana": {"id": "ana", "name": "Ana"}, "bo": {"id": "bo"}}


def test_a_member_whose_inner_id_is_another_is_refused():
    with pytest.raises(InvalidRequest, match="members.ana.id"):
        ChannelSync(creator_id="ana", members={"ana": {"id": "bo"}})


def test_a_sender_needs_an_id():
    with pytest.raises(InvalidRequest, match="user.id"):
        MessageSync(ChannelSync(creator_id="ana", members={"ana": {}}), "m-1", "hi", sender={"name": "Ana"})


def test_every_exception_the_package_raises_is_a_stream_backend_error():
    exceptions = [
        getattr(stream_backend, name)
        for name in stream_backend.__all__
        if isinstance(getattr(stream_backend, name), type) and issubclass(getattr(stream_backend, name), BaseException)
    ]

    assert len(exceptions) >= 10
    assert all(issubclass(exception, StreamBackendError) for exception in exceptions)


def test_streams_refusal_is_a_stream_error_with_its_status_code_and_message(stream):
    stream.post(f"{STREAM_URL}/users", status_code=403, json={"code": 17, "message": "not allowed"})

    with pytest.raises(StreamError) as refused:
        Mirror.connect(API_KEY, API_SECRET).sync_channel(parse_channel(CHANNEL_BODY))

    assert (refused.value.status, refused.value.code, refused.value.message) == (403, 17, "not allowed")


def test_versions_from_python_share_the_services_store_and_take_datetimes(stream, tmp_path, environ):
    """A Python backend and the HTTP routes on one store never undo each other's newer writes."""
    service = create_app(environ).test_client()
    mirror = Mirror.connect(API_KEY, API_SECRET, state=f"sqlite:///{environ['WEBHOOK_DB']}")
    sync = MessageSync(ChannelSync("ana", {"ana": {"name": "Ana"}}, id="general"), "m-1", "first", {"id": "ana"})
    mirror.sync_message(sync)
    update = MessageUpdate({"text": "newer"}, "ana", version=datetime(2026, 11, 28, 10, tzinfo=UTC))
    mirror.update_message("m-1", update.fields, update.user_id, update.version)

    late = service.put(
        "/message/m-1", json={"message": {"text": "older", "version": "2026-11-28T09:59:59Z"}, "user": {"id": "ana"}}
    )

    assert late.get_json()["stale"] is True
    assert stream.stand_in.state.messages["m-1"]["text"] == "newer"


def test_a_versioned_write_without_a_store_is_refused(stream):
    mirror = Mirror.connect(API_KEY, API_SECRET)

    with pytest.raises(SettingsError, match="needs a store"):
        mirror.update_message("m-1", {"text": "x"}, "ana", version=3)
    assert stream.call_count == 0
