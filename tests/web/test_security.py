"""Safe on a public URL: tokens only for the authenticated caller, sync routes behind a
shared token, nothing secret in the logs, bounded bodies."""

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import jwt
import pytest
import requests

from app import create_app
from stream_backend.errors import SettingsError
from stream_backend.settings import Settings
from stream_backend.stream.rules import ORIGIN_FIELD, RESERVED_MESSAGE_FIELDS

from live import ROOT, free_port
from support.examples import API_SECRET, CHANNEL_BODY, MESSAGE_BODY, PRIMARY_SYNC_SECRET, sign, webhook_event
from support.processes import create_app_in_a_process
from support.stream import STREAM_URL

SESSION_SECRET = "the-app-session-secret-" + "k" * 32
SYNC_TOKEN = "sync-api-token-" + "t" * 32


def session_jwt(sub="tommaso", secret=SESSION_SECRET, expires_in=300, **claims):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + expires_in, **claims}, secret, algorithm="HS256")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def jwt_environ(environ):
    return {
        **environ,
        "TOKEN_AUTH": "jwt",
        "AUTH_JWT_SECRET": SESSION_SECRET,
        "SYNC_API_TOKEN": SYNC_TOKEN,
        "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET,
    }


@pytest.fixture
def jwt_client(jwt_environ):
    return create_app(jwt_environ).test_client()


def issued_user(response):
    return jwt.decode(response.get_json()["token"], API_SECRET, algorithms=["HS256"])["user_id"]


# --- Start-up ------------------------------------------------------------------------------


def start(environ):
    return create_app_in_a_process({"STREAM_API_KEY": "key", "STREAM_API_SECRET": "secret", **environ})


@pytest.mark.parametrize("token_auth", [None, "", "yes", "JWT"])
def test_token_auth_unset_or_unknown_refuses_to_start_naming_its_choices(token_auth):
    result = start({} if token_auth is None else {"TOKEN_AUTH": token_auth})

    assert result.returncode != 0
    assert "TOKEN_AUTH must be set" in result.stderr
    assert "'jwt'" in result.stderr and "'open'" in result.stderr


def test_open_mode_starts_with_a_warning(environ, caplog):
    create_app(environ)

    assert any(
        "TOKEN_AUTH=open" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ({"AUTH_JWT_SECRET": ""}, "AUTH_JWT_SECRET"),
        ({"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET"),
        ({"SYNC_API_TOKEN": ""}, "SYNC_API_TOKEN"),
        ({"SYNC_API_TOKEN": "short"}, "SYNC_API_TOKEN"),
        ({"STREAM_CHAT_TIMEOUT": "29"}, "STREAM_CHAT_TIMEOUT"),
    ],
)
def test_jwt_mode_refuses_to_start_without_its_secrets(jwt_environ, change, named):
    result = start({key: value for key, value in {**jwt_environ, **change}.items() if key != "WEBHOOK_DB"})

    assert result.returncode != 0
    assert named in result.stderr


# --- TOKEN_AUTH=jwt -------------------------------------------------------------------------


def test_valid_bearer_gets_a_token_for_its_sub(jwt_client):
    response = jwt_client.post("/generate-token", json={"user_id": "tommaso"}, headers=bearer(session_jwt()))

    assert response.status_code == 200
    assert issued_user(response) == "tommaso"


@pytest.mark.parametrize("body", [{}, {"user_id": None}, None])
def test_without_a_body_user_id_the_token_is_for_the_sub(jwt_client, body):
    response = jwt_client.post("/generate-token", json=body, headers=bearer(session_jwt("thierry")))

    assert response.status_code == 200
    assert issued_user(response) == "thierry"


