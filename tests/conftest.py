"""Fixtures: the app built from a test environment, a requests-mock stand-in for Stream's
API that answers in Stream's shapes.

Every request the SDK sends through `stream` is kept for the contract test
(test_contract.py), which runs last and validates them all against Stream's spec.
"""

import hashlib
import json
import os
import re

import pytest
import requests_mock

# Importing app builds its module-level app from the environment: give it a test one, and
# keep a developer's own STREAM_CHAT_URL or STREAM_CHAT_TIMEOUT (read by the SDK) out.
for name in ("STREAM_CHAT_URL", "STREAM_CHAT_TIMEOUT"):
    os.environ.pop(name, None)
os.environ.update(STREAM_API_KEY="test-key", STREAM_API_SECRET="test-secret-" + "x" * 32)

import app as service  # noqa: E402
from examples import API_KEY, API_SECRET  # noqa: E402

# Stream's own base URL, so requests match the spec's server; requests-mock keeps them local.
STREAM_URL = "https://chat.stream-io-api.com"

SENT_TO_STREAM: list = []


def pytest_collection_modifyitems(config, items):
    """The contract test checks what every other test sent, so it runs after them."""
    items.sort(key=lambda item: item.get_closest_marker("contract") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "contract: validates every request sent to Stream")


@pytest.fixture
def environ():
    return {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET}


@pytest.fixture
def app(environ):
    return service.create_app(environ)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stream():
    """Stream's API, answered in memory. Tests override a route by registering it again."""
    with requests_mock.Mocker() as mock:
        mock.post(f"{STREAM_URL}/users", status_code=201, json=_upserted_users)
        mock.post(re.compile(rf"{STREAM_URL}/channels/[^/]+(/[^/]+)?/query"), status_code=201,
                  json=_channel_state)
        mock.post(re.compile(rf"{STREAM_URL}/channels/[^/]+/[^/]+/message"), status_code=201,
                  json=_sent_message)
        yield mock
        SENT_TO_STREAM.extend(mock.request_history)


@pytest.fixture
def sent_to_stream():
    return SENT_TO_STREAM


def _upserted_users(request, context):
    return {"users": request.json()["users"], "duration": "1.00ms"}


def _channel_state(request, context):
    body = request.json()
    parts = request.path.split("/")  # /channels/{type}/query or /channels/{type}/{id}/query
    channel_type = parts[2]
    channel_id = parts[3] if len(parts) == 5 else "!members-" + hashlib.sha1(
        json.dumps(sorted(m["user_id"] for m in body["data"]["members"])).encode()).hexdigest()[:20]
    data = body.get("data", {})
    return {
        "channel": {**{k: v for k, v in data.items() if k != "members"},
                    "id": channel_id, "type": channel_type, "cid": f"{channel_type}:{channel_id}"},
        "members": [{"user_id": m["user_id"], "user": {"id": m["user_id"]}} for m in data.get("members", [])],
        "messages": [],
        "duration": "1.00ms",
    }


def _sent_message(request, context):
    message = request.json()["message"]
    return {"message": {**message, "type": "regular", "html": f"<p>{message['text']}</p>"},
            "duration": "1.00ms"}
