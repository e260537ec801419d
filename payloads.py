"""The request bodies this service accepts, validated before anything is sent to Stream.

Each parser takes the decoded JSON body and returns a small frozen object, or raises
`InvalidPayload` naming the first field that is wrong. The limits are Stream's own
(see ../shared/docs/stream-facts.md), checked here so that a request Stream would refuse
halfway through never writes its first half.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

# Stream user ids: letters, digits, "@", "_" and "-". The same rule is applied to message
# ids, which end up in URL paths (`/messages/{id}`) that the SDK does not escape.
ID_PATTERN = re.compile(r"[A-Za-z0-9@_-]+")
MAX_ID_LENGTH = 255  # MessageRequest.id's maxLength in Stream's spec; used for user ids too.

# Channel types and ids: at most 64 characters (Stream's spec); ids may also hold "!", as
# the ids Stream derives from members do (`!members-...`).
CHANNEL_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHANNEL_ID_PATTERN = re.compile(r"[A-Za-z0-9@!_-]{1,64}")
DEFAULT_CHANNEL_TYPE = "messaging"

# Stream limits custom data to 5 KB: per user object, per channel, per message.
MAX_CUSTOM_DATA_BYTES = 5 * 1024

# Stream takes at most 100 members with a channel (ChannelInput.members' maxItems), so a
# distinct channel, whose id Stream derives from its members, has at most 100. A channel
# with an id of our own takes the rest in later calls; the cap bounds the calls a request makes.
MAX_DISTINCT_MEMBERS = 100
MAX_MEMBERS = 1000

# What a member or sender object may carry. Anything else in a user object (`role`,
# `teams`, `banned`, ...) would let any caller change a user's permissions in Stream.
USER_FIELDS = ("name", "image")

# Message fields Stream gives a meaning to (MessageRequest and MessageResponse): an update
# may set `text` and custom fields, not these.
RESERVED_MESSAGE_FIELDS = frozenset({
    "attachments", "cid", "command", "created_at", "custom", "deleted_at", "html", "i18n", "id",
    "latest_reactions", "mentioned_channel", "mentioned_users", "mml", "own_reactions",
    "parent_id", "pin_expires", "pinned", "pinned_at", "pinned_by", "poll", "poll_id",
    "quoted_message", "quoted_message_id", "reaction_counts", "reaction_scores", "reply_count",
    "restricted_visibility", "shadowed", "shared_location", "show_in_channel", "silent",
    "thread_participants", "type", "updated_at", "user", "user_id",
})

# Fields of Stream's ChannelInput, and the channel's read-only fields: these are not
# custom data, and letting `custom_data` set them would override the members we send
# or break Stream's schema (`frozen: "yes"`).
RESERVED_CHANNEL_FIELDS = frozenset({
    "auto_translation_enabled", "auto_translation_language", "cid", "config",
    "config_overrides", "created_at", "created_by", "created_by_id", "custom",
    "deleted_at", "disabled", "filter_tags", "frozen", "id", "invites",
    "member_count", "members", "team", "truncated_by_id", "type", "updated_at",
})


class InvalidPayload(ValueError):
    """A request body field that is missing or wrong; answered with a 400."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class ChannelSync:
    """The `/channel` body: the channel `type:id` of `members`, created by `creator_id`.
    Without an id, it is the distinct channel of its members, as in the reference."""

    type: str
    id: str | None
    creator_id: str
    custom_data: dict[str, Any]
    members: dict[str, dict[str, str]]  # user id -> the user object to upsert


@dataclass(frozen=True)
class MessageSync:
    """The `/message` body: the `/channel` body plus the message and its sender."""

    channel: ChannelSync
    message_id: str
    text: str
    sender: dict[str, str]  # the user object to upsert

    @property
    def users(self) -> dict[str, dict[str, str]]:
        """Everyone to upsert: the members and the sender, who need not be a member."""
        return {**self.channel.members, self.sender["id"]: self.sender}


@dataclass(frozen=True)
class MessageUpdate:
    """The `PUT /message/<id>` body: `{"message": {"text", ...custom}, "user": {"id"}}`."""

    fields: dict[str, Any]
    user_id: str


@dataclass(frozen=True)
class ChannelUpdate:
    """The `PUT /channel/<type>/<id>` body: custom data to set (a `None` value removes the
    field) and, when given, the channel's exact members."""

    custom_data: dict[str, Any]
    members: dict[str, dict[str, str]] | None  # user id -> the user object to upsert; None: unchanged


def token_request(body: dict[str, Any]) -> str:
    """`{"user_id": "tommaso"}` -> the user id."""
    return user_id(body.get("user_id"), "user_id")


def channel_sync(body: dict[str, Any]) -> ChannelSync:
    """`{"channel": {"creator_id", "custom_data"}, "members": {id: {"name", "image"}}}`."""
    members = _members(body.get("members"))
    return _channel(body, members, creator_ids=members)


def message_sync(body: dict[str, Any]) -> MessageSync:
    """The `/channel` body plus `"message": {"id", "text"}` and `"user": {"id", "name", "image"}`."""
    members = _members(body.get("members"))
    sender_fields = _object(body.get("user"), "user")
    sender_id = user_id(sender_fields.get("id"), "user.id")
    sender = _user(sender_id, {k: v for k, v in sender_fields.items() if k != "id"}, "user")

    message = _object(body.get("message"), "message")
    return MessageSync(
        channel=_channel(body, members, creator_ids={*members, sender_id}),
        message_id=_id(message.get("id"), "message.id"),
        text=_non_empty_string(message.get("text"), "message.text"),
        sender=sender,
    )