def test_no_bearer_is_a_401(jwt_client):
    response = jwt_client.post("/generate-token", json={"user_id": "tommaso"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert response.is_json


def test_expired_bearer_is_a_401(jwt_client):
    response = jwt_client.post("/generate-token", json={}, headers=bearer(session_jwt(expires_in=-60)))

    assert response.status_code == 401
    assert "expired" in response.get_json()["error"]


@pytest.mark.parametrize(
    "token",
    [
        session_jwt(secret="another-apps-secret-" + "z" * 32),
        jwt.encode({"sub": "tommaso", "exp": int(time.time()) + 300}, None, algorithm="none"),
        jwt.encode({"sub": "tommaso"}, SESSION_SECRET, algorithm="HS256"),  # never expires: refused
        "not-a-jwt",
    ],
)
def test_badly_signed_or_malformed_bearer_is_a_401(jwt_client, token):
    response = jwt_client.post("/generate-token", json={}, headers=bearer(token))

    assert response.status_code == 401


def test_bearer_asking_for_another_user_is_a_403(jwt_client):
    response = jwt_client.post("/generate-token", json={"user_id": "thierry"}, headers=bearer(session_jwt("tommaso")))

    assert response.status_code == 403
    assert "user_id" in response.get_json()["error"]


def test_sub_that_is_not_a_stream_user_id_is_a_403(jwt_client):
    response = jwt_client.post("/generate-token", json={}, headers=bearer(session_jwt("not a stream id")))

    assert response.status_code == 403


def test_audience_and_issuer_are_checked_when_set(jwt_environ):
    client = create_app(
        {**jwt_environ, "AUTH_JWT_AUDIENCE": "chat", "AUTH_JWT_ISSUER": "https://app.example.com"}
    ).test_client()
    right = session_jwt(aud="chat", iss="https://app.example.com")
    wrong_audience = session_jwt(aud="billing", iss="https://app.example.com")
    wrong_issuer = session_jwt(aud="chat", iss="https://evil.example")

    assert client.post("/generate-token", json={}, headers=bearer(right)).status_code == 200
    assert client.post("/generate-token", json={}, headers=bearer(wrong_audience)).status_code == 401
    assert client.post("/generate-token", json={}, headers=bearer(wrong_issuer)).status_code == 401


def test_open_mode_issues_tokens_without_a_bearer(client):
    assert client.post("/generate-token", json={"user_id": "tommaso"}).status_code == 200


# --- SYNC_API_TOKEN --------------------------------------------------------------------------

SYNC_REQUESTS = [
    ("POST", "/channel", CHANNEL_BODY),
    ("POST", "/message", MESSAGE_BODY),
    ("PUT", "/message/m-1", {"message": {"text": "x"}, "user": {"id": "tommaso"}}),
    ("DELETE", "/message/m-1", None),
    ("DELETE", "/channel/messaging/general", None),
]


@pytest.mark.parametrize("method, path, body", SYNC_REQUESTS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-" + "t" * 40),
        bearer(""),
        {"Authorization": SYNC_TOKEN},
        {"Authorization": f"Basic {SYNC_TOKEN}"},
    ],
)
def test_sync_routes_without_the_right_token_are_a_401(jwt_client, stream, method, path, body, headers):
    response = jwt_client.open(path, method=method, json=body, headers=headers)

    assert response.status_code == 401
    assert response.is_json
    assert stream.call_count == 0


@pytest.mark.parametrize("method, path, body", SYNC_REQUESTS)
def test_sync_routes_with_the_right_token_pass(jwt_client, stream, method, path, body):
    response = jwt_client.open(path, method=method, json=body, headers=bearer(SYNC_TOKEN))

    assert response.status_code != 401
    assert stream.call_count > 0


def test_sync_token_also_guards_open_mode_when_set(environ, stream):
    client = create_app({**environ, "SYNC_API_TOKEN": SYNC_TOKEN}).test_client()

    assert client.post("/channel", json=CHANNEL_BODY).status_code == 401
    assert client.post("/channel", json=CHANNEL_BODY, headers=bearer(SYNC_TOKEN)).status_code == 200


def test_webhook_needs_its_signature_not_the_sync_token(jwt_client):
    body = webhook_event()

    response = jwt_client.post("/stream-incoming-wh", data=body, headers={"X-Signature": sign(body)})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


# --- Hardening ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, size",
    [
        ("POST", "/generate-token", 5 * 1024),
        ("PUT", "/message/m-1", 70 * 1024),
        ("DELETE", "/message/m-1", 2 * 1024),
        ("DELETE", "/channel/messaging/general", 2 * 1024),
    ],
)
def test_routes_cap_bodies_to_their_real_payloads(client, stream, method, path, size):
    response = client.open(path, method=method, data=b"{" + b" " * size + b"}", content_type="application/json")

    assert response.status_code == 413
    assert response.is_json
    assert stream.call_count == 0


def test_a_large_channel_body_is_still_accepted(client, stream):
    body = {
        "channel": {"creator_id": "user-0", "id": "big"},
        "members": {f"user-{n}": {"name": "N" * 200} for n in range(500)},
    }

    assert client.post("/channel", json=body).status_code == 200


