"""What a validated request hands to the mirror: plain frozen values, free of HTTP and of the
validation library, so that a Python primary backend can build them and call mirror.py directly.
models.py validates the request bodies and builds these."""

from dataclasses import dataclass
from typing import Any


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
