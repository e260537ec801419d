"""Start-up: settings read once, a missing or malformed one stops the process by name."""

import pytest
from stream_chat import StreamChat

from app import create_app
from stream_backend.errors import SettingsError
from stream_backend.settings import Settings
from stream_backend.stream.client import StreamClient

from support.examples import CHANNEL_BODY
from support.processes import create_app_in_a_process as start


@pytest.mark.parametrize(
    "missing", [["STREAM_API_KEY"], ["STREAM_API_SECRET"], ["STREAM_API_KEY", "STREAM_API_SECRET"]]
)
def test_missing_credentials_stop_the_process_naming_them(missing):
    environ = {"STREAM_API_KEY": "key", "STREAM_API_SECRET": "secret", "TOKEN_AUTH": "open"}
    for name in missing:
        environ[name] = ""

    result = start(environ)

    assert result.returncode != 0
    for name in missing:
        assert name in result.stderr
    assert ".env.example" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_starts_with_credentials():
    assert start({"STREAM_API_KEY": "key", "STREAM_API_SECRET": "secret", "TOKEN_AUTH": "open"}).returncode == 0


@pytest.mark.parametrize(
    "name, value",
    [
        ("TOKEN_TTL_SECONDS", "soon"),
        ("TOKEN_TTL_SECONDS", "-5"),
        ("TOKEN_TTL_SECONDS", "1.5"),
        ("STREAM_CHAT_TIMEOUT", "nan"),
        ("STREAM_CHAT_TIMEOUT", "0"),
        ("MAX_BODY_BYTES", "lots"),
        ("PRIMARY_SYNC_TIMEOUT", "31"),
        ("PRIMARY_SYNC_TIMEOUT", "-1"),
        ("PRIMARY_SYNC_URL", "ftp://primary"),
    ],
)
def test_malformed_setting_is_refused_by_name(environ, name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({**environ, name: value})


def test_stream_chat_url_points_the_service_elsewhere(environ, stream):
    stream.post("http://stand-in.test:8765/users", status_code=201, json={"users": {}})
    stream.post(
        "http://stand-in.test:8765/channels/messaging/query",
        status_code=201,
        json={
            "channel": {"id": "x", "cid": "messaging:x", "title": "Just a test"},
            "members": [{"user_id": "tommaso"}, {"user_id": "thierry"}],
        },
    )
    client = create_app({**environ, "STREAM_CHAT_URL": "http://stand-in.test:8765"}).test_client()

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 200
    assert [r.url.split("?")[0] for r in stream.request_history] == [
        "http://stand-in.test:8765/users",
        "http://stand-in.test:8765/channels/messaging/query",
    ]
    stream.request_history.clear()  # another base URL than the spec's: not for the contract test


def test_stream_timeout_setting_reaches_the_client(environ):
    app = create_app({**environ, "STREAM_CHAT_TIMEOUT": "2.5"})

    assert app.extensions["stream_chat"].timeout == 2.5


def test_one_stream_client_serves_every_request(environ, stream, monkeypatch):
    built = []
    monkeypatch.setattr(
        StreamClient, "__init__", lambda self, *args, **kwargs: built.append(args) or StreamChat.__init__(self, *args)
    )
    client = create_app(environ).test_client()

    client.post("/channel", json=CHANNEL_BODY)
    client.post("/message", json={**CHANNEL_BODY, "message": {"id": "m-1", "text": "hi"}, "user": {"id": "tommaso"}})

    assert len(built) == 2  # one for every request, one of its own for /readyz's brief check
    assert stream.call_count >= 4
