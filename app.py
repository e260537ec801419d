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
    GET    /readyz                    readiness: the store answers, Stream took our credentials recently
    GET    /metrics                   Prometheus metrics, with METRICS_TOKEN
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
import time
from collections.abc import Mapping
from pathlib import Path

import flask_swagger_ui
from dotenv import load_dotenv
from flask import Flask, abort, current_app, render_template, request, send_from_directory
from flask_cors import CORS
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from stream_backend import origins
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
from stream_backend.mirror.versions import open_versions, version_from_query
from stream_backend.settings import Settings
from stream_backend.store.probe import StoreProbe
from stream_backend.stream import credentials
from stream_backend.stream.client import StreamClient, build_client
from stream_backend.validation import ChannelId, ChannelType, Flag, MessageId, UserId, parse_json, validated
from stream_backend.web import commands, deliveries, errors, hooks
from stream_backend.web.auth import TOKEN_IAT_LEEWAY_SECONDS, session_user
from stream_backend.web.jwks import ProviderKeys
from stream_backend.web.logs import cannot_start, configure_logging
from stream_backend.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from stream_backend.web.metrics import Metrics
from stream_backend.web.models import (
    ASSET,
    CHANNEL,
    DOCS_ASSETS,
    HARD,
    MESSAGE_ID,
    USER_ID,
    VERSION,
    WEBHOOK_HEADERS,
    ChannelAnswer,
    Deleted,
    Health,
    MessageAnswer,
    Ready,
    TokenAnswer,
    TokenRequest,
    UpdatedChannel,
    UpdatedMessage,
    WebhookAnswer,
    WebhookEvent,
)
from stream_backend.web.openapi import SYNC_ERRORS, openapi_document, with_server
from stream_backend.web.readiness import Readiness
from stream_backend.web.routing import RouteTable

api = RouteTable("stream_backend")
log = logging.getLogger("stream_backend")
# Connections to Stream kept open per worker process: its requests' calls at once, at most, on a
# warm path (more are opened when needed, and closed after).
STREAM_CONNECTIONS = 32


# --- What each request reaches through the app --------------------------------------------


def stream() -> StreamClient:
    return current_app.extensions["stream_chat"]


def mirror() -> Mirror:
    return current_app.extensions["mirror"]


def handover() -> Handover:
    return current_app.extensions["handover"]


def readiness() -> Readiness:
    return current_app.extensions["readiness"]


def metrics() -> Metrics | None:
    return current_app.extensions["metrics"]


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def json_body() -> dict:
    """The request body as a JSON object, whatever its Content-Type says (validation.parse_json)."""
    return parse_json(request.get_data())


def hard_flag() -> bool:
    """`?hard=true` (or false, 1, 0); absent is false."""
    flag = request.args.get("hard")
    return flag is not None and validated(Flag, flag, "hard")


def version_query() -> int | str | None:
    """`?version=`: the primary's version of what it deletes (mirror/versions.py); absent: none."""
    version = request.args.get("version")
    return None if version is None else version_from_query(version)


# --- Routes -------------------------------------------------------------------------------


@api.route("GET", "/healthz", tag="service", answer=Health)
def healthz():
    """Liveness: 200 while the process serves requests, without calling Stream or the store.

    Response: 200 `{"status": "ok"}`. Readiness is `/readyz`.
    """
    return {"status": "ok"}


