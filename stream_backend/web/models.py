"""What the web routes take and answer beyond the mirror's bodies (mirror/bodies.py): the token
request, the answers' models (described in the OpenAPI document, not validated), and the path,
query and header parameters the routes declare."""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_backend.mirror.bodies import VersionField, may_be_left_out
from stream_backend.validation import ChannelId, ChannelType, Flag, MessageId, UserId


class TokenRequest(BaseModel):
    """`POST /generate-token`. With TOKEN_AUTH=jwt the body may be left out."""

    user_id: UserId


class WebhookEvent(BaseModel):
    """One of Stream's webhook events (https://getstream.io/chat/docs/python/webhooks_overview/)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["message.new"])


# --- Answers (described, not validated) ----------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class TokenAnswer(Answer):
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

    cid: str
    channel: dict[str, Any]


class MessageAnswer(StaleParts):
    """Stream's message, and the channel's `cid`; of a stale message, only its id."""

    message: dict[str, Any]
    cid: str


class UpdatedMessage(StaleParts):
    """The updated message; of a stale update, only its id."""

    message: dict[str, Any]


class UpdatedChannel(StaleParts):
    """The channel after the update; of a stale channel, only its ids (no members)."""

    channel: dict[str, Any]
    members: list[str] = may_be_left_out(description="The member ids, after the update.")
    added: list[str] = may_be_left_out()
    removed: list[str] = may_be_left_out()


class Deleted(StaleParts):
    """Stream's answer; with `already_deleted: true` when Stream no longer had it."""

    already_deleted: bool = may_be_left_out()


class WebhookAnswer(Answer):
    received: str = Field(description="The event's type.")
    outcome: Literal["forwarded", "logged", "echo", "duplicate", "stale", "ignored"]


class Health(Answer):
    status: Literal["ok"]


class Error(Answer):
    """Every failure: what went wrong, and for an invalid request the field."""

    error: str = Field(examples=["members.thierry.name: must be a string"])
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


MESSAGE_ID = Parameter("message_id", "path", MessageId)
CHANNEL = (Parameter("channel_type", "path", ChannelType), Parameter("channel_id", "path", ChannelId))
USER_ID = Parameter("user_id", "path", UserId)
HARD = Parameter("hard", "query", Flag, required=False, description="Delete for good.")
VERSION = Parameter(
    "version",
    "query",
    VersionField,
    required=False,
    description="The primary's version of the object at its delete: a tombstone, so that a create or update "
    "as old or older changes nothing (in a URL, write a timestamp's `+` as `%2B`).",
)
WEBHOOK_HEADERS = (
    Parameter("X-Signature", "header", str, description="Hex HMAC-SHA256 of the (inflated) body with the API secret."),
    Parameter("X-Api-Key", "header", str, required=False, description="Checked against STREAM_API_KEY when present."),
    Parameter("X-Webhook-Id", "header", str, required=False, description="The same on every retry of a delivery."),
    Parameter("X-Webhook-Attempt", "header", str, required=False, description="1, 2 or 3; logged."),
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
