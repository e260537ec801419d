"""The API's contract: what each route accepts and answers, in one place.

- Request bodies are pydantic models that carry Stream's own limits (id characters and lengths,
  5 KB of custom data, reserved fields, member caps; see ../shared/docs/stream-facts.md), so that
  a request Stream would refuse halfway through never writes its first half.
- `validated()` runs one of them on what `json_body()` decoded, and turns pydantic's first error
  into our `{"error": "<field>: <problem>", "field": "<field>"}` answer (`InvalidRequest`).
- `ROUTES` lists every route; `openapi_document()` builds the OpenAPI 3.1 document from it and
  the models, so the published constraints are the ones enforced. tests/test_openapi.py fails
  if a Flask route is missing from `ROUTES`.

Adding a route: its body model here, one `Route(...)` line in `ROUTES`, and the Flask view in
app.py, whose docstring becomes the operation's description. No Flask in this module.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, model_validator)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from payloads import ChannelSync, ChannelUpdate, MessageSync, MessageUpdate

# --- Stream's rules -----------------------------------------------------------------------

# Stream user ids: letters, digits, "@", "_" and "-", at most 255 (MessageRequest.id's maxLength
# in Stream's spec). Message ids follow the same rule: they end up in URL paths
# (`/messages/{id}`) that the SDK does not escape.
ID_PATTERN = r"^[A-Za-z0-9@_-]+$"
MAX_ID_LENGTH = 255
# Channel types and ids: at most 64 characters (Stream's spec); ids may also hold "!", as the
# ids Stream derives from members do (`!members-...`).
CHANNEL_TYPE_PATTERN = r"^[A-Za-z0-9_-]+$"
CHANNEL_ID_PATTERN = r"^[A-Za-z0-9@!_-]+$"
MAX_CHANNEL_ID_LENGTH = 64
DEFAULT_CHANNEL_TYPE = "messaging"
# A character that is not whitespace (as Python's str.isspace() sees it, also in JavaScript).
NOT_BLANK_PATTERN = r"[^\s\x1c-\x1f\x85]"
# `?hard=true`: true or false in any case, 1 or 0.
FLAG_PATTERN = r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"

# Stream limits custom data to 5 KB: per user object, per channel, per message.
MAX_CUSTOM_DATA_BYTES = 5 * 1024

# Stream takes at most 100 members with a channel (ChannelInput.members' maxItems), so a
# distinct channel, whose id Stream derives from its members, has at most 100. A channel
# with an id of our own takes the rest in later calls; the cap bounds the calls a request makes.
MAX_DISTINCT_MEMBERS = 100
MAX_MEMBERS = 1000

# Message fields Stream gives a meaning to: the properties of MessageRequest and MessageResponse
# in Stream's spec (tests/test_security.py checks this against it), and the mirror's own mark.
# An update may set `text` and custom fields, not these.
RESERVED_MESSAGE_FIELDS = frozenset({
    "attachments", "cid", "command", "created_at", "custom", "deleted_at", "deleted_for_me",
    "deleted_reply_count", "draft", "html", "i18n", "id", "image_labels", "latest_reactions",
    "member", "mentioned_channel", "mentioned_group_ids", "mentioned_groups", "mentioned_here",
    "mentioned_roles", "mentioned_users", "message_text_updated_at", "mml", "moderation",
    "own_reactions", "parent_id", "pin_expires", "pinned", "pinned_at", "pinned_by", "poll",
    "poll_id", "quoted_message", "quoted_message_id", "reaction_counts", "reaction_groups",
    "reaction_scores", "reminder", "reply_count", "restricted_visibility", "shadowed",
    "shared_location", "show_in_channel", "silent", "thread_participants", "type", "updated_at",
    "user", "user_id",
    "primary_origin",  # mirror.ORIGIN_FIELD: only the mirror sets it
})

# Fields of Stream's ChannelInput, and the channel's read-only fields: these are not custom
# data, and letting `custom_data` set them would override the members we send or break
# Stream's schema (`frozen: "yes"`).
RESERVED_CHANNEL_FIELDS = frozenset({
    "auto_translation_enabled", "auto_translation_language", "cid", "config",
    "config_overrides", "created_at", "created_by", "created_by_id", "custom",
    "deleted_at", "disabled", "filter_tags", "frozen", "id", "invites",
    "member_count", "members", "team", "truncated_by_id", "type", "updated_at",
})

# What each pattern means, in the words of an error message.
PATTERN_RULES = {
    ID_PATTERN: "may contain only letters, digits, '@', '_' and '-'",
    CHANNEL_TYPE_PATTERN: "may contain only letters, digits, '_' and '-'",
    CHANNEL_ID_PATTERN: "may contain only letters, digits, '@', '!', '_' and '-'",
    NOT_BLANK_PATTERN: "must not be empty or only whitespace",
    FLAG_PATTERN: "must be true or false",
}


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON, as Stream counts custom data (a lone surrogate,
    which parse_body() refuses, would count 3 rather than fail here)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(errors="surrogatepass"))


def _within_custom_data_limit(value: dict) -> dict:
    if json_size(value) > MAX_CUSTOM_DATA_BYTES:
        raise PydanticCustomError("too_large", f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes of custom data")
    return value


def _not_in(reserved: frozenset, problem: str):
    def check(name: str) -> str:
        if name in reserved:
            raise PydanticCustomError("reserved_field", problem)
        return name
    return AfterValidator(check)


def _without_default(schema: dict) -> None:
    """An optional field that may not be null: no `"default": null` in the document."""
    schema.pop("default", None)


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


# --- Types ---------------------------------------------------------------------------------

UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
                   Field(description="A Stream user id: 1 to 255 letters, digits, `@`, `_` or `-`.",
                         examples=["tommaso"])]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
                      Field(description="The primary system's message id: 1 to 255 letters, digits, `@`, "
                                        "`_` or `-`.", examples=["123-456-789-01234"])]
ChannelType = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHANNEL_ID_LENGTH,
                                               pattern=CHANNEL_TYPE_PATTERN),
                        Field(description="1 to 64 letters, digits, `_` or `-`.", examples=["messaging"])]
ChannelId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHANNEL_ID_LENGTH,
                                             pattern=CHANNEL_ID_PATTERN),
                      Field(description="1 to 64 letters, digits, `@`, `!`, `_` or `-`.", examples=["general"])]
Text = Annotated[str, StringConstraints(pattern=NOT_BLANK_PATTERN),
                 Field(description="Not empty, not only whitespace.")]
Flag = Annotated[str, StringConstraints(pattern=FLAG_PATTERN),
                 AfterValidator(lambda value: value.lower() in ("true", "1")),  # -> bool
                 Field(description="`true` or `false` (any case), `1` or `0`; absent is false.")]

ChannelDataName = Annotated[str, _not_in(RESERVED_CHANNEL_FIELDS, "is a field Stream reserves, not custom data")]
CustomData = Annotated[
    dict[ChannelDataName, Any], AfterValidator(_within_custom_data_limit),
    Field(description="The channel's custom fields, at most 5 KB as JSON; not Stream's own channel fields.",
          json_schema_extra={"propertyNames": {"not": {"enum": sorted(RESERVED_CHANNEL_FIELDS)}}})]
MessageFieldName = Annotated[str, _not_in(RESERVED_MESSAGE_FIELDS,
                                          "cannot be changed here (accepted: text, custom fields)")]


class UserFields(BaseModel):
    """What a member or sender object may carry. Anything else (`role`, `teams`, `banned`, ...)
    would let any caller change a user's permissions in Stream."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(None, json_schema_extra=_without_default)
    image: str = Field(None, json_schema_extra=_without_default)


