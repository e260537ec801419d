"""Fixtures: the app built from a test environment, a requests-mock stand-in for Stream's
API that answers in Stream's shapes.

Every request the SDK sends through `stream` is kept for the contract test
(test_contract.py), which runs last and validates them all against Stream's spec.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests_mock

# Importing app builds its module-level app from the environment: give it a test one, and
# keep a developer's own STREAM_CHAT_URL or STREAM_CHAT_TIMEOUT (read by the SDK) out.
for name in ("STREAM_CHAT_URL", "STREAM_CHAT_TIMEOUT"):
    os.environ.pop(name, None)
os.environ.update(STREAM_API_KEY="test-key", STREAM_API_SECRET="test-secret-" + "x" * 32, TOKEN_AUTH="open",
                  WEBHOOK_DB=os.path.join(tempfile.mkdtemp(), "webhooks.sqlite3"))

import app as service  # noqa: E402
from examples import API_KEY, API_SECRET  # noqa: E402
from live import free_port  # noqa: E402
from stream_stand_in import StandIn  # noqa: E402

# Stream's own base URL, so requests match the spec's server; requests-mock keeps them local.
STREAM_URL = "https://chat.stream-io-api.com"

SENT_TO_STREAM: list = []


def pytest_collection_modifyitems(config, items):
    """The contract test checks what every other test sent, so it runs after them."""
    items.sort(key=lambda item: item.get_closest_marker("contract") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "contract: validates every request sent to Stream")


@pytest.fixture
def environ(tmp_path):
    return {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET, "TOKEN_AUTH": "open",
            "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3")}


@pytest.fixture
def app(environ):
    return service.create_app(environ)


@pytest.fixture
def client(app):
    return app.test_client()


@contextmanager
def stream_stand_in():
    """Stream's API, answered in memory by the stand-in's own logic (tools/stream_stand_in.py)
    through requests-mock. Every request it receives is kept for the contract test."""
    stand_in = StandIn(API_KEY, API_SECRET)

    def answer(request, context):
        query = {key: values[-1] for key, values in parse_qs(urlsplit(request.url).query).items()}
        context.status_code, body = stand_in.answer(request.method, request.path, query,
                                                    request.body or b"", request.headers.get("Authorization"))
        return body

    with requests_mock.Mocker() as mock:
        mock.register_uri(requests_mock.ANY, re.compile(re.escape(STREAM_URL) + "/"), json=answer)
        mock.stand_in = stand_in
        try:
            yield mock
        finally:
            SENT_TO_STREAM.extend(mock.request_history)


@pytest.fixture
def stream():
    """Stream's API in memory (see stream_stand_in). A test overrides a route by registering
    it again."""
    with stream_stand_in() as mock:
        yield mock


@pytest.fixture
def sent_to_stream():
    return SENT_TO_STREAM


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: REDIS_TEST_URL (CI starts one), or a redis-server started here."""
    if os.environ.get("REDIS_TEST_URL"):
        yield os.environ["REDIS_TEST_URL"]
        return
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
