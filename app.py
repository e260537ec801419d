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

This module is the front door: `create_app` wires the pieces, each route validates its input
(models.py), makes one call and answers, and the hooks give each request its id, body cap and
access-log line. The rest lives where its name says: settings.py (reading and checking the
settings), auth.py (session JWTs, SYNC_API_TOKEN), errors.py (every error as JSON), logs.py
(log lines), mirror.py and sync_state.py (primary -> Stream), handover.py, webhook_body.py and
webhook_store.py (Stream -> primary). None of them imports this module.
"""

import inspect
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import flask_swagger_ui
import requests
from dotenv import load_dotenv
from flask import Blueprint, Flask, abort, current_app, g, has_app_context, render_template, request, send_from_directory
from flask_cors import CORS
from stream_chat import StreamChat
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

import commands
import errors
import handover as handover_module
import models
import webhook_body
from auth import TOKEN_IAT_LEEWAY_SECONDS, requires_sync_token, session_user
from handover import Handover, build_handover
from logs import configure_logging, loggable
from mirror import Mirror, derive_origin_key
from settings import Settings, SettingsError
from sync_state import open_sync_state

log = logging.getLogger("stream_backend")


# --- Wiring: the Stream client, and what each request reaches through the app -----------

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


def handover() -> Handover:
    return current_app.extensions["handover"]


def settings() -> Settings:
    return current_app.config["SETTINGS"]


# --- Helpers ----------------------------------------------------------------------------

def json_body() -> dict[str, Any]:
    """The request body as a JSON object, whatever its Content-Type says (models.parse_body)."""
    return models.parse_body(request.get_data())


def hard_flag() -> bool:
    """`?hard=true` (or false, 1, 0); absent is false."""
    flag = request.args.get("hard")
    return flag is not None and models.validated(models.Flag, flag, "hard")


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
    log.info("webhook %s", json.dumps({
        "outcome": outcome,
        "type": event["type"],
        "cid": event.get("cid"),
        "message_id": handover_module.event_message(event).get("id"),
        "webhook_id": webhook_id,
        "attempt": request.headers.get("X-Webhook-Attempt"),
    }))
    return {"received": event["type"], "outcome": outcome}


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
    errors.register(app)
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


load_dotenv()
try:
    configure_logging(os.environ.get("LOG_LEVEL") or "INFO")
    app = create_app()
except SettingsError as error:
    print(f"Cannot start: {error}", file=sys.stderr)
    # 3 is gunicorn's "worker failed to boot": it stops the server instead of retrying forever.
    sys.exit(3)