class Sender(UserFields):
    """The message's sender, who need not be a member."""

    id: UserId


Members = Annotated[
    dict[UserId, UserFields], Field(min_length=1, max_length=MAX_MEMBERS, json_schema_extra=_keys,
                                    description=f"User id -> user object; 1 to {MAX_MEMBERS} users, at most "
                                                f"{MAX_DISTINCT_MEMBERS} for a channel without an id.")]


class ChannelFields(BaseModel):
    creator_id: UserId = Field(description="One of the members (for `/message`: or the sender).")
    custom_data: CustomData = {}
    type: ChannelType = DEFAULT_CHANNEL_TYPE
    id: ChannelId | None = Field(None, description="Without it, the distinct channel of its members.")


# The reference's own bodies (its Postman collection): the document's examples, which /docs
# fills in for "Try it out".
CHANNEL_EXAMPLE = {
    "channel": {"creator_id": "tommaso", "custom_data": {"title": "Just a test"}},
    "members": {"tommaso": {"name": "Tommaso", "image": ""}, "thierry": {"name": "Thierry", "image": ""}},
}
MESSAGE_EXAMPLE = {"message": {"id": "123-456-789-01234", "text": "hello there!"}, **CHANNEL_EXAMPLE,
                   "user": {"id": "tommaso", "name": "Tommaso", "image": ""}}


