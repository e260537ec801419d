"""The bodies of the mirror's HTTP routes, and the parsers that turn one into the mirror's
inputs (mirror/inputs.py) with every rule of Stream's checked, for the routes and for a
Python caller alike:

    parse_channel(body)         POST /channel          -> ChannelSync
    parse_message(body)         POST /message          -> MessageSync
    parse_message_update(body)  PUT /message/<id>      -> MessageUpdate
    parse_channel_update(body)  PUT /channel/<t>/<id>  -> ChannelUpdate

A body is a dict (as a Python caller builds it) or JSON bytes or text (as a request carries
it). The models are pydantic's and carry Stream's limits (id characters and lengths, 5 KB of
custom data, reserved fields, member caps: stream/rules.py); their JSON Schemas are also the
OpenAPI document's (web/openapi.py). A problem raises errors.InvalidRequest naming the field.
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from stream_backend.errors import InvalidRequest
from stream_backend.mirror.inputs import ChannelSync, ChannelUpdate, MessageSync, MessageUpdate
from stream_backend.mirror.versions import VERSION_SCHEMA, VersionValue, parse_version, whole_number
from stream_backend.stream.rules import (
    DEFAULT_CHANNEL_TYPE,
    MAX_CUSTOM_DATA_BYTES,
    MAX_DISTINCT_MEMBERS,
    MAX_MEMBERS,
    MIN_DISTINCT_MEMBERS,
    RESERVED_CHANNEL_FIELDS,
    RESERVED_MESSAGE_FIELDS,
)
from stream_backend.validation import (
    ChannelId,
    ChannelType,
    MessageId,
    Text,
    UserId,
    check_storable,
    json_size,
    parse_json,
    shorten,
    validated,
    within_custom_data_limit,
)


def _not_in(reserved: frozenset, problem: str) -> AfterValidator:
    def check(name: str) -> str:
        if name in reserved:
            raise PydanticCustomError("reserved_field", problem)
        return name

    return AfterValidator(check)


def without_default(schema: dict) -> None:
    """An optional field that may not be null: no `"default": null` in the document."""
    schema.pop("default", None)


def may_be_left_out(**options: Any) -> Any:
    """A field a body may leave out but never set to null: unset, it is None in Python; the
    document shows no default. (Typed Any: its Python default is no value of its JSON type.)"""
    options.setdefault("json_schema_extra", without_default)
    return Field(None, **options)


def _keys(schema: dict) -> None:
    """pydantic describes a dict with patterned keys as `patternProperties`, which lets other
    keys through; say instead that every key has the pattern (`propertyNames`)."""
    for pattern, values in schema.pop("patternProperties", {}).items():
        schema.setdefault("propertyNames", {})["pattern"] = pattern
        schema["additionalProperties"] = values


def _keys_without_default(schema: dict[str, Any]) -> None:
    """`_keys`, for a field whose Python default (None: not given) is no JSON value it takes."""
    _keys(schema)
    schema.pop("default", None)


def _version(value: Any) -> int | str:
    """A version as the body gave it (a whole `3.0` as 3), once mirror/versions.py can read it."""
    try:
        parse_version(value)
    except InvalidRequest as error:
        raise PydanticCustomError("version", str(error).removeprefix("version: ")) from None
    return whole_number(value)


# The primary's version of an object (mirror/versions.py): an integer or an RFC 3339 timestamp.
VersionField = Annotated[int | str, PlainValidator(_version), WithJsonSchema(VERSION_SCHEMA)]


ChannelDataName = Annotated[str, _not_in(RESERVED_CHANNEL_FIELDS, "is a field Stream reserves, not custom data")]
CustomData = Annotated[
    dict[ChannelDataName, Any],
    AfterValidator(within_custom_data_limit),
    Field(
        description="The channel's custom fields, at most 5 KB as JSON; not Stream's own channel fields.",
        json_schema_extra={"propertyNames": {"not": {"enum": sorted(RESERVED_CHANNEL_FIELDS)}}},
    ),
]
MessageFieldName = Annotated[
    str, _not_in(RESERVED_MESSAGE_FIELDS, "cannot be changed here (accepted: text, custom fields)")
]


class UserFields(BaseModel):
    """What a member or sender object may carry. Anything else (`role`, `teams`, `banned`, ...)
    would let any caller change a user's permissions in Stream."""

    model_config = ConfigDict(extra="forbid")
    name: str = may_be_left_out()
    image: str = may_be_left_out()
    version: VersionField = may_be_left_out()


class Sender(UserFields):
    """The message's sender, who need not be a member."""

    id: UserId


Members = Annotated[
    dict[UserId, UserFields],
    Field(
        min_length=1,
        max_length=MAX_MEMBERS,
        json_schema_extra=_keys,
        description=f"User id -> user object; 1 to {MAX_MEMBERS} users, {MIN_DISTINCT_MEMBERS} to "
        f"{MAX_DISTINCT_MEMBERS} for a channel without an id.",
    ),
]


