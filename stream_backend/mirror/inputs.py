"""What the mirror takes: plain frozen values, free of HTTP and of the validation library.

`parse_channel(body)` and the other parsers (mirror/bodies.py) build them from bodies of the
HTTP routes' shape, with all of Stream's rules checked; a Python primary backend may also
build them itself. The defaults are the HTTP API's: a channel is `messaging`, the distinct
channel of its members when it has no id, with no custom data. A user object is `{"id",
"name", "image"}`; its `"id"` may be left out where the key already says it.

Every object may carry the primary's version of it (`version`, `member_versions`,
`sender_version`; mirror/versions.py): an int, RFC 3339 text or an aware datetime. None, the
default, is no version: the write is applied whatever was applied before, as without versions.
"""

from dataclasses import dataclass, field
from typing import Any

from stream_backend.errors import InvalidRequest
from stream_backend.mirror.versions import VersionValue
from stream_backend.stream.rules import DEFAULT_CHANNEL_TYPE

User = dict[str, str]  # {"id", "name"?, "image"?}: the user object upserted into Stream


def _users_by_id(users: dict[str, dict[str, str]], field_name: str) -> dict[str, User]:
    """`users` with each object's `"id"` set to its key; a different inner id is refused."""
    complete = {}
    for user_id, user in users.items():
        if user.get("id", user_id) != user_id:
            raise InvalidRequest(f"{field_name}.{user_id}.id", "must be the key it is under")
        complete[user_id] = {**user, "id": user_id}
    return complete


def _versions_of_members(versions: dict[str, VersionValue], members: dict[str, User] | None) -> None:
    """Every member version must be a member's."""
    for user_id in versions:
        if members is None or user_id not in members:
            raise InvalidRequest(f"member_versions.{user_id}", "is not one of the members")


@dataclass(frozen=True)
class ChannelSync:
    """The `/channel` body: the channel `type:id` of `members`, created by `creator_id`.
    Without an id, it is the distinct channel of its members, as in the reference."""

    creator_id: str
    members: dict[str, User]  # user id -> the user object to upsert
    type: str = DEFAULT_CHANNEL_TYPE
    id: str | None = None
    custom_data: dict[str, Any] = field(default_factory=dict)
    version: VersionValue | None = None  # the channel's: its custom data and its members
    member_versions: dict[str, VersionValue] = field(default_factory=dict)  # user id -> the user's version

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", _users_by_id(self.members, "members"))
        _versions_of_members(self.member_versions, self.members)


@dataclass(frozen=True)
class MessageSync:
    """The `/message` body: the `/channel` body plus the message and its sender."""

    channel: ChannelSync
    message_id: str
    text: str
    sender: User  # the user object to upsert; it must have its "id"
    version: VersionValue | None = None  # the message's
    sender_version: VersionValue | None = None  # the sender's user object's

    def __post_init__(self) -> None:
        if not isinstance(self.sender.get("id"), str):
            raise InvalidRequest("user.id", "is required")

    @property
    def users(self) -> dict[str, User]:
        """Everyone to upsert: the members and the sender, who need not be a member."""
        return {**self.channel.members, self.sender["id"]: self.sender}

    @property
    def user_versions(self) -> dict[str, VersionValue]:
        """The versions of `users`: the sender's own, as its object, wins over its member entry's."""
        versions = dict(self.channel.member_versions)
        versions.pop(self.sender["id"], None)
        if self.sender_version is not None:
            versions[self.sender["id"]] = self.sender_version
        return versions


@dataclass(frozen=True)
class MessageUpdate:
    """The `PUT /message/<id>` body: `{"message": {"text", ...custom}, "user": {"id"}}`."""

    fields: dict[str, Any]
    user_id: str
    version: VersionValue | None = None  # the message's


@dataclass(frozen=True)
class ChannelUpdate:
    """The `PUT /channel/<type>/<id>` body: custom data to set (a `None` value removes the
    field) and, when given, the channel's exact members (None: unchanged)."""

    custom_data: dict[str, Any] = field(default_factory=dict)
    members: dict[str, User] | None = None  # user id -> the user object to upsert
    version: VersionValue | None = None  # the channel's
    member_versions: dict[str, VersionValue] = field(default_factory=dict)  # user id -> the user's version

    def __post_init__(self) -> None:
        if self.members is not None:
            object.__setattr__(self, "members", _users_by_id(self.members, "members"))
        _versions_of_members(self.member_versions, self.members)