class ChannelRequest(BaseModel):
    """`POST /channel`: the channel `type:id` of `members`, created by `creator_id`."""

    model_config = ConfigDict(json_schema_extra={"examples": [CHANNEL_EXAMPLE]})

    channel: ChannelFields
    members: Members

    def sync(self) -> ChannelSync:
        """The mirror's input, once the rules JSON Schema cannot say hold."""
        return self._channel_sync(creators=self.members.keys())

    def _channel_sync(self, creators) -> ChannelSync:
        """The creator must be one of `creators`, the users the request upserts: Stream needs
        the creator to exist, and upserting a bare id would wipe their name and image."""
        channel = self.channel
        members = {user_id: _user(fields, user_id, f"members.{_shorten(user_id)}")
                   for user_id, fields in self.members.items()}
        if channel.id is None and len(self.members) > MAX_DISTINCT_MEMBERS:
            raise InvalidRequest("members", f"may name at most {MAX_DISTINCT_MEMBERS} users for a channel "
                                            "without an id, Stream's limit; give the channel an id")
        if channel.creator_id not in creators:
            raise InvalidRequest("channel.creator_id", "must be one of the members (or the message's sender)")
        return ChannelSync(type=channel.type, id=channel.id, creator_id=channel.creator_id,
                           custom_data=channel.custom_data, members=members)


class NewMessage(BaseModel):
    id: MessageId
    text: Text


class MessageRequest(ChannelRequest):
    """`POST /message`: the `/channel` body plus the message and its sender."""

    model_config = ConfigDict(json_schema_extra={"examples": [MESSAGE_EXAMPLE]})

    message: NewMessage
    user: Sender

    def sync(self) -> MessageSync:
        sender = _user(self.user, self.user.id, "user")
        return MessageSync(channel=self._channel_sync(creators={*self.members, self.user.id}),
                           message_id=self.message.id, text=self.message.text, sender=sender)


class MessageFields(BaseModel):
    """The fields an update sets: `text` and custom fields, at most 5 KB of them."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "minProperties": 1, "propertyNames": {"not": {"enum": sorted(RESERVED_MESSAGE_FIELDS)}}})
    __pydantic_extra__: dict[MessageFieldName, Any]
    text: Text = Field(None, json_schema_extra=_without_default)

    @model_validator(mode="after")
    def sets_some_fields_within_limit(self):
        fields = self.model_dump(exclude_unset=True)
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

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"message": {"text": "hello again!", "mood": "calm"}, "user": {"id": "tommaso"}}]})

    message: MessageFields
    user: UserRef

    def update(self) -> MessageUpdate:
        return MessageUpdate(fields=self.message.model_dump(exclude_unset=True), user_id=self.user.id)


class ChannelUpdateRequest(BaseModel):
    """`PUT /channel/<type>/<id>`: custom data to set (a `null` field is removed, fields not
    given are kept) and, when given, the channel's exact members."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "examples": [
        {"custom_data": {"title": "Renamed", "topic": None}, "members": CHANNEL_EXAMPLE["members"]}]})

    custom_data: CustomData = {}
    # No `| None`: `"members": null` is refused (an object or nothing), as the document says.
    members: Members = Field(None, description="The channel's members, exactly: the missing are added, "
                                               "the others removed. Absent: unchanged.",
                             json_schema_extra=_keys_without_default)

    def update(self) -> ChannelUpdate:
        if not self.model_fields_set:
            raise InvalidRequest("custom_data", "or members must be given")
        members = None if self.members is None else {
            user_id: _user(fields, user_id, f"members.{_shorten(user_id)}") for user_id, fields in self.members.items()}
        return ChannelUpdate(custom_data=self.custom_data, members=members)


class TokenRequest(BaseModel):
    """`POST /generate-token`. With TOKEN_AUTH=jwt the body may be left out."""

    user_id: UserId