def test_access_log_line_per_request_with_a_request_id(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.post("/generate-token", json={"user_id": "tommaso"})

    lines = [record.getMessage() for record in caplog.records if record.name == "stream_backend.access"]
    method, path, status, duration, request_id = lines[-1].split()
    assert (method, path, status) == ("POST", "/generate-token", "200")
    assert duration.endswith("ms") and float(duration[:-2]) >= 0
    assert request_id == response.headers["X-Request-Id"]
    assert len(request_id) == 32


def test_incoming_request_id_is_kept_and_answered(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.get("/healthz", headers={"X-Request-Id": "edge-42:abc"})

    assert response.headers["X-Request-Id"] == "edge-42:abc"
    assert caplog.records[-1].getMessage().endswith(" edge-42:abc")


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 200, 'quote"s', "semi;colon", "é"])
def test_unlikely_request_id_is_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-Id": incoming})

    assert response.headers["X-Request-Id"] != incoming
    assert len(response.headers["X-Request-Id"]) == 32


def test_no_secret_or_token_reaches_the_logs(jwt_environ, stream, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    client = create_app(jwt_environ).test_client()
    session = session_jwt()
    issued = client.post("/generate-token", json={}, headers=bearer(session)).get_json()["token"]
    client.post("/generate-token", json={}, headers=bearer(session + "tampered"))
    client.post("/message", json=MESSAGE_BODY, headers=bearer(SYNC_TOKEN))
    client.post("/message", json=MESSAGE_BODY, headers=bearer("wrong-" + SYNC_TOKEN))
    stream.post(f"{STREAM_URL}/users", status_code=401, json={"code": 5, "message": "bad key"})
    client.post("/channel", json=CHANNEL_BODY, headers=bearer(SYNC_TOKEN))
    stream.post(f"{STREAM_URL}/users", exc=requests.exceptions.ConnectTimeout)
    client.post("/channel", json=CHANNEL_BODY, headers=bearer(SYNC_TOKEN))
    body = webhook_event()
    client.post("/stream-incoming-wh", data=body, headers={"X-Signature": sign(body)})
    client.post("/stream-incoming-wh", data=body, headers={"X-Signature": "0" * 64})

    captured = capfd.readouterr()
    logs = "\n".join(record.getMessage() for record in caplog.records) + captured.out + captured.err
    assert "POST /generate-token 200" in logs  # the logs were captured
    for secret in [API_SECRET, SESSION_SECRET, SYNC_TOKEN, session, issued, sign(body)]:
        assert secret not in logs


# --- Hostile JSON -------------------------------------------------------------------------------


def deep(levels):
    return "[" * levels + "]" * levels


HOSTILE_BODIES = [
    # (method, path, raw JSON body, the field named in the 400)
    (
        "POST",
        "/channel",
        '{"channel": {"creator_id": "tommaso", "custom_data": {"title": "\\ud800"}}, "members": {"tommaso": {}}}',
        "channel.custom_data.title",
    ),
    (
        "POST",
        "/channel",
        '{"channel": {"creator_id": "tommaso"}, "members": {"tommaso": {"name": "a\\udfffb"}}}',
        "members.tommaso.name",
    ),
    ("PUT", "/message/m-1", '{"message": {"mood": "\\udc00"}, "user": {"id": "tommaso"}}', "message.mood"),
    ("PUT", "/message/m-1", '{"message": {"tags": ["ok", "\\ud83d"]}, "user": {"id": "tommaso"}}', "message.tags[1]"),
    (
        "POST",
        "/channel",
        '{"channel": {"creator_id": "tommaso", "custom_data": {"\\ud800": 1}}, "members": {"tommaso": {}}}',
        "channel.custom_data",
    ),
    (
        "POST",
        "/message",
        '{"channel": {"creator_id": "tommaso", "custom_data": {"x": ' + deep(500) + "}}, "
        '"members": {"tommaso": {}}, "message": {"id": "m-1", "text": "hi"}, "user": {"id": "tommaso"}}',
        "channel.custom_data.x" + "[0]" * 29,
    ),
    (
        "POST",
        "/channel",
        '{"channel": {"creator_id": "tommaso", "custom_data": {"size": 1e400}}, "members": {"tommaso": {}}}',
        "channel.custom_data.size",
    ),
    ("PUT", "/message/m-1", '{"message": {"n": -1e999}, "user": {"id": "tommaso"}}', "message.n"),
    ("PUT", "/message/m-1", '{"message": {"n": 1' + "0" * 400 + '}, "user": {"id": "tommaso"}}', "message.n"),
]


@pytest.mark.parametrize("method, path, body, field", HOSTILE_BODIES)
def test_json_that_stream_cannot_store_is_a_400_naming_the_field(client, stream, method, path, body, field):
    response = client.open(path, method=method, data=body.encode(), content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stream.call_count == 0


def test_a_long_key_over_many_children_is_refused_in_little_memory(client, stream):
    # The refused number is the last value walked, so every child is queued first; a path
    # string per child would hold the 100 KB key 2,000 times (200 MB).
    children = {"a0": 1e400, **{f"a{index}": 0 for index in range(1, 2000)}}
    body = (
        json.dumps({"channel": {"creator_id": "a", "custom_data": {"k" * 100_000: children}}, "members": {"a": {}}})
        .replace("Infinity", "1e400")
        .encode()
    )

    tracemalloc.start()
    try:
        response = client.post("/channel", data=body, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert response.status_code == 400
    assert response.get_json()["field"] == "channel.custom_data." + "k" * 40 + "....a0"
    assert peak < 5 * 2**20
    assert stream.call_count == 0


def test_nesting_up_to_the_limit_is_accepted(client, stream):
    body = {
        "channel": {"creator_id": "tommaso", "id": "general", "custom_data": {"x": json.loads(deep(29))}},
        "members": {"tommaso": {}},
    }  # 32 levels, the body's own object included

    assert client.post("/channel", json=body).status_code == 200


def test_a_valid_surrogate_pair_is_accepted(client, stream):
    body = (
        '{"channel": {"creator_id": "tommaso", "id": "general", "custom_data": {"title": "\\ud83d\\ude00"}}, '
        '"members": {"tommaso": {}}}'
    )

    assert client.post("/channel", data=body, content_type="application/json").status_code == 200
    assert json.loads(stream.request_history[-1].body)["data"]["title"] == "\U0001f600"


# --- Log lines, deletes, audiences, reserved fields -----------------------------------------------


def test_a_newline_in_the_path_cannot_forge_a_log_line(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/healthz%0a2026-11-28 INFO stream_backend.access GET /admin 200 1.0ms forged")

    lines = [record.getMessage() for record in caplog.records if record.name == "stream_backend.access"]
    assert len(lines) == 1 and "\n" not in lines[0]
    method, path, status, _, _ = lines[0].split()
    assert (method, status) == ("GET", "404")
    assert path.startswith("/healthz%0A2026-11-28%20INFO")


@pytest.mark.parametrize(
    "path, stream_path",
    [("/message/m-1", "/messages/m-1"), ("/channel/messaging/general", "/channels/messaging/general")],
)
@pytest.mark.parametrize("answer", [{"text": "<html>Not Found</html>"}, {"json": {"error": "no route"}}])
def test_a_404_that_is_not_streams_own_is_a_502_not_already_deleted(client, stream, path, stream_path, answer):
    stream.delete(f"{STREAM_URL}{stream_path}", status_code=404, **answer)

    response = client.delete(path)

    assert response.status_code == 502
    assert response.get_json()["error"] == "Stream failed with HTTP 404"
    assert "already_deleted" not in response.get_json()
    assert [request.path for request in stream.request_history] == [stream_path]


def test_streams_message_is_logged_escaped(client, stream, caplog):
    stream.delete(
        f"{STREAM_URL}/messages/m-1",
        status_code=500,
        json={"code": -1, "message": "failed on 'x\n2026-11-28 INFO forged'", "StatusCode": 500},
    )

    client.delete("/message/m-1")

    warnings = [record.getMessage() for record in caplog.records if "Stream failed" in record.getMessage()]
    assert warnings == ["Stream failed with HTTP 500: failed%20on%20'x%0A2026-11-28%20INFO%20forged'"]


@pytest.mark.parametrize(
    "path, stream_path, status, code, message",
    [
        # Stream's not-found in each form its own tests and its users have seen (docs/stream-behaviour.md).
        (
            "/message/m-1",
            "/messages/m-1",
            404,
            16,
            'DeleteMessage failed with error: "message with id m-1 doesn\'t exist"',
        ),
        (
            "/message/m-1",
            "/messages/m-1",
            400,
            4,
            'DeleteMessage failed with error: "Message with id m-1 doesn\'t exist"',
        ),
        ("/message/m-1", "/messages/m-1", 400, 4, 'DeleteMessage failed with error: "message with id m-1 not found"'),
        (
            "/channel/messaging/general",
            "/channels/messaging/general",
            404,
            16,
            'DeleteChannel failed with error: "Can\'t find channel with id messaging:general"',
        ),
    ],
)
def test_streams_own_not_found_is_already_deleted_whatever_its_code(
    client, stream, path, stream_path, status, code, message
):
    stream.delete(
        f"{STREAM_URL}{stream_path}",
        status_code=status,
        json={
            "code": code,
            "message": message,
            "StatusCode": status,
            "duration": "0.00ms",
            "more_info": "",
            "details": [],
        },
    )

    response = client.delete(path)

    assert response.status_code == 200
    assert response.get_json()["already_deleted"] is True


def test_streams_400_about_something_else_is_not_already_deleted(client, stream):
    stream.delete(
        f"{STREAM_URL}/messages/m-1",
        status_code=400,
        json={"code": 4, "message": 'DeleteMessage failed with error: "hard is not a boolean"', "StatusCode": 400},
    )

    response = client.delete("/message/m-1")

    assert response.status_code == 400
    assert "already_deleted" not in response.get_json()


def test_session_jwt_with_an_audience_is_refused_when_none_is_expected(jwt_client):
    response = jwt_client.post("/generate-token", json={}, headers=bearer(session_jwt(aud="billing")))

    assert response.status_code == 401
    assert "audience" in response.get_json()["error"]


@pytest.mark.parametrize(
    "field", ["mentioned_here", "mentioned_roles", "mentioned_group_ids", "primary_origin", "reminder", "moderation"]
)
def test_reserved_message_fields_cannot_be_set_by_an_update(client, stream, field):
    response = client.put("/message/m-1", json={"message": {field: "x"}, "user": {"id": "tommaso"}})

    assert response.status_code == 400
    assert response.get_json()["field"] == f"message.{field}"
    assert stream.call_count == 0


def test_reserved_message_fields_follow_streams_spec(tmp_path):
    spec_path = os.environ.get("STREAM_OPENAPI_SPEC", str(ROOT.parent / "shared/stream-openapi/chat-openapi.json"))
    if not os.path.exists(spec_path):
        pytest.skip("Stream's spec is not at hand; set STREAM_OPENAPI_SPEC")
    schemas = json.loads(Path(spec_path).read_text())["components"]["schemas"]
    spec_fields = set(schemas["MessageRequest"]["properties"]) | set(schemas["MessageResponse"]["properties"])

    assert (spec_fields - {"text"}) | {ORIGIN_FIELD} == RESERVED_MESSAGE_FIELDS


# --- Start-up -------------------------------------------------------------------------------------


def test_webhook_db_defaults_to_the_project_folder_whatever_the_working_directory(environ, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environ({key: value for key, value in environ.items() if key != "WEBHOOK_DB"})

    assert settings.webhook_db == str(ROOT / "var" / "webhooks.sqlite3")


@pytest.mark.parametrize("level", ["LOUD", "info2", "10"])
def test_a_bad_log_level_stops_start_up_with_a_message(level):
    result = start({"TOKEN_AUTH": "open", "LOG_LEVEL": level})

    assert result.returncode == 3
    assert result.stderr.startswith("Cannot start: LOG_LEVEL")
    assert "Traceback" not in result.stderr


def test_a_lower_case_log_level_is_accepted():
    assert start({"TOKEN_AUTH": "open", "LOG_LEVEL": "warning"}).returncode == 0


@pytest.mark.parametrize(
    "secret", ["not-whsec", "whsec_", "whsec_!!!!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_malformed_primary_sync_secret_stops_start_up(environ, secret):
    with pytest.raises(SettingsError, match="PRIMARY_SYNC_SECRET"):
        create_app({**environ, "PRIMARY_SYNC_SECRET": secret})


def test_jwt_mode_needs_a_primary_sync_secret(jwt_environ):
    with pytest.raises(SettingsError, match="PRIMARY_SYNC_SECRET must be set with TOKEN_AUTH=jwt"):
        create_app({**jwt_environ, "PRIMARY_SYNC_SECRET": ""})


def test_run_command_stops_when_the_stand_in_port_is_taken(tmp_path):
    if (ROOT / ".env").exists():
        pytest.skip("a .env is present: this test is about running without credentials")
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAM_")}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env.update(PYTHON=sys.executable, PORT=str(free_port()), STAND_IN_PORT=str(taken.getsockname()[1]))
        result = subprocess.run(
            [str(ROOT / "bin" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    assert result.returncode != 0
    assert "Cannot start: port" in result.stderr and "STAND_IN_PORT" in result.stderr
    assert "LOCAL STREAM STAND-IN" not in result.stderr