@api.route("GET", "/readyz", tag="service", answer=Ready, errors=(503,))
def readyz():
    """Readiness: whether the shared store answers and Stream accepted our credentials within
    the last minute.

    Response: 200 `{"status": "ready", "checks": {"store": "ok", "stream": "ok"}}`; 503
    `{"error", "checks"}` naming what is not: the store `unavailable`; Stream `refused` (our
    key and secret), `unreachable` or `failing`. Stream is asked (`GET /app`) at most once a
    minute per worker, so a probe every second costs it nothing; the details are logged.
    `/healthz` is liveness: it asks neither.
    """
    checks = readiness().verdicts()
    wrong = [f"{name} {verdict}" for name, verdict in checks.items() if verdict != "ok"]
    if wrong:
        return errors.error_response(503, f"Not ready: {', '.join(wrong)}.", checks=checks)
    return {"status": "ready", "checks": checks}


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
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def sync_channel():
    """Mirror a channel into Stream: upsert its members, get or create their channel.

    Request: `{"channel": {"creator_id", "custom_data", "type", "id", "version"}, "members":
    {"<id>": {"name", "image", "version"}}}`; `type` defaults to `messaging`; without `id`, the
    channel is the distinct channel of its members. Repeating it changes nothing. Each
    `version` (optional) is the primary's version of that object: an older one than the newest
    applied leaves the object as it is.
    Response: 200 with Stream's channel state (`channel`, `members`, ...) and its `cid`; with
    `"stale": true` and `stale_objects` when some objects were left (a stale channel: its ids).
    Errors: 400 for an invalid body; Stream's 4xx pass through, other Stream failures are 502/504;
    503 when another request is writing one of its versioned objects.
    """
    channel, state = mirror().sync_channel(parse_channel(json_body()))
    return {**state, "cid": channel.cid}


