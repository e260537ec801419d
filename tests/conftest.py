"""Fixtures: an app built from a test environment of its own, and Stream's API in memory
(support/stream.py) whose every request is checked against Stream's spec at the end of the
test that sent it."""

import os
import shutil

import pytest

from app import create_app

from live import redis_server
from primary_system import PrimarySystem
from support.examples import API_KEY, API_SECRET
from support.stream import requests_off_spec, stream_in_memory


@pytest.fixture
def environ(tmp_path):
    return {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
    }


@pytest.fixture
def app(environ):
    return create_app(environ)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stream():
    """Stream's API in memory (support.stream.stream_in_memory). When the test is over, every
    request it sent must conform to Stream's published spec, or the test fails."""
    with stream_in_memory() as mock:
        yield mock
        problems = requests_off_spec(mock.request_history)
    if problems:
        pytest.fail(
            f"{len(problems)} of {len(mock.request_history)} requests sent to Stream are off "
            "Stream's spec:\n" + "\n".join(problems),
            pytrace=False,
        )


@pytest.fixture
def primary():
    """The primary system's endpoint, a real local HTTP server (tools/primary_system.py)."""
    with PrimarySystem() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: REDIS_TEST_URL (CI starts one), or a redis-server started here."""
    if os.environ.get("REDIS_TEST_URL"):
        yield os.environ["REDIS_TEST_URL"]
        return
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with redis_server() as url:
        yield url
