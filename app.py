"""A Stream Chat backend: user tokens, a dual-write mirror of a primary chat system, and
Stream's webhook.

    POST   /generate-token            a Stream user token (JWT)
    POST   /channel                   upsert the members, get or create their channel
    POST   /message                   the same, then send the message (a retry answers the stored one)
    PUT    /message/<id>              update a message's text or custom fields
    DELETE /message/<id>              delete a message (?hard=true), repeatable
    PUT    /channel/<type>/<id>       set a channel's custom data, make its members exactly these
    DELETE /channel/<type>/<id>       delete a channel (?hard=true), repeatable
    DELETE /user/<id>                 delete a user (?hard=true: their messages too), repeatable
    POST   /stream-incoming-wh        Stream's webhook, signature-checked
    GET    /healthz                   liveness, without calling Stream
    GET    /openapi.json              this API's OpenAPI 3.1 document, built from the route table
    GET    /docs                      its reference page (Swagger UI)

Every failure answers JSON `{"error": "..."}` with a status that says whose fault it is.
Commands: `flask --app app backfill FILE` and `flask --app app verify FILE`.
Settings come from the environment (or `.env`); `.env.example` lists them all.

This module is the front door: `create_app` wires the pieces, and each route, declared once
with `@api.route(...)` (stream_backend/web/routing.py), validates its input, makes one call and
answers. Everything else is in the `stream_backend` package, which never imports this module:
mirror/ (primary -> Stream), handover/ (Stream -> primary), migration/ (backfill, verify),
stream/ (the client, Stream's rules), web/ (what only the HTTP service needs).
"""

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import flask_swagger_ui
from dotenv import load_dotenv
from flask import Flask, abort, current_app, render_template, request, send_from_directory
from flask_cors import CORS
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from stream_backend.errors import SettingsError
from stream_backend.handover import body as webhook_body
from stream_backend.handover.handover import Handover, build_handover, event_message
from stream_backend.mirror.bodies import (
    ChannelRequest,
    ChannelUpdateRequest,
    MessageRequest,
    MessageUpdateRequest,
    parse_channel,
    parse_channel_update,
    parse_message,
    parse_message_update,
)
from stream_backend.mirror.mirror import Mirror
from stream_backend.mirror.origin import derive_origin_key
from stream_backend.mirror.state import open_sync_state
from stream_backend.settings import Settings
from stream_backend.stream.client import StreamClient, build_client
from stream_backend.validation import ChannelId, ChannelType, Flag, MessageId, UserId, parse_json, validated
from stream_backend.web import commands, errors, hooks
from stream_backend.web.auth import TOKEN_IAT_LEEWAY_SECONDS, session_user
from stream_backend.web.logs import configure_logging
from stream_backend.web.models import (
    ASSET,
    CHANNEL,
    DOCS_ASSETS,
    HARD,
    MESSAGE_ID,
    USER_ID,
    WEBHOOK_HEADERS,
    ChannelAnswer,
    Deleted,
    Health,
    MessageAnswer,
    TokenAnswer,
    TokenRequest,
    UpdatedChannel,
    UpdatedMessage,
    WebhookAnswer,
    WebhookEvent,
)
from stream_backend.web.openapi import STREAM_ERRORS, openapi_document
from stream_backend.web.routing import RouteTable

api = RouteTable("stream_backend")
log = logging.getLogger("stream_backend")


# --- What each request reaches through the app --------------------------------------------


def stream() -> StreamClient:
    return current_app.extensions["stream_chat"]


def mirror() -> Mirror:
    return current_app.extensions["mirror"]


def handover() -> Handover:
    return current_app.extensions["handover"]


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def json_body() -> dict:
    """The request body as a JSON object, whatever its Content-Type says (validation.parse_json)."""
    return parse_json(request.get_data())


def hard_flag() -> bool:
    """`?hard=true` (or false, 1, 0); absent is false."""
    flag = request.args.get("hard")
    return flag is not None and validated(Flag, flag, "hard")


# --- Routes -------------------------------------------------------------------------------


@api.route("GET", "/healthz", tag="service", answer=Health)
def healthz():
    """200 `{"status": "ok"}` while the process serves requests. Stream is not called."""
    return {"status": "ok"}


