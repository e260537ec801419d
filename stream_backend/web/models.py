"""What the web routes take and answer beyond the mirror's bodies (mirror/bodies.py): the token
request, the answers' models (described in the OpenAPI document, not validated), and the path,
query and header parameters the routes declare. Each model's first example is the one the
document shows for its body or answer (web/openapi.py), so that importers and /docs send and
show real ones."""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_backend.mirror.bodies import VersionField, may_be_left_out
from stream_backend.validation import ChannelId, ChannelType, Flag, MessageId, UserId


def examples(*values: Any) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": list(values)})


class TokenRequest(BaseModel):
    """`POST /generate-token`. With TOKEN_AUTH=jwt the body may be left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "tommaso"}]})
    user_id: UserId


class WebhookEvent(BaseModel):
    """One of Stream's webhook events (https://getstream.io/chat/docs/python/webhooks_overview/)."""

    model_config = examples(
        {
            "type": "message.new",
            "cid": "messaging:fun",
            "channel_type": "messaging",
            "channel_id": "fun",
            "message": {"id": "m-1", "text": "hi", "type": "regular", "user": {"id": "thierry"}},
            "user": {"id": "thierry"},
            "created_at": "2026-11-28T10:00:00.000000Z",
        }
    )
    type: str = Field(examples=["message.new"])


# --- Answers (described, not validated) ----------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


CHANNEL_STATE = {
    "id": "general",
    "type": "messaging",
    "cid": "messaging:general",
    "created_by": {"id": "tommaso"},
    "title": "General",
}


class TokenAnswer(Answer):
    model_config = examples({"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoidG9tbWFzbyJ9.c2lnbmF0dXJl"})
    token: str = Field(description="A Stream user token (JWT), valid for TOKEN_TTL_SECONDS.")


class StaleParts(Answer):
    """A versioned write's answer: when some of its objects were stale, which."""

    stale: Literal[True] = may_be_left_out(
        description="Some of the objects this write carries were not written: a newer version of each "
        "(or a delete as new) was applied before. Absent when every object was written."
    )
    stale_objects: list[str] = may_be_left_out(
        description="The objects left unwritten: `user:<id>`, `channel:<type>:<id>`, `message:<id>`.",
        examples=[["user:tommaso"]],
    )


class ChannelAnswer(StaleParts):
    """Stream's channel state, and the channel's `cid`; of a stale channel, only its ids."""

    model_config = examples(
        {
            "cid": "messaging:general",
            "channel": CHANNEL_STATE,
            "members": [{"user_id": "thierry"}, {"user_id": "tommaso"}],
            "messages": [],
        }
    )
    cid: str
    channel: dict[str, Any]


MESSAGE = {"id": "123-456-789-01234", "text": "hello there!", "type": "regular", "user": {"id": "tommaso"}}


class MessageAnswer(StaleParts):
    """Stream's message, and the channel's `cid`; of a stale message, only its id."""

    model_config = examples(
        {"message": MESSAGE, "cid": "messaging:!members-jkE22mnWM5tjzHPBurvjoVz0spuz4FULak93veyK0lY"}
    )
    message: dict[str, Any]
    cid: str


class UpdatedMessage(StaleParts):
    """The updated message; of a stale update, only its id."""

    model_config = examples({"message": {**MESSAGE, "text": "hello again!", "mood": "calm"}})
    message: dict[str, Any]


class UpdatedChannel(StaleParts):
    """The channel after the update; of a stale channel, only its ids (no members)."""

    model_config = examples(
        {
            "channel": {**CHANNEL_STATE, "title": "Renamed"},
            "members": ["ana", "tommaso"],
            "added": ["ana"],
            "removed": [],
        }
    )
    channel: dict[str, Any]
    members: list[str] = may_be_left_out(description="The member ids, after the update.")
    added: list[str] = may_be_left_out()
    removed: list[str] = may_be_left_out()


class Deleted(StaleParts):
    """Stream's answer; with `already_deleted: true` when Stream no longer had it."""

    model_config = examples({"message": {"id": "123-456-789-01234"}, "already_deleted": True})
    already_deleted: bool = may_be_left_out()


class WebhookAnswer(Answer):
    model_config = examples({"received": "message.new", "outcome": "queued"})
    received: str = Field(description="The event's type.")
    outcome: Literal["queued", "duplicate", "logged", "echo", "stale", "ignored"]


class Health(Answer):
    model_config = examples({"status": "ok"})
    status: Literal["ok"]


class Ready(Answer):
    model_config = examples({"status": "ready", "checks": {"store": "ok", "stream": "ok"}})
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="Each check's verdict: `ok`, or what is wrong.")


class Error(Answer):
    """Every failure: what went wrong, and for an invalid request the field."""

    error: str
    field: str = may_be_left_out(description="The invalid field's path, such as `members.thierry.name`.")
    api_error: str = may_be_left_out(description="Stream's own message.")
    stream_code: int | None = may_be_left_out(description="Stream's error code.")
    objects: list[str] = may_be_left_out(description="For a 503: the objects another request is writing.")


# --- Parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    where: Literal["path", "query", "header"]
    kind: Any  # a type such as validation.ChannelId
    required: bool = True
    description: str = ""
    example: str | None = None  # what the document shows, and importers send


MESSAGE_ID = Parameter("message_id", "path", MessageId, example="123-456-789-01234")
CHANNEL = (
    Parameter("channel_type", "path", ChannelType, example="messaging"),
    Parameter("channel_id", "path", ChannelId, example="general"),
)
USER_ID = Parameter("user_id", "path", UserId, example="ana")
HARD = Parameter("hard", "query", Flag, required=False, description="Delete for good.", example="true")
VERSION = Parameter(
    "version",
    "query",
    VersionField,
    required=False,
    description="The primary's version of the object at its delete: a tombstone, so that a create or update "
    "as old or older changes nothing (in a URL, write a timestamp's `+` as `%2B`).",
    example="3",
)
WEBHOOK_HEADERS = (
    Parameter(
        "X-Signature",
        "header",
        str,
        description="Hex HMAC-SHA256 of the (inflated) body with the API secret.",
        example="9b1f0d6c1e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b",
    ),
    Parameter(
        "X-Api-Key",
        "header",
        str,
        required=False,
        description="Checked against STREAM_API_KEY when present.",
        example="local-stand-in-key",  # make run's, without credentials
    ),
    Parameter(
        "X-Webhook-Id",
        "header",
        str,
        required=False,
        description="The same on every retry of a delivery.",
        example="5d4b8a2e-3c1f-4e6a-9b7d-2f0c8e1a6b3d",
    ),
    Parameter("X-Webhook-Attempt", "header", str, required=False, description="1, 2 or 3; logged.", example="1"),
    Parameter(
        "Content-Encoding",
        "header",
        Literal["gzip", "x-gzip"],
        required=False,
        description="`gzip`: the body is inflated, within MAX_BODY_BYTES, before its signature is checked.",
    ),
)
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
ASSET = Parameter("asset", "path", Literal[DOCS_ASSETS])