@api.route(
    "POST",
    "/message",
    tag="mirror",
    answer=MessageAnswer,
    body=MessageRequest,
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def sync_message():
    """Mirror a message into Stream: the `/channel` work, then send the message.

    Request: the `/channel` body plus `"message": {"id", "text", "version"}` and
    `"user": {"id", "name", "image", "version"}` (the sender).
    Response: 200 `{"message": {...}, "cid"}`; a retry with an id Stream already has answers
    the stored message. Stale parts are left unwritten and named (`"stale": true`,
    `stale_objects`): a new message with a stale sender is sent, a stale message is not.
    Errors as for `/channel`.
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
    errors=SYNC_ERRORS,
    auth="sync",
    body_cap=64 * 1024,
    browser=True,
)
def update_message(message_id: str):
    """Set some fields of a message: a partial update.

    Request: `{"message": {"text": "...", ...custom fields, "version"}, "user": {"id": "..."}}`.
    Response: 200 `{"message": {...}}`, the updated message; `{"message": {"id"}, "stale": true,
    ...}` when `version` is older than the newest applied, and nothing is written. 404 for an
    unknown id.
    """
    message_id = validated(MessageId, message_id, "message id")
    update = parse_message_update(json_body())
    return mirror().update_message(message_id, update.fields, update.user_id, update.version)


@api.route(
    "DELETE",
    "/message/{message_id}",
    tag="mirror",
    answer=Deleted,
    parameters=(MESSAGE_ID, HARD, VERSION),
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def delete_message(message_id: str):
    """Delete a message: soft, or hard with `?hard=true`.

    Response: 200 `{"message": {...}}`; 200 with `"already_deleted": true` when Stream no longer
    has it, so a retried delete succeeds. With `?version=`, a tombstone: a later create or
    update of that version or older changes nothing; an older delete answers `"stale": true`.
    """
    message_id = validated(MessageId, message_id, "message id")
    return mirror().delete_message(message_id, hard_flag(), version_query())


@api.route(
    "PUT",
    "/channel/{channel_type}/{channel_id}",
    tag="mirror",
    answer=UpdatedChannel,
    body=ChannelUpdateRequest,
    parameters=CHANNEL,
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def update_channel(channel_type: str, channel_id: str):
    """Set a channel's custom data and, when given, make its members exactly these.

    Request: `{"custom_data": {"title": "New", "topic": null}, "members": {"<id>": {"name",
    "image", "version"}}, "version"}`, either or both: fields not given are kept, a `null`
    field is removed; members missing in Stream are upserted and added, the others removed
    (100 a call). Repeatable. `version` is the channel's: an older one leaves it as it is.
    Response: 200 `{"channel": {...}, "members": [ids], "added": [...], "removed": [...]}`; a
    stale channel answers its ids with `"stale": true`.
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
    parameters=(*CHANNEL, HARD, VERSION),
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def delete_channel(channel_type: str, channel_id: str):
    """Delete a channel: soft, or hard (its messages too) with `?hard=true`.

    Response: 200 with Stream's answer; 200 with `"already_deleted": true` when Stream no
    longer has it. A channel created again after a hard delete starts empty; after a soft one,
    Stream brings back its custom data and members, not its messages. `?version=` as for a
    message: a tombstone.
    """
    channel_type = validated(ChannelType, channel_type, "channel type")
    channel_id = validated(ChannelId, channel_id, "channel id")
    return mirror().delete_channel(channel_type, channel_id, hard_flag(), version_query())


@api.route(
    "DELETE",
    "/user/{user_id}",
    tag="mirror",
    answer=Deleted,
    parameters=(USER_ID, HARD, VERSION),
    errors=SYNC_ERRORS,
    auth="sync",
    browser=True,
)
def delete_user(user_id: str):
    """Delete a user in Stream: soft (the record is kept, marked deleted), and with
    `?hard=true` their messages too.

    Response: 200 `{"user": {"id"}, "task_id"}` (Stream deletes the messages in a task); 200
    with `"already_deleted": true` when Stream no longer shows the user, so a retry succeeds.
    `?version=` as for a message: a tombstone.
    """
    user_id = validated(UserId, user_id, "user id")
    return mirror().delete_user(user_id, hard_flag(), version_query())


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
    """Receive one of Stream's webhook events, store it, and answer at once.

    Headers: `X-Signature` (HMAC-SHA256 of the body with the API secret, required),
    `X-Api-Key` (checked when present), `X-Webhook-Id` (the same on every retry).
    The body may be gzipped. https://getstream.io/chat/docs/python/webhooks_overview/
    Response: 200 `{"received": "<type>", "outcome": "queued" | "duplicate" | "logged" |
    "echo" | "stale" | "ignored"}`, only once the event is stored durably ("queued": it will
    reach the primary system, in order per channel, however long the primary is away).
    Errors: 403 for an address outside WEBHOOK_ALLOWED_IPS; 401 for a missing or wrong
    signature or another app's key; 413 for a body over MAX_BODY_BYTES, inflated or not; 400
    for a corrupt gzip body, or a signed body that is not a JSON object with a `type`; 503,
    which Stream retries, when the store cannot take the event (down, or full).
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
    outcome = handover().accept(event, webhook_id, signed)
    delivery = {
        "outcome": outcome,
        "type": event["type"],
        "cid": event.get("cid"),
        "message_id": event_message(event).get("id"),
        "webhook_id": webhook_id,
        "attempt": request.headers.get("X-Webhook-Attempt"),
    }
    log.info("webhook %s", json.dumps(delivery), extra={"webhook": delivery})  # LOG_FORMAT=json: a field
    if counted := metrics():
        counted.webhook(outcome)
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


@api.route("GET", "/metrics", tag="service", auth="metrics", errors=(401, 404), media_types=("text/plain",))
def serve_metrics():
    """Prometheus metrics, for a scraper that sends METRICS_TOKEN.

    Requests by route, method and status, with latency histograms; calls to Stream by
    operation and outcome (429s among them); webhook outcomes; the hand-over queue. Under
    gunicorn, every worker's, whichever answers. 404 while METRICS_TOKEN is not set; 401
    without it as a bearer token.
    """
    exposition = current_app.extensions["metrics"].exposition()  # there: the guard answered 404 otherwise
    return current_app.response_class(exposition, content_type=METRICS_CONTENT_TYPE)


@api.route("GET", "/openapi.json", tag="service", browser=True)
def openapi():
    """This API's OpenAPI 3.1 document.

    Built from the route table and the request models, so its constraints are the ones the
    service enforces. Postman, Insomnia and client generators can import it.
    """
    # Its server is the base URL this request reached, so that an import sends there.
    document = with_server(current_app.extensions["openapi"], request.url_root)
    return current_app.response_class(json.dumps(document), mimetype="application/json")


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
        cannot_start(str(error), os.environ)
        raise SystemExit(3) from None
    return build_app(app_settings)


def command_app() -> Flask:
    """The app Flask's CLI finds the commands on (`flask --app app backfill ...`): the commands
    alone, none of the service. `--help` and `backfill --check` need no setting then, and no
    open-mode warning is printed; a command that calls Stream reads the settings it uses when
    it runs (stream_backend/web/commands.py)."""
    app = Flask(__name__, static_folder=None)
    commands.register(app)
    deliveries.register(app)
    return app


def build_app(app_settings: Settings) -> Flask:
    configure_logging(app_settings.log_level, app_settings.log_format)
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
        pool_size=STREAM_CONNECTIONS,
    )
    origin_key = derive_origin_key(app_settings.stream_api_secret)
    metrics = Metrics() if app_settings.metrics_token else None
    client.observer = metrics.stream_call if metrics else None
    # Readiness first: its start-up check says what is wrong with the store, if anything.
    app.extensions.update(stream_chat=client, metrics=metrics, readiness=build_readiness(app_settings))
    if app_settings.token_auth == "jwt" and app_settings.auth_jwks_url:
        app.extensions["session_keys"] = ProviderKeys(app_settings.auth_jwks_url)
    app.extensions["handover"] = handover_ = build_handover(app_settings, origin_key)
    if metrics and handover_.queue is not None:
        metrics.watch_queue(handover_.queue.status)
    app.extensions["mirror"] = Mirror(
        client,
        open_sync_state(app_settings.store_location, app_settings.sync_state_ttl_seconds),
        origin_key,
        open_versions(app_settings.store_location, app_settings.versions_keep_seconds),
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
    deliveries.register(app)
    # Built once; serialized in its own order ("openapi" first), not sorted as jsonify would.
    app.extensions["openapi"] = openapi_document(api.routes)
    hooks.install(app, api, app_settings.max_body_bytes)
    # Deliveries start when the process serves (gunicorn's post_worker_init does it at once),
    # never in a command such as `flask backfill`.
    app.before_request(app.extensions["handover"].start)
    allow_browsers(app, app_settings.cors_origins)
    return app


def allow_browsers(app: Flask, allowed: str | tuple[str, ...]) -> None:
    """CORS on the routes a browser calls, for CORS_ORIGINS. allow_headers defaults to any, so
    a preflight for `Content-Type: application/json` passes; X-Request-Id is exposed so that a
    browser app can quote it in a bug report. Each entry is an exact pattern (origins.py):
    flask-cors would read a plain entry with a `*` as a regex matched from its start. A request
    without Origin is no CORS request: it gets no CORS headers (always_send=False)."""
    patterns = allowed if allowed == "*" else [origins.pattern(entry) for entry in allowed]
    CORS(
        app,
        resources={api.browser_paths(): {"origins": patterns}},
        expose_headers=["X-Request-Id"],
        always_send=False,
    )


def build_readiness(app_settings: Settings) -> Readiness:
    """The checks of /readyz, with a client of their own that waits briefly; the store is
    asked once now, so that a REDIS_URL or SQLite file that cannot be used says so at start-up."""
    store = StoreProbe(app_settings.store_location)
    problem = store.problem()
    if problem is not None:
        log.error(
            "The shared store cannot be used: %s. Webhooks and /readyz answer 503 until it answers "
            "(REDIS_URL, or WEBHOOK_DB; see docs/production.md).",
            problem,
        )
    client = build_client(
        app_settings.stream_api_key,
        app_settings.stream_api_secret,
        base_url=app_settings.stream_chat_url,
        timeout=min(app_settings.stream_timeout, credentials.TIMEOUT_SECONDS),
        pool_size=1,
    )
    return Readiness(store, credentials.CredentialsCheck(client))