class ChannelFields(BaseModel):
    creator_id: UserId = Field(description="One of the members (for `/message`: or the sender).")
    custom_data: CustomData = {}
    type: ChannelType = DEFAULT_CHANNEL_TYPE
    id: ChannelId | None = Field(None, description="Without it, the distinct channel of its members.")
    version: VersionField = may_be_left_out()


# The reference's own bodies (its Postman collection): the document's examples, which /docs
# fills in for "Try it out".
CHANNEL_EXAMPLE: dict[str, Any] = {
    "channel": {"creator_id": "tommaso", "custom_data": {"title": "Just a test"}},
    "members": {"tommaso": {"name": "Tommaso", "image": ""}, "thierry": {"name": "Thierry", "image": ""}},
}
# A channel with an id, as a primary system creates its channels: the one `PUT` and `DELETE
# /channel/messaging/general` then find.
CHANNEL_WITH_ID_EXAMPLE: dict[str, Any] = {
    "channel": {"type": "messaging", "id": "general", "creator_id": "tommaso", "custom_data": {"title": "General"}},
    "members": CHANNEL_EXAMPLE["members"],
}
MESSAGE_EXAMPLE: dict[str, Any] = {
    "message": {"id": "123-456-789-01234", "text": "hello there!"},
    **CHANNEL_EXAMPLE,
    "user": {"id": "tommaso", "name": "Tommaso", "image": ""},
}
# The same, from a primary that sends its objects' versions (docs/consistency.md, "Versions").
VERSIONED_CHANNEL_EXAMPLE: dict[str, Any] = {
    "channel": {"type": "messaging", "id": "general", "creator_id": "tommaso", "version": 7},
    "members": {"tommaso": {"name": "Tommaso", "version": 3}, "thierry": {"name": "Thierry", "version": 5}},
}
VERSIONED_MESSAGE_EXAMPLE: dict[str, Any] = {
    "message": {"id": "123-456-789-01234", "text": "hello there!", "version": "2026-11-28T10:00:00.123456Z"},
    **VERSIONED_CHANNEL_EXAMPLE,
    "user": {"id": "tommaso", "name": "Tommaso", "version": 3},
}


class ChannelRequest(BaseModel):
    """`POST /channel`: the channel `type:id` of `members`, created by `creator_id`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [CHANNEL_WITH_ID_EXAMPLE, CHANNEL_EXAMPLE, VERSIONED_CHANNEL_EXAMPLE]}
    )

    channel: ChannelFields
    members: Members

    def channel_sync(self) -> ChannelSync:
        """The mirror's input, once the rules JSON Schema cannot say hold."""
        return self._channel_sync(creators=self.members.keys())

    def _channel_sync(self, creators) -> ChannelSync:
        """The creator must be one of `creators`, the users the request upserts: Stream needs
        the creator to exist, and upserting a bare id would wipe their name and image."""
        channel = self.channel
        members = {
            user_id: _user(fields, user_id, f"members.{shorten(user_id)}") for user_id, fields in self.members.items()
        }
        if channel.id is None and not MIN_DISTINCT_MEMBERS <= len(self.members) <= MAX_DISTINCT_MEMBERS:
            raise InvalidRequest(
                "members",
                f"must name from {MIN_DISTINCT_MEMBERS} to {MAX_DISTINCT_MEMBERS} users for a channel "
                "without an id (the distinct channel of its members), Stream's limits; give the channel an id",
            )
        if channel.creator_id not in creators:
            raise InvalidRequest("channel.creator_id", "must be one of the members (or the message's sender)")
        return ChannelSync(
            type=channel.type,
            id=channel.id,
            creator_id=channel.creator_id,
            custom_data=channel.custom_data,
            members=members,
            version=channel.version,
            member_versions=_versions(self.members),
        )


class NewMessage(BaseModel):
    id: MessageId
    text: Text
    version: VersionField = may_be_left_out()


class MessageRequest(ChannelRequest):
    """`POST /message`: the `/channel` body plus the message and its sender."""

    model_config = ConfigDict(json_schema_extra={"examples": [MESSAGE_EXAMPLE, VERSIONED_MESSAGE_EXAMPLE]})

    message: NewMessage
    user: Sender

    def message_sync(self) -> MessageSync:
        sender = _user(self.user, self.user.id, "user")
        return MessageSync(
            channel=self._channel_sync(creators={*self.members, self.user.id}),
            message_id=self.message.id,
            text=self.message.text,
            sender=sender,
            version=self.message.version,
            sender_version=self.user.version,
        )


RESERVED_MESSAGE_FIELD_NAMES: list[Any] = sorted(RESERVED_MESSAGE_FIELDS)


