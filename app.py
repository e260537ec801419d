"""A Stream Chat backend: user tokens, a dual-write mirror of a primary chat system, and
Stream's webhook.

    POST /generate-token      a Stream user token (JWT)
    POST /channel             upsert the members, get or create their channel
    POST /message             the same, then send the message (a retry answers the stored one)
    PUT    /message/<id>              update a message's text or custom fields
    DELETE /message/<id>              delete a message (?hard=true), repeatable
    PUT    /channel/<type>/<id>       set a channel's custom data, make its members exactly these
    DELETE /channel/<type>/<id>       delete a channel (?hard=true), repeatable
    DELETE /user/<id>                 delete a user (?hard=true: their messages too), repeatable
    POST /stream-incoming-wh  Stream's webhook, signature-checked
    GET  /healthz             liveness, without calling Stream
    GET  /openapi.json        this API's OpenAPI 3.1 document, built from models.py
    GET  /docs                its reference page (Swagger UI)

Every failure answers JSON `{"error": "..."}` with a status that says whose fault it is.
Commands (commands.py): `flask --app app backfill FILE` and `flask --app app verify FILE`.
Settings come from the environment (or `.env`); `.env.example` lists them all.
"""

import base64
import binascii
import functools
import hmac
import inspect
import ipaddress
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NoReturn
from urllib.parse import quote

import jwt
import requests
from dotenv import load_dotenv
import flask_swagger_ui
from flask import (Blueprint, Flask, abort, current_app, g, has_app_context, jsonify, render_template, request,
                   send_from_directory)
from flask_cors import CORS
from standardwebhooks import Webhook
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, Unauthorized
from werkzeug.middleware.proxy_fix import ProxyFix

import commands
import handover as handover_module
import models
import stream_errors
import webhook_body
from handover import DeliveryBusy, Handover, PrimarySyncFailed, deadline_session
from mirror import MembersAreFixed, MessageIdTaken, Mirror, derive_origin_key
from sync_state import RedisKeyValues, SQLiteKeyValues, SyncState
from webhook_store import RedisDeliveryStore, SQLiteDeliveryStore, StoreUnavailable

log = logging.getLogger("stream_backend")


# --- Settings ---------------------------------------------------------------------------

# Stream waits this long for each webhook attempt, then retries (stream-facts.md, "Webhooks").
STREAM_WEBHOOK_WAIT_SECONDS = 6
# A request to Stream may take STREAM_CHAT_TIMEOUT, and the slowest sync makes four in a row
# (a user deleted elsewhere: send, upsert, create, send): four must end well inside
# gunicorn's 30 s worker timeout.
MAX_STREAM_TIMEOUT_SECONDS = 6
# HS256 keys and shared tokens shorter than the hash are guessable (RFC 7518, section 3.2).
MIN_SECRET_LENGTH = 32
# How long the mirror trusts what it believes Stream holds (sync_state.py): the longest a
# divergence no webhook told us about can last; past it, a channel's next message pays the
# full path once (two more calls). 0 turns the state off.
DEFAULT_SYNC_STATE_TTL_SECONDS = 300
# Standard Webhooks secrets are 24 to 64 random bytes, base64 after `whsec_`.
MIN_SYNC_SECRET_BYTES = 24
# The project folder: default paths are inside it, whatever the working directory.
ROOT = Path(__file__).resolve().parent


class SettingsError(Exception):
    """One or more settings are missing or malformed; the process must not start."""