def _user(fields: UserFields, user_id: str, field: str) -> dict[str, str]:
    """The user object to upsert into Stream, within Stream's 5 KB."""
    user = {"id": user_id, **fields.model_dump(include={"name", "image"}, exclude_unset=True)}
    if json_size(user) > MAX_CUSTOM_DATA_BYTES:
        raise InvalidRequest(field, f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes for a user")
    return user


# --- Answers (described, not validated) ----------------------------------------------------

class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class TokenAnswer(Answer):
    token: str = Field(description="A Stream user token (JWT), valid for TOKEN_TTL_SECONDS.")


class ChannelAnswer(Answer):
    """Stream's channel state, and the channel's `cid`."""

    cid: str
    channel: dict[str, Any]


class MessageAnswer(Answer):
    message: dict[str, Any]
    cid: str


class UpdatedMessage(Answer):
    message: dict[str, Any]


class UpdatedChannel(Answer):
    channel: dict[str, Any]
    members: list[str] = Field(description="The member ids, after the update.")
    added: list[str]
    removed: list[str]


class Deleted(Answer):
    """Stream's answer; with `already_deleted: true` when Stream no longer had it."""

    already_deleted: bool = Field(None, json_schema_extra=_without_default)


class WebhookAnswer(Answer):
    received: str = Field(description="The event's type.")
    outcome: Literal["forwarded", "logged", "echo", "duplicate", "stale", "ignored"]


class Health(Answer):
    status: Literal["ok"]


class Error(Answer):
    """Every failure: what went wrong, and for an invalid request the field."""

    error: str = Field(examples=["members.thierry.name: must be a string"])
    field: str = Field(None, json_schema_extra=_without_default,
                       description="The invalid field's path, such as `members.thierry.name`.")
    api_error: str = Field(None, json_schema_extra=_without_default, description="Stream's own message.")
    stream_code: int | None = Field(None, json_schema_extra=_without_default, description="Stream's error code.")


class WebhookEvent(Answer):
    """One of Stream's webhook events (https://getstream.io/chat/docs/python/webhooks_overview/)."""

    type: str = Field(examples=["message.new"])


# --- The error adapter ----------------------------------------------------------------------

class InvalidRequest(Exception):
    """A request field that is missing or wrong; answered with a 400 naming it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


# pydantic's words for its own checks, in ours.
PROBLEMS = {
    "missing": "is required",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must not be empty",
    "too_long": "may have at most {max_length} entries",
    "extra_forbidden": "is not accepted here (a user object takes name and image)",  # only UserFields refuses
    "string_unicode": "must be valid Unicode text",
}


def validated(kind, value: Any, field: str = ""):
    """`value` validated as `kind` (a model, or a type such as `UserId` for one value named
    `field`). The first problem raises InvalidRequest."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise InvalidRequest(_path(((field,) if field else ()) + tuple(first["loc"])) or "body",
                             _problem(first)) from None


_ADAPTERS: dict[int, TypeAdapter] = {}  # by id: the kinds are module-level models and types


def _adapter(kind) -> TypeAdapter:
    if id(kind) not in _ADAPTERS:
        _ADAPTERS[id(kind)] = TypeAdapter(kind)
    return _ADAPTERS[id(kind)]


def _path(loc: tuple) -> str:
    """`("members", "thierry", "[key]")` -> `members.thierry`: keys a client chose are cut
    short enough to quote."""
    return ".".join(_shorten(str(part)) for part in loc if part != "[key]")


def _problem(error: dict) -> str:
    context = error.get("ctx") or {}
    if error["type"] == "string_pattern_mismatch" and context.get("pattern") in PATTERN_RULES:
        return PATTERN_RULES[context["pattern"]]
    template = PROBLEMS.get(error["type"])
    return template.format(**context) if template else error["msg"]