def message_update(body: dict[str, Any]) -> MessageUpdate:
    """`{"message": {"text", ...custom fields}, "user": {"id"}}`: the fields to set, and by whom."""
    fields = _object(body.get("message"), "message")
    if not fields:
        raise InvalidPayload("message", "must set at least one field")
    reserved = sorted(RESERVED_MESSAGE_FIELDS.intersection(fields))
    if reserved:
        raise InvalidPayload(f"message.{reserved[0]}", "cannot be changed here (accepted: text, custom fields)")
    if "text" in fields:
        _non_empty_string(fields["text"], "message.text")
    custom_data = {name: value for name, value in fields.items() if name != "text"}
    if _json_size(custom_data) > MAX_CUSTOM_DATA_BYTES:
        raise InvalidPayload("message", f"has over Stream's {MAX_CUSTOM_DATA_BYTES} bytes of custom data")
    user = _object(body.get("user"), "user")
    return MessageUpdate(fields=fields, user_id=user_id(user.get("id"), "user.id"))


def channel_update(body: dict[str, Any]) -> ChannelUpdate:
    """`{"custom_data": {...}, "members": {id: {"name", "image"}}}`, either or both."""
    if "custom_data" not in body and "members" not in body:
        raise InvalidPayload("custom_data", "or members must be given")
    members = _members(body["members"]) if "members" in body else None
    return ChannelUpdate(custom_data=_custom_data(body.get("custom_data", {}), "custom_data"), members=members)


def message_id(value: Any, field: str = "message id") -> str:
    """A message id: the same characters as a user id (it goes into Stream's URL paths)."""
    return _id(value, field)


def channel_ref(channel_type: Any, channel_id: Any) -> tuple[str, str]:
    """A channel's `type` and `id`, as in `DELETE /channel/<type>/<id>`."""
    return _channel_type(channel_type, "channel type"), _channel_id(channel_id, "channel id")


def flag(value: str | None, field: str) -> bool:
    """A query flag such as `?hard=true`: absent is false."""
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidPayload(field, "must be true or false")


def user_id(value: Any, field: str) -> str:
    """A Stream user id: a string of letters, digits, `@`, `_` or `-`, at most 255 long."""
    return _id(value, field)


def _channel(body: dict[str, Any], members: dict[str, dict[str, str]], creator_ids) -> ChannelSync:
    channel = _object(body.get("channel"), "channel")
    channel_type = _channel_type(channel.get("type", DEFAULT_CHANNEL_TYPE), "channel.type")
    channel_id = channel.get("id")
    if channel_id is not None:
        channel_id = _channel_id(channel_id, "channel.id")
    elif len(members) > MAX_DISTINCT_MEMBERS:
        raise InvalidPayload("members", f"may name at most {MAX_DISTINCT_MEMBERS} users for a channel "
                                        "without an id, Stream's limit; give the channel an id")
    creator_id = user_id(channel.get("creator_id"), "channel.creator_id")
    if creator_id not in creator_ids:
        # Stream needs the creator to exist, so they must be among the users we upsert;
        # upserting a bare id instead would wipe their name and image.
        raise InvalidPayload("channel.creator_id", "must be one of the members (or the message's sender)")
    return ChannelSync(
        type=channel_type,
        id=channel_id,
        creator_id=creator_id,
        custom_data=_custom_data(channel.get("custom_data", {}), "channel.custom_data"),
        members=members,
    )


def _members(value: Any) -> dict[str, dict[str, str]]:
    members = _object(value, "members")
    if not members:
        raise InvalidPayload("members", "must name at least one user")
    if len(members) > MAX_MEMBERS:
        raise InvalidPayload("members", f"may name at most {MAX_MEMBERS} users")
    users = {}
    for member_id, fields in members.items():
        field = f"members.{_shorten(member_id)}"
        users[user_id(member_id, field)] = _user(member_id, _object(fields, field), field)
    return users


def _user(user_id: str, fields: dict[str, Any], field: str) -> dict[str, str]:
    user = {"id": user_id}
    for name, value in fields.items():
        if name not in USER_FIELDS:
            raise InvalidPayload(f"{field}.{_shorten(name)}", f"is not accepted (accepted: {', '.join(USER_FIELDS)})")
        if not isinstance(value, str):
            raise InvalidPayload(f"{field}.{name}", "must be a string")
        user[name] = value
    if _json_size(user) > MAX_CUSTOM_DATA_BYTES:
        raise InvalidPayload(field, f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes for a user")
    return user


def _custom_data(value: Any, field: str) -> dict[str, Any]:
    custom_data = _object(value, field)
    reserved = sorted(RESERVED_CHANNEL_FIELDS.intersection(custom_data))
    if reserved:
        raise InvalidPayload(f"{field}.{reserved[0]}", "is a field Stream reserves, not custom data")
    if _json_size(custom_data) > MAX_CUSTOM_DATA_BYTES:
        raise InvalidPayload(field, f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes of custom data")
    return custom_data


def _id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPayload(field, "must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidPayload(field, f"must be at most {MAX_ID_LENGTH} characters")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidPayload(field, "may contain only letters, digits, '@', '_' and '-'")
    return value


def _channel_type(value: Any, field: str) -> str:
    if not isinstance(value, str) or not CHANNEL_TYPE_PATTERN.fullmatch(value):
        raise InvalidPayload(field, "must be 1 to 64 letters, digits, '_' or '-'")
    return value


def _channel_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not CHANNEL_ID_PATTERN.fullmatch(value):
        raise InvalidPayload(field, "must be 1 to 64 letters, digits, '@', '!', '_' or '-'")
    return value


def _non_empty_string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload(field, "must be a non-empty string")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(field, "must be a JSON object")
    return value


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _shorten(name: str, limit: int = 40) -> str:
    """A client-chosen key, cut short enough to quote in an error message."""
    return name if len(name) <= limit else name[:limit] + "..."