@dataclass(frozen=True)
class Settings:
    stream_api_key: str
    stream_api_secret: str
    stream_chat_url: str | None  # None: the SDK's default, Stream's own API
    stream_timeout: float
    token_auth: str  # "open" or "jwt"
    auth_jwt_secret: str | None
    auth_jwt_audience: str | None
    auth_jwt_issuer: str | None
    sync_api_token: str | None  # set: the sync routes need it as a bearer token
    token_ttl_seconds: int
    cors_origins: str | list[str]
    max_body_bytes: int
    sync_state_ttl_seconds: int
    http_pool_size: int
    primary_sync_url: str | None  # None: accepted webhook events are logged, not forwarded
    primary_sync_timeout: float
    webhook_db: str
    redis_url: str | None  # set: webhook deliveries are deduplicated in Redis, not SQLite
    primary_sync_secret: str | None  # set: hand-overs are signed the Standard Webhooks way
    webhook_allowed_ips: "Networks | None"  # who may call the webhook; None: anyone
    trusted_proxy_count: int  # proxies whose X-Forwarded-For is believed; 0: none

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        problems = []
        missing = [name for name in ("STREAM_API_KEY", "STREAM_API_SECRET") if not environ.get(name)]
        if missing:
            problems.append(f"{' and '.join(missing)} must be set (your app's keys, from Stream's dashboard)")

        def number(name: str, default: float, kind: type, minimum: float = 0, strict: bool = True) -> Any:
            raw = environ.get(name) or str(default)
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or value < minimum or (strict and value == minimum):
                adjective = "positive" if strict else "non-negative"
                problems.append(f"{name} must be a {adjective} {kind.__name__}, not {raw!r}")
            return value

        # The SDK's own default is 6 s; it also reads STREAM_CHAT_TIMEOUT and STREAM_CHAT_URL
        # itself, so these names keep one meaning whoever reads them.
        settings = cls(
            stream_api_key=environ.get("STREAM_API_KEY", ""),
            stream_api_secret=environ.get("STREAM_API_SECRET", ""),
            stream_chat_url=environ.get("STREAM_CHAT_URL") or None,
            stream_timeout=number("STREAM_CHAT_TIMEOUT", 6.0, float),
            token_auth=environ.get("TOKEN_AUTH", ""),
            auth_jwt_secret=environ.get("AUTH_JWT_SECRET") or None,
            auth_jwt_audience=environ.get("AUTH_JWT_AUDIENCE") or None,
            auth_jwt_issuer=environ.get("AUTH_JWT_ISSUER") or None,
            sync_api_token=environ.get("SYNC_API_TOKEN") or None,
            token_ttl_seconds=number("TOKEN_TTL_SECONDS", 3600, int),
            cors_origins=_origins(environ.get("CORS_ORIGINS", "*")),
            max_body_bytes=number("MAX_BODY_BYTES", 1024 * 1024, int),
            sync_state_ttl_seconds=number("SYNC_STATE_TTL_SECONDS", DEFAULT_SYNC_STATE_TTL_SECONDS, int,
                                          strict=False),
            # The Procfile runs WEB_THREADS threads a worker: one pooled connection each.
            http_pool_size=number("WEB_THREADS", 8, int),
            primary_sync_url=environ.get("PRIMARY_SYNC_URL") or None,
            primary_sync_timeout=number("PRIMARY_SYNC_TIMEOUT", 4.0, float),
            webhook_db=environ.get("WEBHOOK_DB") or str(ROOT / "var" / "webhooks.sqlite3"),
            redis_url=environ.get("REDIS_URL") or None,
            primary_sync_secret=environ.get("PRIMARY_SYNC_SECRET") or None,
            webhook_allowed_ips=_networks(environ.get("WEBHOOK_ALLOWED_IPS", ""), problems),
            trusted_proxy_count=number("TRUSTED_PROXY_COUNT", 0, int, strict=False),
        )
        problems.extend(settings.problems())
        if problems:
            raise SettingsError("; ".join(problems) + ". See .env.example for every setting.")
        return settings

    def problems(self) -> list[str]:
        """What is wrong in how the settings go together."""
        problems = []
        if self.token_auth not in ("open", "jwt"):
            problems.append("TOKEN_AUTH must be set: 'jwt' (a token only for the user of the caller's "
                            "own session JWT) or 'open' (a token for any user, to anyone: workshops only)")
        if self.token_auth == "jwt":
            if not self.auth_jwt_secret or len(self.auth_jwt_secret) < MIN_SECRET_LENGTH:
                problems.append(f"AUTH_JWT_SECRET must be set, at least {MIN_SECRET_LENGTH} characters, "
                                "with TOKEN_AUTH=jwt: the key your app signs its session JWTs with (HS256)")
            if not self.sync_api_token:
                problems.append("SYNC_API_TOKEN must be set with TOKEN_AUTH=jwt: the sync routes must not be open")
            if not self.primary_sync_secret:
                problems.append("PRIMARY_SYNC_SECRET must be set with TOKEN_AUTH=jwt: the primary system "
                                "must be able to tell our hand-overs from anyone's POST")
        if self.primary_sync_secret and _sync_secret_bytes(self.primary_sync_secret) < MIN_SYNC_SECRET_BYTES:
            problems.append(f"PRIMARY_SYNC_SECRET must be 'whsec_' and the base64 of at least "
                            f"{MIN_SYNC_SECRET_BYTES} random bytes (python3 -c 'import base64, secrets; "
                            "print(\"whsec_\" + base64.b64encode(secrets.token_bytes(32)).decode())')")
        if self.sync_api_token and len(self.sync_api_token) < MIN_SECRET_LENGTH:
            problems.append(f"SYNC_API_TOKEN must be at least {MIN_SECRET_LENGTH} characters "
                            "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.stream_timeout and self.stream_timeout > MAX_STREAM_TIMEOUT_SECONDS:
            problems.append(f"STREAM_CHAT_TIMEOUT must be at most {MAX_STREAM_TIMEOUT_SECONDS} s, "
                            "so that a sync ends inside gunicorn's 30 s worker timeout")
        if self.primary_sync_url and not self.primary_sync_url.startswith(("http://", "https://")):
            problems.append("PRIMARY_SYNC_URL must be an http:// or https:// URL")
        # The hand-over and our answer must fit inside the time Stream waits for a webhook.
        if self.primary_sync_timeout and self.primary_sync_timeout > STREAM_WEBHOOK_WAIT_SECONDS - 1:
            problems.append(f"PRIMARY_SYNC_TIMEOUT must be at most {STREAM_WEBHOOK_WAIT_SECONDS - 1} s, "
                            f"inside the {STREAM_WEBHOOK_WAIT_SECONDS} s Stream waits for a webhook answer")
        return problems


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _networks(raw: str, problems: list[str]) -> Networks | None:
    """A comma-separated list of addresses and CIDR ranges (`203.0.113.7, 2001:db8::/32`), or
    None when it is empty: then any address may call."""
    networks = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as error:
            problems.append(f"WEBHOOK_ALLOWED_IPS: {error}")
    return tuple(networks) or None


def _sync_secret_bytes(secret: str) -> int:
    """How many bytes a `whsec_<base64>` secret holds; 0 when it is not one."""
    if not secret.startswith("whsec_"):
        return 0
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except binascii.Error:
        return 0


def _origins(raw: str) -> str | list[str]:
    """`*`, or a comma-separated list of origins such as `https://app.example.com`."""
    origins = [origin.strip() for origin in raw.split(",") if origin.strip()]
    return "*" if origins in ([], ["*"]) else origins


# --- The Stream client ------------------------------------------------------------------

# Tokens are issued a few seconds in the past: Stream refuses a token whose `iat` is in the
# future (code 42), and servers' clocks drift. `iat` is kept because Stream's token
# revocation (`revoke_tokens_issued_before`) compares against it.
TOKEN_IAT_LEEWAY_SECONDS = 5


def build_stream_client(settings: Settings) -> StreamChat:
    """One client per process, with an explicit timeout and our own HTTP session."""
    options = {"base_url": settings.stream_chat_url} if settings.stream_chat_url else {}
    client = StreamChat(settings.stream_api_key, settings.stream_api_secret,
                        timeout=settings.stream_timeout, **options)
    session = requests.Session()
    # Proxy settings are read from the environment once, here, rather than with ~/.netrc on
    # every request: under load that per-request lookup cost more than the JSON work.
    session.proxies = requests.utils.getproxies()
    session.trust_env = False
    # As the SDK's own session, retry a failed connection once, never a sent request; but
    # keep a connection per thread: the default pool of 10 would reconnect under load.
    adapter = requests.adapters.HTTPAdapter(max_retries=1, pool_maxsize=settings.http_pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(_remember_rate_limit_reset)
    client.set_http_session(session)
    return client


def _remember_rate_limit_reset(response: requests.Response, **_: Any) -> None:
    """Keep Stream's `X-RateLimit-Reset` of a 429 for the error handler: the SDK's
    exception carries the status and body, not the headers."""
    if response.status_code == 429 and has_app_context():
        g.stream_rate_limit_reset = response.headers.get("X-RateLimit-Reset")


def stream() -> StreamChat:
    return current_app.extensions["stream_chat"]


def mirror() -> Mirror:
    return current_app.extensions["mirror"]


def settings() -> Settings:
    return current_app.config["SETTINGS"]


# --- The webhook's delivery store and the primary system --------------------------------

# How long a handed-over delivery id is remembered: Stream retries within 15 s; a day also
# covers a redelivery by hand, and lets the entries expire so the store stays bounded.
DELIVERY_MEMORY_SECONDS = 24 * 3600
# Events older than this (by their `created_at`) are acknowledged and not handed over: far
# past Stream's 15 s of retries, so a replay. Well inside DELIVERY_MEMORY_SECONDS, so that a
# replayed body is either remembered or stale.
MAX_EVENT_AGE_SECONDS = 3600


def open_delivery_store(settings: Settings):
    # A claim outlives the hand-over's deadline (the timeout, for the whole exchange) by a
    # little: two copies of a delivery are never in flight at once.
    claim_seconds = settings.primary_sync_timeout + 2
    if settings.redis_url:
        return RedisDeliveryStore(settings.redis_url, claim_seconds, DELIVERY_MEMORY_SECONDS)
    return SQLiteDeliveryStore(settings.webhook_db, claim_seconds, DELIVERY_MEMORY_SECONDS)


def open_sync_state(settings: Settings) -> SyncState:
    """The mirror's state, in the same store as the webhook claims."""
    store = RedisKeyValues(settings.redis_url) if settings.redis_url else SQLiteKeyValues(settings.webhook_db)
    return SyncState(store, settings.sync_state_ttl_seconds)


def build_handover(settings: Settings, origin_key: bytes) -> Handover:
    signer = Webhook(settings.primary_sync_secret) if settings.primary_sync_secret else None
    return Handover(open_delivery_store(settings), deadline_session(), settings.primary_sync_url,
                    settings.primary_sync_timeout, origin_key, signer, MAX_EVENT_AGE_SECONDS)


def handover() -> Handover:
    return current_app.extensions["handover"]


# --- Helpers ----------------------------------------------------------------------------

def json_body() -> dict[str, Any]:
    """The request body as a JSON object, whatever its Content-Type says (models.parse_body)."""
    return models.parse_body(request.get_data())


def hard_flag() -> bool:
    """`?hard=true` (or false, 1, 0); absent is false."""
    flag = request.args.get("hard")
    return flag is not None and models.validated(models.Flag, flag, "hard")


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str) -> NoReturn:
    raise Unauthorized(message, www_authenticate=WWWAuthenticate("bearer"))


def session_user() -> str:
    """The user of the caller's session JWT (TOKEN_AUTH=jwt): its `sub` claim.

    The JWT is the app's own, HS256 with AUTH_JWT_SECRET, and must carry `sub` and `exp`;
    `aud` and `iss` are checked when AUTH_JWT_AUDIENCE and AUTH_JWT_ISSUER are set, and a JWT
    with an `aud` is refused when AUTH_JWT_AUDIENCE is not: it was meant for another service.
    """
    token = bearer_token()
    if token is None:
        unauthorized("An Authorization: Bearer <session JWT> header is required.")
    config = settings()
    try:
        claims = jwt.decode(token, config.auth_jwt_secret, algorithms=["HS256"],
                            audience=config.auth_jwt_audience, issuer=config.auth_jwt_issuer,
                            leeway=TOKEN_IAT_LEEWAY_SECONDS, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        unauthorized("The session JWT has expired.")
    except jwt.InvalidTokenError as error:
        unauthorized(f"The session JWT is not valid: {error}.")
    try:
        return models.validated(models.UserId, claims["sub"], "sub")
    except models.InvalidRequest:
        abort(403, description="The session JWT's sub is not a Stream user id.")


def requires_sync_token(view):
    """With SYNC_API_TOKEN set, the route needs `Authorization: Bearer <SYNC_API_TOKEN>`."""
    @functools.wraps(view)
    def guarded(**kwargs):
        expected = settings().sync_api_token
        if expected is not None:
            given = bearer_token()
            if given is None:
                unauthorized("An Authorization: Bearer <SYNC_API_TOKEN> header is required.")
            if not hmac.compare_digest(given.encode(), expected.encode()):  # constant-time
                unauthorized("The bearer token is not this service's SYNC_API_TOKEN.")
        return view(**kwargs)
    return guarded


def error_response(status: int, message: str, **extra: Any):
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


# --- Routes -----------------------------------------------------------------------------

routes = Blueprint("stream_backend", __name__)


@routes.get("/healthz")
def healthz():
    """200 `{"status": "ok"}` while the process serves requests. Stream is not called."""
    return {"status": "ok"}


@routes.post("/generate-token")
def generate_token():
    """Issue a Stream user token.

    Request: `{"user_id": "tommaso"}`. Response: 200 `{"token": "<JWT>"}` on one line, the
    token valid for TOKEN_TTL_SECONDS. 400 when `user_id` is not a valid Stream user id.
    With TOKEN_AUTH=jwt, the caller sends `Authorization: Bearer <session JWT>` and gets a
    token for its `sub` only: 401 without a valid bearer, 403 for another `user_id`; the body
    and its `user_id` may be left out. The token is signed locally: Stream is not called.
    """
    if settings().token_auth == "jwt":
        # https://getstream.io/chat/docs/python/tokens_and_authentication/: authenticate the
        # caller before issuing a token.
        user_id = session_user()
        body = json_body() if request.get_data() else {}
        if body.get("user_id") is not None and models.validated(models.TokenRequest, body).user_id != user_id:
            abort(403, description="user_id is not the user of the session JWT.")
    else:
        user_id = models.validated(models.TokenRequest, json_body()).user_id
    now = int(time.time())
    token = stream().create_token(user_id, exp=now + settings().token_ttl_seconds,
                                  iat=now - TOKEN_IAT_LEEWAY_SECONDS)
    return {"token": token}


@routes.post("/channel")
@requires_sync_token
def sync_channel():
    """Mirror a channel into Stream: upsert its members, get or create their channel.

    Request: `{"channel": {"creator_id", "custom_data", "type", "id"}, "members": {"<id>":
    {"name", "image"}}}`; `type` defaults to `messaging`; without `id`, the channel is the
    distinct channel of its members. Repeating it changes nothing.
    Response: 200 with Stream's channel state (`channel`, `members`, ...) and its `cid`.
    Errors: 400 for an invalid body; Stream's 4xx pass through, other Stream failures are 502/504.
    """
    sync = models.validated(models.ChannelRequest, json_body()).sync()
    channel, state = mirror().sync_channel(sync)
    return {**state, "cid": channel.cid}


@routes.post("/message")
@requires_sync_token
def sync_message():
    """Mirror a message into Stream: the `/channel` work, then send the message.

    Request: the `/channel` body plus `"message": {"id", "text"}` and
    `"user": {"id", "name", "image"}` (the sender).
    Response: 200 `{"message": {...}, "cid"}`; a retry with an id Stream already has answers
    the stored message. Errors as for `/channel`.
    """
    sync = models.validated(models.MessageRequest, json_body()).sync()
    channel, sent = mirror().sync_message(sync)
    return {**sent, "cid": channel.cid}


@routes.put("/message/<message_id>")
@requires_sync_token
def update_message(message_id: str):
    """Set some fields of a message: a partial update.

    Request: `{"message": {"text": "...", ...custom fields}, "user": {"id": "..."}}`.
    Response: 200 `{"message": {...}}`, the updated message. 404 for an unknown id.
    """
    message_id = models.validated(models.MessageId, message_id, "message id")
    update = models.validated(models.MessageUpdateRequest, json_body()).update()
    return mirror().update_message(message_id, update.fields, update.user_id)


@routes.delete("/message/<message_id>")
@requires_sync_token
def delete_message(message_id: str):
    """Delete a message: soft, or hard with `?hard=true`.

    Response: 200 `{"message": {...}}`; 200 with `"already_deleted": true` when Stream no longer
    has it, so a retried delete succeeds.
    """
    message_id = models.validated(models.MessageId, message_id, "message id")
    hard = hard_flag()
    return mirror().delete_message(message_id, hard)


@routes.put("/channel/<channel_type>/<channel_id>")
@requires_sync_token
def update_channel(channel_type: str, channel_id: str):
    """Set a channel's custom data and, when given, make its members exactly these.

    Request: `{"custom_data": {"title": "New", "topic": null}, "members": {"<id>": {"name",
    "image"}}}`, either or both: fields not given are kept, a `null` field is removed; members
    missing in Stream are upserted and added, the others removed (100 a call). Repeatable.
    Response: 200 `{"channel": {...}, "members": [ids], "added": [...], "removed": [...]}`.
    Errors: 404 for a channel Stream does not have; 400 for an invalid body, or members for a
    distinct channel (its members define it).
    """
    channel_type = models.validated(models.ChannelType, channel_type, "channel type")
    channel_id = models.validated(models.ChannelId, channel_id, "channel id")
    update = models.validated(models.ChannelUpdateRequest, json_body()).update()
    return mirror().update_channel(channel_type, channel_id, update)


@routes.delete("/channel/<channel_type>/<channel_id>")
@requires_sync_token
def delete_channel(channel_type: str, channel_id: str):
    """Delete a channel: soft, or hard (its messages too) with `?hard=true`.

    Response: 200 with Stream's answer; 200 with `"already_deleted": true` when Stream no
    longer has it. A channel created again after a delete starts empty.
    """
    channel_type = models.validated(models.ChannelType, channel_type, "channel type")
    channel_id = models.validated(models.ChannelId, channel_id, "channel id")
    hard = hard_flag()
    return mirror().delete_channel(channel_type, channel_id, hard)


@routes.delete("/user/<user_id>")
@requires_sync_token
def delete_user(user_id: str):
    """Delete a user in Stream: soft (the record is kept, marked deleted), and with
    `?hard=true` their messages too.

    Response: 200 `{"user": {"id"}, "task_id"}` (Stream deletes the messages in a task); 200
    with `"already_deleted": true` when Stream no longer shows the user, so a retry succeeds.
    """
    user_id = models.validated(models.UserId, user_id, "user id")
    hard = hard_flag()
    return mirror().delete_user(user_id, hard)


@routes.get("/openapi.json")
def openapi():
    """This API's OpenAPI 3.1 document.

    Built from the request models and the route table in models.py, so its constraints are the
    ones the service enforces. Postman, Insomnia and client generators can import it.
    """
    return current_app.response_class(current_app.extensions["openapi"], mimetype="application/json")


# Swagger UI 5 (it renders OpenAPI 3.1), as the flask-swagger-ui package ships it: the page
# works offline, without a CDN.
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"


@routes.get("/docs")
def docs():
    """The API reference for people: Swagger UI rendering /openapi.json."""
    return render_template("docs.html")


@routes.get("/docs/<asset>")
def docs_asset(asset: str):
    """One of Swagger UI's files that /docs loads."""
    if asset not in models.DOCS_ASSETS:
        abort(404, description=f"No such asset: /docs/{asset}.")
    return send_from_directory(SWAGGER_UI, asset, max_age=24 * 3600)


@routes.post("/stream-incoming-wh")
def stream_webhook():
    """Receive one of Stream's webhook events and hand it to the primary system, once.

    Headers: `X-Signature` (HMAC-SHA256 of the body with the API secret, required),
    `X-Api-Key` (checked when present), `X-Webhook-Id` (the same on every retry).
    The body may be gzipped. https://getstream.io/chat/docs/python/webhooks_overview/
    Response: 200 `{"received": "<type>", "outcome": "forwarded" | "logged" | "echo" |
    "duplicate" | "stale" | "ignored"}`, only once the event is handed over (or was before).
    Errors: 403 for an address outside WEBHOOK_ALLOWED_IPS; 401 for a missing or wrong
    signature or another app's key; 413 for a body over MAX_BODY_BYTES, inflated or not; 400
    for a corrupt gzip body, or a signed body that is not a JSON object with a `type`; 503,
    which Stream retries, when the primary system did not take the event or another worker
    is handing it over.
    """
    if not webhook_caller_allowed():
        abort(403, description="This address may not call the webhook (WEBHOOK_ALLOWED_IPS).")
    body = request.get_data()  # first, so that an oversized body is a 413 whatever else is wrong
    api_key = request.headers.get("X-Api-Key")
    if api_key is not None and api_key != settings().stream_api_key:
        abort(401, description="X-Api-Key is not this app's API key.")
    signature = request.headers.get("X-Signature")
    if not signature:
        abort(401, description="The X-Signature header is missing.")
    signed = verified_webhook_body(body, signature)
    try:
        event = json.loads(signed)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        abort(400, description="The webhook body must be a JSON object with a 'type'.")

    webhook_id = request.headers.get("X-Webhook-Id") or None
    mirror().forget(event)  # what Stream changed is rewritten by the primary's next sync
    outcome = handover().handle_once(event, webhook_id, signed)
    log.info("webhook %s", json.dumps({
        "outcome": outcome,
        "type": event["type"],
        "cid": event.get("cid"),
        "message_id": handover_module.event_message(event).get("id"),
        "webhook_id": webhook_id,
        "attempt": request.headers.get("X-Webhook-Attempt"),
    }))
    return {"received": event["type"], "outcome": outcome}


def verified_webhook_body(body: bytes, signature: str) -> bytes:
    """The JSON Stream signed: a gzip body inflated, within MAX_BODY_BYTES, before its
    signature is checked (webhook_body.py). Werkzeug and gunicorn pass a `Content-Encoding:
    gzip` body through as it came: nothing inflates it before this."""
    config = settings()
    try:
        signed = webhook_body.signed_json(body, request.headers.get("Content-Encoding"), signature,
                                          config.stream_api_secret, config.max_body_bytes)
    except webhook_body.BodyTooLarge:
        raise RequestEntityTooLarge(f"The webhook body inflates to over MAX_BODY_BYTES "
                                    f"({config.max_body_bytes} bytes).") from None
    except webhook_body.CorruptBody as error:
        abort(400, description=f"The webhook body could not be read: {error}.")
    if signed is None:
        abort(401, description="X-Signature does not match the body.")
    return signed


def webhook_caller_allowed() -> bool:
    """Whether the caller's address is in WEBHOOK_ALLOWED_IPS (any address when it is unset).
    Behind TRUSTED_PROXY_COUNT proxies, ProxyFix has put the address they saw in remote_addr."""
    allowed = settings().webhook_allowed_ips
    if allowed is None:
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:203.0.113.7 is IPv4
    return any(address in network for network in allowed)


# --- Errors: one place turns every failure into JSON -----------------------------------

# Stream's answers that are about the caller's request: passed through as they are, when
# they carry Stream's error body (a proxy's or a wrong URL's 404 is not Stream's). 401 and
# 403 are about our credentials or permissions, so they become a 502 like any other failure.
PASSED_THROUGH_STREAM_STATUSES = {400, 404, 409, 413, 429}


@routes.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Flask's own errors (400, 404, 405, 413, 415, ...) as JSON, keeping their headers."""
    response = error.get_response()
    response.data = json.dumps({"error": error.description})
    response.content_type = "application/json"
    return response


@routes.app_errorhandler(models.InvalidRequest)
def invalid_request(error: models.InvalidRequest):
    return error_response(400, str(error), field=error.field)


@routes.app_errorhandler(MessageIdTaken)
def message_id_taken(error: MessageIdTaken):
    log.warning("message id conflict: %s", error)
    return error_response(409, f"Conflict: {error}.", message_id=error.message_id, cid=error.cid)


@routes.app_errorhandler(MembersAreFixed)
def members_are_fixed(error: MembersAreFixed):
    return error_response(400, f"members: {error}.", field="members")


@routes.app_errorhandler(StreamAPIException)
def stream_error(error: StreamAPIException):
    status = error.status_code
    stream_message = stream_errors.message_of(error)
    details = {"api_error": stream_message, "stream_code": stream_errors.code_of(error)}
    if status in PASSED_THROUGH_STREAM_STATUSES and stream_errors.is_streams_own(error):
        response = error_response(status, f"Stream refused the request: {stream_message}", **details)
        retry_after = _seconds_until(g.get("stream_rate_limit_reset")) if status == 429 else None
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response
    if status in (401, 403):
        problem = "Stream refused this service's credentials or permissions"
    else:
        problem = f"Stream failed with HTTP {status}"
    log.warning("%s: %s", problem, loggable(stream_message))  # Stream may echo client text
    return error_response(502, problem, **details)


def _seconds_until(epoch_seconds: str | None) -> int | None:
    """Whole seconds from now until an `X-RateLimit-Reset` epoch, or None if unreadable."""
    try:
        return max(0, math.ceil(float(epoch_seconds) - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None


@routes.app_errorhandler(PrimarySyncFailed)
def primary_sync_failed(error: PrimarySyncFailed):
    log.warning("webhook not handed over: %s", error)
    return error_response(503, f"The event was not handed over: {error}; Stream will retry.")


@routes.app_errorhandler(DeliveryBusy)
def delivery_busy(error: DeliveryBusy):
    response = error_response(503, "Another worker is handling this delivery; retry later.")
    response.headers["Retry-After"] = "2"
    return response


@routes.app_errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable):
    log.warning("webhook delivery store unavailable: %s", error)
    return error_response(503, "The webhook delivery store is unavailable; Stream will retry.")


@routes.app_errorhandler(requests.Timeout)
def stream_timeout(error: requests.Timeout):
    log.warning("Stream timed out: %s", error)
    return error_response(504, f"Stream did not answer within {settings().stream_timeout:g} s.")


@routes.app_errorhandler(requests.RequestException)
def stream_unreachable(error: requests.RequestException):
    log.warning("Stream unreachable: %s", error)
    return error_response(502, "Stream could not be reached.")


@routes.app_errorhandler(Exception)
def unexpected_error(error: Exception):
    """A bug of ours: logged with its traceback, answered without it."""
    log.exception("unhandled error")
    return error_response(500, "Internal error.")


# --- The application ----------------------------------------------------------------------

# The routes a browser calls, so the ones that answer CORS, and the API document (for web
# tools that import it). The webhook is not among them.
BROWSER_ROUTES = re.compile(r"/(generate-token|channel|message|user|openapi\.json)(/.*)?$")


# An incoming X-Request-Id is kept when it looks like one (a proxy's, a client's); otherwise
# the request gets a new one. Either way it is answered back and logged.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("stream_backend.access")


# Largest request body each route takes, sized to its real payloads; /channel, /message and
# the webhook take MAX_BODY_BYTES (members and events can be large). Over it: a 413.
ROUTE_BODY_CAPS = {
    "stream_backend.generate_token": 4 * 1024,  # {"user_id": up to 255 characters}
    "stream_backend.update_message": 64 * 1024,  # text and up to 5 KB of custom fields
    "stream_backend.delete_message": 1024,  # no body
    "stream_backend.delete_channel": 1024,
    "stream_backend.delete_user": 1024,
    "stream_backend.healthz": 1024,
    "stream_backend.openapi": 1024,
    "stream_backend.docs": 1024,
    "stream_backend.docs_asset": 1024,
}


def start_request() -> None:
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
    g.started = time.perf_counter()
    cap = ROUTE_BODY_CAPS.get(request.endpoint)
    if cap is not None:
        request.max_content_length = cap
        # Routes without a body never read it: refuse an oversized one up front.
        if (request.content_length or 0) > cap:
            raise RequestEntityTooLarge()


def log_access(response):
    """One line per request: method, path (never the query), status, duration, request id."""
    request_id = g.request_id
    response.headers["X-Request-Id"] = request_id
    access_log.info("%s %s %s %.1fms %s", loggable(request.method), loggable(request.path),
                    response.status_code, (time.perf_counter() - g.started) * 1000, request_id)
    return response


def loggable(text: str) -> str:
    """`text` as it would appear in a URL: percent-encoded, so that a client's `%0a` cannot
    start a forged log line, nor a space shift the fields."""
    return quote(text, safe="/!$&'()*+,;=:@~", errors="backslashreplace")


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app from `environ` (default: the process environment)."""
    app_settings = Settings.from_environ(os.environ if environ is None else environ)
    if app_settings.token_auth == "open":
        log.warning("TOKEN_AUTH=open: anyone can get a Stream token for any user. "
                    "For workshops and demos only; see README, 'Running in production'.")
    # No /static route: the service has no static files (the docs' assets have their route).
    app = Flask(__name__, static_folder=None)
    app.config.update(SETTINGS=app_settings, MAX_CONTENT_LENGTH=app_settings.max_body_bytes)
    # One JSON object per line, in debug mode too: the workshop's Android client reads the
    # token answer with readLine().
    app.json.compact = True
    app.extensions["stream_chat"] = build_stream_client(app_settings)
    origin_key = derive_origin_key(app_settings.stream_api_secret)
    app.extensions["handover"] = build_handover(app_settings, origin_key)
    app.extensions["mirror"] = Mirror(app.extensions["stream_chat"], open_sync_state(app_settings), origin_key)
    if app_settings.trusted_proxy_count:
        # The client's address as the nearest of those proxies saw it; the header is never
        # believed by default, since any client can send it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app_settings.trusted_proxy_count, x_proto=0)
    # "//" in a path is a 404 like any unknown path, not a redirect: Flask answers routing
    # redirects itself, in HTML, past every error handler.
    app.url_map.merge_slashes = False
    app.register_blueprint(routes)
    app.cli.add_command(commands.backfill)
    app.cli.add_command(commands.verify)
    # Serialized once, in the document's own order ("openapi" first), not sorted as jsonify would.
    app.extensions["openapi"] = json.dumps(models.openapi_document(
        {endpoint.rpartition(".")[2]: inspect.getdoc(view) for endpoint, view in app.view_functions.items()}))
    app.before_request(start_request)
    app.after_request(log_access)
    # allow_headers defaults to any, so a preflight for `Content-Type: application/json` passes.
    # X-Request-Id is exposed so that a browser app can read it and quote it in a bug report.
    CORS(app, resources={BROWSER_ROUTES: {"origins": app_settings.cors_origins}}, expose_headers=["X-Request-Id"])
    return app


class LineWriter(logging.Handler):
    """Writes each log line to stderr with a single write(2), and takes no lock: a line under
    4 KB is written whole (POSIX, PIPE_BUF) even when threads write at once.

    Measured with bench/run.py on the token route at 32 connections: with logging's
    StreamHandler, threads queued on its lock (a quarter of a worker's time, py-spy); with a
    QueueHandler, waking its writer thread for every line cost a fifth of the throughput.
    This writer costs nothing measurable.
    """

    def createLock(self) -> None:
        self.lock = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(2, (self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)


def configure_logging(level: str) -> None:
    """The service's log lines (access log included) go to stderr, one line each."""
    if level.upper() not in logging.getLevelNamesMapping():
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}. "
                            "See .env.example for every setting.")
    level = level.upper()
    writer = LineWriter()
    writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[writer])
    logging.getLogger("werkzeug").addFilter(skip_request_lines)


def skip_request_lines(record: logging.LogRecord) -> bool:
    """`flask run`'s server (werkzeug) logs every request at INFO, with the line's parts as
    arguments; our access log already has that line, with the request id. Its other lines
    (the address it serves on, errors) stay."""
    return not (record.levelno == logging.INFO and record.args)


load_dotenv()
try:
    configure_logging(os.environ.get("LOG_LEVEL") or "INFO")
    app = create_app()
except SettingsError as error:
    print(f"Cannot start: {error}", file=sys.stderr)
    # 3 is gunicorn's "worker failed to boot": it stops the server instead of retrying forever.
    sys.exit(3)