@api.route(
    "POST",
    "/generate-token",
    tag="tokens",
    answer=TokenAnswer,
    body=TokenRequest,
    errors=(400, 401, 403, 413),
    auth="session",
    body_cap=4 * 1024,
    browser=True,
    body_required=False,
)  # not with a session JWT
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
        if body.get("user_id") is not None and validated(TokenRequest, body).user_id != user_id:
            abort(403, description="user_id is not the user of the session JWT.")
    else:
        user_id = validated(TokenRequest, json_body()).user_id
    now = int(time.time())
    token = stream().create_token(user_id, exp=now + settings().token_ttl_seconds, iat=now - TOKEN_IAT_LEEWAY_SECONDS)
    return {"token": token}


@api.route(
    "POST",
    "/channel",
    tag="mirror",
    answer=ChannelAnswer,
    body=ChannelRequest,
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def sync_channel():
    """Mirror a channel into Stream: upsert its members, get or create their channel.

    Request: `{"channel": {"creator_id", "custom_data", "type", "id"}, "members": {"<id>":
    {"name", "image"}}}`; `type` defaults to `messaging`; without `id`, the channel is the
    distinct channel of its members. Repeating it changes nothing.
    Response: 200 with Stream's channel state (`channel`, `members`, ...) and its `cid`.
    Errors: 400 for an invalid body; Stream's 4xx pass through, other Stream failures are 502/504.
    """
    channel, state = mirror().sync_channel(parse_channel(json_body()))
    return {**state, "cid": channel.cid}


@api.route(
    "POST",
    "/message",
    tag="mirror",
    answer=MessageAnswer,
    body=MessageRequest,
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def sync_message():
    """Mirror a message into Stream: the `/channel` work, then send the message.

    Request: the `/channel` body plus `"message": {"id", "text"}` and
    `"user": {"id", "name", "image"}` (the sender).
    Response: 200 `{"message": {...}, "cid"}`; a retry with an id Stream already has answers
    the stored message. Errors as for `/channel`.
    """
    channel, sent = mirror().sync_message(parse_message(json_body()))
    return {**sent, "cid": channel.cid}


@api.route(
    "PUT",
    "/message/{message_id}",
    tag="mirror",
    answer=UpdatedMessage,
    body=MessageUpdateRequest,
    parameters=(MESSAGE_ID,),
    errors=STREAM_ERRORS,
    auth="sync",
    body_cap=64 * 1024,
    browser=True,
)
def update_message(message_id: str):
    """Set some fields of a message: a partial update.

    Request: `{"message": {"text": "...", ...custom fields}, "user": {"id": "..."}}`.
    Response: 200 `{"message": {...}}`, the updated message. 404 for an unknown id.
    """
    message_id = validated(MessageId, message_id, "message id")
    update = parse_message_update(json_body())
    return mirror().update_message(message_id, update.fields, update.user_id)


@api.route(
    "DELETE",
    "/message/{message_id}",
    tag="mirror",
    answer=Deleted,
    parameters=(MESSAGE_ID, HARD),
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def delete_message(message_id: str):
    """Delete a message: soft, or hard with `?hard=true`.

    Response: 200 `{"message": {...}}`; 200 with `"already_deleted": true` when Stream no longer
    has it, so a retried delete succeeds.
    """
    message_id = validated(MessageId, message_id, "message id")
    return mirror().delete_message(message_id, hard_flag())


@api.route(
    "PUT",
    "/channel/{channel_type}/{channel_id}",
    tag="mirror",
    answer=UpdatedChannel,
    body=ChannelUpdateRequest,
    parameters=CHANNEL,
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def update_channel(channel_type: str, channel_id: str):
    """Set a channel's custom data and, when given, make its members exactly these.

    Request: `{"custom_data": {"title": "New", "topic": null}, "members": {"<id>": {"name",
    "image"}}}`, either or both: fields not given are kept, a `null` field is removed; members
    missing in Stream are upserted and added, the others removed (100 a call). Repeatable.
    Response: 200 `{"channel": {...}, "members": [ids], "added": [...], "removed": [...]}`.
    Errors: 404 for a channel Stream does not have; 400 for an invalid body, or members for a
    distinct channel (its members define it).
    """
    channel_type = validated(ChannelType, channel_type, "channel type")
    channel_id = validated(ChannelId, channel_id, "channel id")
    return mirror().update_channel(channel_type, channel_id, parse_channel_update(json_body()))


@api.route(
    "DELETE",
    "/channel/{channel_type}/{channel_id}",
    tag="mirror",
    answer=Deleted,
    parameters=(*CHANNEL, HARD),
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def delete_channel(channel_type: str, channel_id: str):
    """Delete a channel: soft, or hard (its messages too) with `?hard=true`.

    Response: 200 with Stream's answer; 200 with `"already_deleted": true` when Stream no
    longer has it. A channel created again after a hard delete starts empty; after a soft one,
    Stream brings back its custom data and members, not its messages.
    """
    channel_type = validated(ChannelType, channel_type, "channel type")
    channel_id = validated(ChannelId, channel_id, "channel id")
    return mirror().delete_channel(channel_type, channel_id, hard_flag())


@api.route(
    "DELETE",
    "/user/{user_id}",
    tag="mirror",
    answer=Deleted,
    parameters=(USER_ID, HARD),
    errors=STREAM_ERRORS,
    auth="sync",
    browser=True,
)
def delete_user(user_id: str):
    """Delete a user in Stream: soft (the record is kept, marked deleted), and with
    `?hard=true` their messages too.

    Response: 200 `{"user": {"id"}, "task_id"}` (Stream deletes the messages in a task); 200
    with `"already_deleted": true` when Stream no longer shows the user, so a retry succeeds.
    """
    user_id = validated(UserId, user_id, "user id")
    return mirror().delete_user(user_id, hard_flag())


@api.route(
    "POST",
    "/stream-incoming-wh",
    tag="webhook",
    answer=WebhookAnswer,
    body=WebhookEvent,
    parameters=WEBHOOK_HEADERS,
    errors=(400, 401, 403, 413, 503),
)
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
    # Behind TRUSTED_PROXY_COUNT proxies, ProxyFix has put the address they saw in remote_addr.
    if not webhook_body.address_allowed(request.remote_addr, settings().webhook_allowed_ips):
        abort(403, description="This address may not call the webhook (WEBHOOK_ALLOWED_IPS).")
    body = request.get_data()  # first, so that an oversized body is a 413 whatever else is wrong
    api_key = request.headers.get("X-Api-Key")
    if api_key is not None and api_key != settings().stream_api_key:
        abort(401, description="X-Api-Key is not this app's API key.")
    signature = request.headers.get("X-Signature")
    if not signature:
        abort(401, description="The X-Signature header is missing.")
    signed = verified_webhook_body(body, signature)
    event = webhook_body.event_of(signed)
    if event is None:
        abort(400, description="The webhook body must be a JSON object with a 'type'.")

    webhook_id = request.headers.get("X-Webhook-Id") or None
    mirror().forget(event)  # what Stream changed is rewritten by the primary's next sync
    outcome = handover().handle_once(event, webhook_id, signed)
    log.info(
        "webhook %s",
        json.dumps(
            {
                "outcome": outcome,
                "type": event["type"],
                "cid": event.get("cid"),
                "message_id": event_message(event).get("id"),
                "webhook_id": webhook_id,
                "attempt": request.headers.get("X-Webhook-Attempt"),
            }
        ),
    )
    return {"received": event["type"], "outcome": outcome}


def verified_webhook_body(body: bytes, signature: str) -> bytes:
    """The JSON Stream signed: a gzip body inflated, within MAX_BODY_BYTES, before its
    signature is checked (handover/body.py). Werkzeug and gunicorn pass a `Content-Encoding:
    gzip` body through as it came: nothing inflates it before this."""
    config = settings()
    try:
        signed = webhook_body.signed_json(
            body, request.headers.get("Content-Encoding"), signature, config.stream_api_secret, config.max_body_bytes
        )
    except webhook_body.BodyTooLarge:
        raise RequestEntityTooLarge(
            f"The webhook body inflates to over MAX_BODY_BYTES ({config.max_body_bytes} bytes)."
        ) from None
    except webhook_body.CorruptBody as error:
        abort(400, description=f"The webhook body could not be read: {error}.")
    if signed is None:
        abort(401, description="X-Signature does not match the body.")
    return signed


@api.route("GET", "/openapi.json", tag="service", browser=True)
def openapi():
    """This API's OpenAPI 3.1 document.

    Built from the route table and the request models, so its constraints are the ones the
    service enforces. Postman, Insomnia and client generators can import it.
    """
    return current_app.response_class(current_app.extensions["openapi"], mimetype="application/json")


# Swagger UI 5 (it renders OpenAPI 3.1), as the flask-swagger-ui package ships it: the page
# works offline, without a CDN.
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"


@api.route("GET", "/docs", tag="service", media_types=("text/html",))
def docs():
    """The API reference for people: Swagger UI rendering /openapi.json."""
    return render_template("docs.html")


@api.route(
    "GET",
    "/docs/{asset}",
    tag="service",
    parameters=(ASSET,),
    errors=(404,),
    media_types=("text/css", "text/javascript", "application/javascript", "image/png"),
)
def docs_asset(asset: str):
    """One of Swagger UI's files that /docs loads."""
    if asset not in DOCS_ASSETS:
        abort(404, description=f"No such asset: /docs/{asset}.")
    return send_from_directory(SWAGGER_UI, asset, max_age=24 * 3600)


# --- The application ----------------------------------------------------------------------


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """The service, built from `environ`.

    Without one, as `flask run` and gunicorn call it: the process environment and `.env`; a
    setting missing or wrong prints `Cannot start: ...` and exits with status 3 (gunicorn's
    "worker failed to boot": it stops instead of restarting the worker forever). With one (a
    test, a host that embeds the service): that mapping only, and a bad setting raises
    SettingsError. As the flask tutorial's `create_app(test_config=None)`. When Flask's CLI
    calls it only to find a command (`flask --app app backfill ...`), it answers `command_app()`.
    """
    if environ is not None:
        return build_app(Settings.from_environ(environ))
    load_dotenv()
    if commands.finding_a_command():
        return command_app()
    try:
        app_settings = Settings.from_environ(os.environ)
    except SettingsError as error:
        print(f"Cannot start: {error}", file=sys.stderr)
        raise SystemExit(3) from None
    return build_app(app_settings)


def command_app() -> Flask:
    """The app Flask's CLI finds the commands on (`flask --app app backfill ...`): the commands
    alone, none of the service. `--help` and `backfill --check` need no setting then, and no
    open-mode warning is printed; a command that calls Stream reads the settings it uses when
    it runs (stream_backend/web/commands.py)."""
    app = Flask(__name__, static_folder=None)
    commands.register(app)
    return app


def build_app(app_settings: Settings) -> Flask:
    configure_logging(app_settings.log_level)
    if app_settings.token_auth == "open":
        log.warning(
            "TOKEN_AUTH=open: anyone can get a Stream token for any user. "
            "For workshops and demos only; see docs/production.md."
        )
    # No /static route: the service has no static files (the docs' assets have their route).
    app = Flask(__name__, static_folder=None)
    app.config.update(SETTINGS=app_settings, MAX_CONTENT_LENGTH=app_settings.max_body_bytes)
    # One JSON object per line, in debug mode too: the workshop's Android client reads the
    # token answer with readLine().
    app.json.compact = True  # type: ignore[attr-defined]
    client = build_client(
        app_settings.stream_api_key,
        app_settings.stream_api_secret,
        base_url=app_settings.stream_chat_url,
        timeout=app_settings.stream_timeout,
        pool_size=app_settings.http_pool_size,
    )
    origin_key = derive_origin_key(app_settings.stream_api_secret)
    app.extensions["stream_chat"] = client
    app.extensions["handover"] = build_handover(app_settings, origin_key)
    app.extensions["mirror"] = Mirror(
        client, open_sync_state(app_settings.store_location, app_settings.sync_state_ttl_seconds), origin_key
    )
    if app_settings.trusted_proxy_count:
        # The client's address as the nearest of those proxies saw it; the header is never
        # believed by default, since any client can send it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app_settings.trusted_proxy_count, x_proto=0)  # type: ignore[method-assign]
    # "//" in a path is a 404 like any unknown path, not a redirect: Flask answers routing
    # redirects itself, in HTML, past every error handler.
    app.url_map.merge_slashes = False
    api.register(app)
    errors.register(app)
    commands.register(app)
    # Serialized once, in the document's own order ("openapi" first), not sorted as jsonify would.
    app.extensions["openapi"] = json.dumps(openapi_document(api.routes))
    hooks.install(app, api, app_settings.max_body_bytes)
    # allow_headers defaults to any, so a preflight for `Content-Type: application/json` passes.
    # X-Request-Id is exposed so that a browser app can read it and quote it in a bug report.
    CORS(app, resources={api.browser_paths(): {"origins": app_settings.cors_origins}}, expose_headers=["X-Request-Id"])
    return app
