"""Invalid bodies get a 400 naming the field and the rule, in our words, and nothing is sent to
Stream. The rules live in stream_backend/mirror/bodies.py and
stream_backend/validation.py."""

import copy

import pytest

from support.examples import CHANNEL_BODY, MESSAGE_BODY


def with_change(body, path, value):
    """A copy of `body` with the field at dotted `path` set to `value` (or removed)."""
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if value is REMOVED:
        del target[last]
    else:
        target[last] = value
    return changed


REMOVED = object()

CHANNEL_CASES = [
    ("members", REMOVED, "members"),
    ("members", None, "members"),
    ("members", ["tommaso", "thierry"], "members"),
    ("members", {}, "members"),
    ("members", "tommaso", "members"),
    ("members", {f"user-{n}": {} for n in range(101)}, "members"),
    ("members", {"tommaso": {"name": "Tommaso"}}, "members"),  # a distinct channel of one: Stream refuses it
    ("members.thierry", "Thierry", "members.thierry"),
    ("members.thierry", None, "members.thierry"),
    ("members.thierry.name", 7, "members.thierry.name"),
    ("members.thierry.role", "admin", "members.thierry.role"),
    ("members.thierry", {"name": "x" * 6000}, "members.thierry"),
    ("members.bad id", {"name": "x"}, "members.bad id"),
    ("channel", REMOVED, "channel"),
    ("channel", "messaging", "channel"),
    ("channel.creator_id", REMOVED, "channel.creator_id"),
    ("channel.creator_id", 42, "channel.creator_id"),
    ("channel.creator_id", None, "channel.creator_id"),
    ("channel.creator_id", "someone-else", "channel.creator_id"),
    ("channel.custom_data", "Just a test", "channel.custom_data"),
    ("channel.custom_data", ["title"], "channel.custom_data"),
    ("channel.custom_data", None, "channel.custom_data"),
    ("channel.custom_data", {"title": "x" * 6000}, "channel.custom_data"),
    ("channel.custom_data", {"members": []}, "channel.custom_data.members"),
    ("channel.custom_data", {"frozen": "yes"}, "channel.custom_data.frozen"),
]

MESSAGE_CASES = CHANNEL_CASES + [
    ("message", REMOVED, "message"),
    ("message", "hello", "message"),
    ("message.id", REMOVED, "message.id"),
    ("message.id", 123, "message.id"),
    ("message.id", "", "message.id"),
    ("message.id", "a/b", "message.id"),
    ("message.id", "m" * 256, "message.id"),
    ("message.text", REMOVED, "message.text"),
    ("message.text", 42, "message.text"),
    ("message.text", ["hello"], "message.text"),
    ("message.text", "  ", "message.text"),
    ("user", REMOVED, "user"),
    ("user", "tommaso", "user"),
    ("user.id", None, "user.id"),
    ("user.id", "tom maso", "user.id"),
    ("user.image", False, "user.image"),
]


@pytest.mark.parametrize("path, value, field", CHANNEL_CASES)
def test_invalid_channel_body_is_a_400_naming_the_field(client, stream, path, value, field):
    response = client.post("/channel", json=with_change(CHANNEL_BODY, path, value))

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert response.get_json()["error"].startswith(field + ":")
    assert_in_our_words(response.get_json()["error"])
    assert stream.call_count == 0


@pytest.mark.parametrize("path, value, field", MESSAGE_CASES)
def test_invalid_message_body_is_a_400_naming_the_field(client, stream, path, value, field):
    response = client.post("/message", json=with_change(MESSAGE_BODY, path, value))

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert_in_our_words(response.get_json()["error"])
    assert stream.call_count == 0


def assert_in_our_words(error):
    """pydantic's own wording ("Input should be a valid dictionary") is translated."""
    assert "should" not in error and "Input" not in error, error


@pytest.mark.parametrize(
    "body, error",
    [
        (with_change(CHANNEL_BODY, "members.thierry.name", 7), "members.thierry.name: must be a string"),
        (with_change(CHANNEL_BODY, "members", {}), "members: must not be empty"),
        (with_change(CHANNEL_BODY, "channel.creator_id", REMOVED), "channel.creator_id: is required"),
        (with_change(CHANNEL_BODY, "channel.custom_data", []), "channel.custom_data: must be a JSON object"),
        (
            with_change(CHANNEL_BODY, "channel.custom_data", {"frozen": True}),
            "channel.custom_data.frozen: is a field Stream reserves, not custom data",
        ),
        (
            with_change(CHANNEL_BODY, "members.bad id", {}),
            "members.bad id: may contain only letters, digits, '@', '_' and '-'",
        ),
        (with_change(CHANNEL_BODY, "channel.id", "x" * 65), "channel.id: must be at most 64 characters"),
        (
            with_change(CHANNEL_BODY, "channel.creator_id", "ana"),
            "channel.creator_id: must be one of the members (or the message's sender)",
        ),
        (
            with_change(CHANNEL_BODY, "members.thierry", {"name": "x" * 6000}),
            "members.thierry: is over Stream's 5120 bytes for a user",
        ),
    ],
)
def test_errors_name_the_field_and_the_rule(client, stream, body, error):
    response = client.post("/channel", json=body)

    assert response.get_json() == {"error": error, "field": error.partition(":")[0]}


def test_a_long_key_is_quoted_short(client, stream):
    body = with_change(CHANNEL_BODY, "members." + "x" * 300, {})

    response = client.post("/channel", json=body)

    assert response.get_json()["field"] == "members." + "x" * 40 + "..."
    assert len(response.get_json()["error"]) < 120


@pytest.mark.parametrize("route", ["/generate-token", "/channel", "/message"])
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"tommaso"',
        b"null",
        b"{",
        b'{"user_id": NaN}',
        b"\xff\xfe\x00",
        b"[" * 3_000,
    ],
)
def test_body_that_is_not_a_json_object_is_a_json_400(client, stream, route, raw):
    response = client.post(route, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]
    assert stream.call_count == 0


@pytest.mark.parametrize("route", ["/generate-token", "/channel", "/message", "/stream-incoming-wh"])
def test_body_over_the_cap_is_a_json_413(client, stream, route):
    response = client.post(route, data=b"{" + b" " * (1024 * 1024) + b"}", content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["error"]
    assert stream.call_count == 0