def _shorten(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else name[:limit] + "..."


# --- Request bodies as JSON -----------------------------------------------------------------

# Deeper than any real body (custom data included): the SDK and Stream recurse into it.
MAX_JSON_DEPTH = 32
# JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 encoder takes.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object that Stream can store; InvalidRequest otherwise."""
    try:
        # NaN and Infinity are not JSON; Python would accept them and forward them to Stream.
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest("body", "must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    _refuse_unstorable(body)
    return body


def _refuse_unstorable(body: dict[str, Any]) -> None:
    """Refuse what json.loads takes but Stream cannot: nesting deeper than MAX_JSON_DEPTH,
    lone surrogates, numbers out of a double's range (`1e400` parses to infinity). A 400
    naming the field, before anything is validated or sent. Each value is queued with a tuple
    of keys, not a path string: a long key over many children would be copied once per child.
    The field's name is built only for the refusal, with long keys cut short."""
    pending: list[tuple[Any, tuple]] = [(body, ())]
    while pending:  # a loop, not recursion: the depth is what is being checked
        value, keys = pending.pop()
        if isinstance(value, (dict, list)):
            if len(keys) >= MAX_JSON_DEPTH:
                raise InvalidRequest(_json_path(keys), f"is nested deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(key, str) and LONE_SURROGATE.search(key):
                    raise InvalidRequest(_json_path(keys),
                                         "has a key with a lone UTF-16 surrogate (not Unicode text)")
                pending.append((child, keys + (key,)))
        elif isinstance(value, str) and LONE_SURROGATE.search(value):
            raise InvalidRequest(_json_path(keys), "has a lone UTF-16 surrogate (not Unicode text)")
        elif isinstance(value, (int, float)) and not _finite(value):
            raise InvalidRequest(_json_path(keys), "is a number out of range (beyond a double's)")


def _json_path(keys: tuple) -> str:
    """`("members", "a", "tags", 0)` -> `members.a.tags[0]`, long keys cut short; `body` for ()."""
    path = ""
    for key in keys:
        path += f"[{key}]" if isinstance(key, int) else f".{_shorten(key)}" if path else _shorten(key)
    return path or "body"


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# --- The routes and the OpenAPI document ---------------------------------------------------

@dataclass(frozen=True)
class Parameter:
    name: str
    where: Literal["path", "query", "header"]
    kind: Any  # a type above, such as ChannelId
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Route:
    """One operation: `view` is the name of its Flask view in app.py, whose docstring
    describes it; `answer` is the model of its 200 body (JSON unless `media_types` says)."""

    method: str
    path: str  # OpenAPI's template: /message/{message_id}
    view: str
    tag: str
    answer: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    errors: tuple[int, ...] = ()
    security: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ("application/json",)
    body_required: bool = True


# What each error status means. Stream's own answers about a request pass through.
ERRORS = {
    400: "Invalid request: not a JSON object, or a field is wrong (`field` names it); or Stream's 400.",
    401: "A bearer token or webhook signature is missing or wrong (`WWW-Authenticate: Bearer`).",
    403: "A token asked for another user than the session JWT's (TOKEN_AUTH=jwt); a webhook caller "
         "outside WEBHOOK_ALLOWED_IPS.",
    404: "Stream has no such message or channel, or no such asset.",
    409: "Stream's 409, passed through; or the message id is taken in Stream by a message that is "
         "not this service's for this channel and sender.",
    413: "The body is over this route's cap.",
    429: "Stream's rate limit, passed through; `Retry-After` says when to try again.",
    502: "Stream refused this service's credentials, failed, or could not be reached.",
    503: "The primary system did not take the event, another worker is handing it over, or the "
         "delivery store is down: Stream retries.",
    504: "Stream did not answer within STREAM_CHAT_TIMEOUT.",
}
STREAM_ERRORS = (400, 404, 409, 413, 429, 502, 504)
SYNC_TOKEN = ("syncToken",)

SECURITY_SCHEMES = {
    "syncToken": {"type": "http", "scheme": "bearer",
                  "description": "SYNC_API_TOKEN: required by the sync routes when the service sets it."},
    "sessionJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "With TOKEN_AUTH=jwt: your app's session JWT (HS256, `sub` and `exp`); "
                                  "the token is for its `sub`."},
}

TAGS = {
    "tokens": "Stream user tokens for your apps.",
    "mirror": "Dual-write: the primary chat system's users, channels and messages, mirrored into Stream.",
    "webhook": "Stream's webhook, handed over to the primary system once.",
    "service": "The service itself: health, this document and its reference page.",
}

MESSAGE_ID = Parameter("message_id", "path", MessageId)
HARD = Parameter("hard", "query", Flag, required=False, description="Delete for good.")
WEBHOOK_HEADERS = (
    Parameter("X-Signature", "header", str, description="Hex HMAC-SHA256 of the (inflated) body with the API secret."),
    Parameter("X-Api-Key", "header", str, required=False, description="Checked against STREAM_API_KEY when present."),
    Parameter("X-Webhook-Id", "header", str, required=False, description="The same on every retry of a delivery."),
    Parameter("X-Webhook-Attempt", "header", str, required=False, description="1, 2 or 3; logged."),
    Parameter("Content-Encoding", "header", Literal["gzip", "x-gzip"], required=False,
              description="`gzip`: the body is inflated, within MAX_BODY_BYTES, before its signature is checked."),
)
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")

ROUTES = (
    Route("POST", "/generate-token", "generate_token", "tokens", TokenAnswer, TokenRequest,
          errors=(400, 401, 403, 413), security=("sessionJwt",), body_required=False),  # not with a session JWT
    Route("POST", "/channel", "sync_channel", "mirror", ChannelAnswer, ChannelRequest,
          errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("POST", "/message", "sync_message", "mirror", MessageAnswer, MessageRequest,
          errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("PUT", "/message/{message_id}", "update_message", "mirror", UpdatedMessage, MessageUpdateRequest,
          (MESSAGE_ID,), errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("DELETE", "/message/{message_id}", "delete_message", "mirror", Deleted, None,
          (MESSAGE_ID, HARD), errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("PUT", "/channel/{channel_type}/{channel_id}", "update_channel", "mirror", UpdatedChannel,
          ChannelUpdateRequest, (Parameter("channel_type", "path", ChannelType), Parameter("channel_id", "path", ChannelId)),
          errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("DELETE", "/channel/{channel_type}/{channel_id}", "delete_channel", "mirror", Deleted, None,
          (Parameter("channel_type", "path", ChannelType), Parameter("channel_id", "path", ChannelId), HARD),
          errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("DELETE", "/user/{user_id}", "delete_user", "mirror", Deleted, None,
          (Parameter("user_id", "path", UserId), HARD), errors=STREAM_ERRORS + (401,), security=SYNC_TOKEN),
    Route("POST", "/stream-incoming-wh", "stream_webhook", "webhook", WebhookAnswer, WebhookEvent,
          WEBHOOK_HEADERS, errors=(400, 401, 403, 413, 503)),
    Route("GET", "/healthz", "healthz", "service", Health),
    Route("GET", "/openapi.json", "openapi", "service"),
    Route("GET", "/docs", "docs", "service", media_types=("text/html",)),
    Route("GET", "/docs/{asset}", "docs_asset", "service",
          parameters=(Parameter("asset", "path", Literal[DOCS_ASSETS]),), errors=(404,),
          media_types=("text/css", "text/javascript", "application/javascript", "image/png")),
)


def openapi_document(descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ROUTES`, with the models' JSON Schemas as components.
    `descriptions`: view name -> its docstring (the first line is the summary)."""
    descriptions = descriptions or {}
    described = {model for route in ROUTES for model in (route.body, route.answer) if model} | {Error}
    _, schemas = models_json_schema([(model, "validation") for model in sorted(described, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, descriptions.get(route.view, ""))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Stream Chat backend", "version": "1.0.0",
                 "description": "User tokens, a dual-write mirror of a primary chat system into Stream Chat, "
                                "and Stream's webhook. Every answer is JSON and carries `X-Request-Id`; "
                                "every error is `{\"error\", \"field\"?}`."},
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": description} for name, description in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": SECURITY_SCHEMES,
            "headers": {"X-Request-Id": {"description": "This request's id, also in the access log.",
                                         "schema": {"type": "string"}}},
        },
    }


def _operation(route: Route, docstring: str) -> dict[str, Any]:
    summary, _, description = docstring.partition("\n")
    request_id = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    answer = {"schema": _ref(route.answer)} if route.answer else {}
    responses = {"200": {"description": "OK", "headers": request_id,
                         "content": {media_type: answer for media_type in route.media_types}}}
    for status in sorted(route.errors):
        responses[str(status)] = {"description": ERRORS[status], "headers": request_id,
                                  "content": {"application/json": {"schema": _ref(Error)}}}
    operation = {"operationId": route.view, "tags": [route.tag], "summary": summary.strip(),
                 "description": description.strip(), "responses": responses}
    if route.parameters:
        operation["parameters"] = [_parameter(parameter) for parameter in route.parameters]
    if route.body:
        operation["requestBody"] = {"required": route.body_required,
                                    "content": {"application/json": {"schema": _ref(route.body)}}}
    if route.security:
        # Optional: each scheme is required only when the service's settings turn it on.
        operation["security"] = [{name: []} for name in route.security] + [{}]
    return operation


def _parameter(parameter: Parameter) -> dict[str, Any]:
    schema = TypeAdapter(parameter.kind).json_schema()
    return {"name": parameter.name, "in": parameter.where, "required": parameter.required,
            "description": parameter.description or schema.pop("description", ""), "schema": schema}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}