class MessageFields(BaseModel):
    """The fields an update sets: `text` and custom fields, at most 5 KB of them."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "minProperties": 1,
            # `version` is the message's version, not a field it sets.
            "if": {"required": ["version"]},
            "then": {"minProperties": 2},
            "propertyNames": {"not": {"enum": RESERVED_MESSAGE_FIELD_NAMES}},
        },
    )
    __pydantic_extra__: dict[MessageFieldName, Any]
    text: Text = may_be_left_out()
    version: VersionField = may_be_left_out()

    def fields(self) -> dict[str, Any]:
        """The fields to set: every one given but `version`."""
        return self.model_dump(exclude_unset=True, exclude={"version"})

    @model_validator(mode="after")
    def sets_some_fields_within_limit(self):
        fields = self.fields()
        if not fields:
            raise PydanticCustomError("no_fields", "must set at least one field")
        custom_data = {name: value for name, value in fields.items() if name != "text"}
        if json_size(custom_data) > MAX_CUSTOM_DATA_BYTES:
            raise PydanticCustomError("too_large", f"has over Stream's {MAX_CUSTOM_DATA_BYTES} bytes of custom data")
        return self


class UserRef(BaseModel):
    id: UserId


class MessageUpdateRequest(BaseModel):
    """`PUT /message/<id>`: the fields to set, and by whom."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"message": {"text": "hello again!", "mood": "calm"}, "user": {"id": "tommaso"}},
                {"message": {"text": "hello again!", "version": 8}, "user": {"id": "tommaso"}},
            ]
        }
    )

    message: MessageFields
    user: UserRef

    def update(self) -> MessageUpdate:
        return MessageUpdate(fields=self.message.fields(), user_id=self.user.id, version=self.message.version)


class ChannelUpdateRequest(BaseModel):
    """`PUT /channel/<type>/<id>`: custom data to set (a `null` field is removed, fields not
    given are kept) and, when given, the channel's exact members."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["custom_data"]}, {"required": ["members"]}],
            "examples": [
                {"custom_data": {"title": "Renamed", "topic": None}, "members": CHANNEL_EXAMPLE["members"]},
                {"version": 8, "custom_data": {"title": "Renamed"}, "members": VERSIONED_CHANNEL_EXAMPLE["members"]},
            ],
        }
    )

    custom_data: CustomData = {}
    # No `| None`: `"members": null` is refused (an object or nothing), as the document says.
    members: Members = may_be_left_out(
        description="The channel's members, exactly: the missing are added, the others removed. Absent: unchanged.",
        json_schema_extra=_keys_without_default,
    )
    version: VersionField = may_be_left_out(description="The channel's version: its custom data and members.")

    def update(self) -> ChannelUpdate:
        if not self.model_fields_set - {"version"}:
            raise InvalidRequest("custom_data", "or members must be given")
        members = (
            None
            if self.members is None
            else {
                user_id: _user(fields, user_id, f"members.{shorten(user_id)}")
                for user_id, fields in self.members.items()
            }
        )
        return ChannelUpdate(
            custom_data=self.custom_data,
            members=members,
            version=self.version,
            member_versions=_versions(self.members or {}),
        )


def _versions(members: dict[str, UserFields]) -> dict[str, VersionValue]:
    """The members' versions, of those that carry one."""
    return {user_id: fields.version for user_id, fields in members.items() if fields.version is not None}


def _user(fields: UserFields, user_id: str, field: str) -> dict[str, str]:
    """The user object to upsert into Stream, within Stream's 5 KB."""
    user = {"id": user_id, **fields.model_dump(include={"name", "image"}, exclude_unset=True)}
    if json_size(user) > MAX_CUSTOM_DATA_BYTES:
        raise InvalidRequest(field, f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes for a user")
    return user


# --- The parsers --------------------------------------------------------------------------


def _body(body: dict[str, Any] | bytes | str) -> dict[str, Any]:
    return check_storable(body) if isinstance(body, dict) else parse_json(body)


def parse_channel(body: dict[str, Any] | bytes | str) -> ChannelSync:
    """A `POST /channel` body, checked, as the mirror's input."""
    return validated(ChannelRequest, _body(body)).channel_sync()


def parse_message(body: dict[str, Any] | bytes | str) -> MessageSync:
    """A `POST /message` body, checked, as the mirror's input."""
    return validated(MessageRequest, _body(body)).message_sync()


def parse_message_update(body: dict[str, Any] | bytes | str) -> MessageUpdate:
    """A `PUT /message/<id>` body, checked, as the mirror's input."""
    return validated(MessageUpdateRequest, _body(body)).update()


def parse_channel_update(body: dict[str, Any] | bytes | str) -> ChannelUpdate:
    """A `PUT /channel/<type>/<id>` body, checked, as the mirror's input."""
    return validated(ChannelUpdateRequest, _body(body)).update()
