"""GET /readyz: ready when the shared store answers and Stream accepted our credentials recently,
asking Stream at most once a minute; GET /healthz stays liveness. And the start-up check that
says when REDIS_URL or the SQLite file cannot be used."""

import logging
import os

import pytest

from app import build_readiness, create_app
from stream_backend.errors import SettingsError
from stream_backend.settings import Settings
from stream_backend.stream.credentials import CHECK_SECONDS, RECHECK_SECONDS

from live import free_port
from support.stream import STREAM_URL

REFUSED = {"code": 5, "message": "api_key not valid", "StatusCode": 401, "duration": "0.00ms"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(app):
    clock = Clock()
    app.extensions["readiness"].credentials.clock = clock
    return clock


def app_calls(stream):
    return [(sent.method, sent.path) for sent in stream.request_history if sent.path == "/app"]


def test_ready_when_the_store_answers_and_stream_takes_our_credentials(client, stream):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"store": "ok", "stream": "ok"}}
    assert app_calls(stream) == [("GET", "/app")]
    assert stream.request_history[0].qs["api_key"] == ["test-key"]
    assert stream.request_history[0].headers["Authorization"]  # an authenticated call


def test_a_probe_every_second_asks_stream_once_a_minute(client, stream, clock):
    for _ in range(2 * int(CHECK_SECONDS)):  # two minutes
        assert client.get("/readyz").status_code == 200
        clock.now += 1

    assert len(app_calls(stream)) == 2  # at the first probe, and once the first minute was over


def test_stream_refusing_our_credentials_is_a_503_naming_it(client, stream, caplog):
    stream.get(f"{STREAM_URL}/app", status_code=401, json=REFUSED)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {
        "error": "Not ready: stream refused.",
        "checks": {"store": "ok", "stream": "refused"},
    }
    assert any("api_key not valid" in record.getMessage() for record in caplog.records)  # the details: in the log


def test_a_refusal_is_asked_again_sooner_and_readiness_comes_back(client, stream, clock):
    stream.get(f"{STREAM_URL}/app", status_code=401, json=REFUSED)
    assert client.get("/readyz").status_code == 503
    clock.now += RECHECK_SECONDS - 1
    assert client.get("/readyz").status_code == 503
    assert len(app_calls(stream)) == 1

    stream.get(f"{STREAM_URL}/app", json={"app": {"name": "fixed"}, "duration": "0.10ms"})
    clock.now += 1

    assert client.get("/readyz").status_code == 200
    assert len(app_calls(stream)) == 2


def test_stream_out_of_reach_is_a_503(client, stream):
    import requests

    stream.get(f"{STREAM_URL}/app", exc=requests.ConnectionError("refused"))

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["checks"] == {"store": "ok", "stream": "unreachable"}


def test_a_sqlite_store_that_goes_away_is_a_503_and_coming_back_makes_it_ready(client, stream, environ):
    assert client.get("/readyz").status_code == 200
    path = environ["WEBHOOK_DB"]
    os.rename(path, path + ".away")

    gone = client.get("/readyz")
    os.rename(path + ".away", path)
    back = client.get("/readyz")

    assert gone.status_code == 503
    assert gone.get_json()["checks"] == {"store": "unavailable", "stream": "ok"}
    assert back.status_code == 200
    assert not os.path.exists(path + ".away")


def test_healthz_stays_liveness_while_not_ready(client, stream, environ):
    os.remove(environ["WEBHOOK_DB"]) if os.path.exists(environ["WEBHOOK_DB"]) else None
    stream.get(f"{STREAM_URL}/app", status_code=401, json=REFUSED)

    assert client.get("/healthz").status_code == 200
    assert app_calls(stream) == []


def test_a_redis_that_does_not_answer_is_said_at_start_up_and_in_readyz(environ, stream, caplog):
    caplog.set_level(logging.ERROR)
    url = f"redis://:a-redis-password@127.0.0.1:{free_port()}/0"

    client = create_app({**environ, "REDIS_URL": url}).test_client()
    response = client.get("/readyz")

    said = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(said) == 1 and "The shared store cannot be used: Redis at redis://127.0.0.1:" in said[0]
    assert "a-redis-password" not in caplog.text
    assert response.status_code == 503
    assert response.get_json()["checks"]["store"] == "unavailable"


def test_a_real_redis_that_answers_is_ready(environ, stream, redis_url, caplog):
    caplog.set_level(logging.ERROR)

    client = create_app({**environ, "REDIS_URL": redis_url}).test_client()

    assert client.get("/readyz").status_code == 200
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("case", ["a file where its folder should be", "deleted, its marker left"])
def test_a_sqlite_file_that_cannot_be_used_is_said_at_start_up(environ, tmp_path, caplog, case):
    caplog.set_level(logging.ERROR)
    path = tmp_path / "not-a-folder" / "webhooks.sqlite3"
    if case == "a file where its folder should be":
        (tmp_path / "not-a-folder").write_text("a file")
    else:
        path.parent.mkdir()
        (tmp_path / "not-a-folder" / "webhooks.sqlite3.id").write_text("a store that was there\n")

    # The start-up check alone: the webhook's claims (handover/claims.py) open the file at once too.
    build_readiness(Settings.from_environ({**environ, "WEBHOOK_DB": str(path)}))

    assert f"The shared store cannot be used: the SQLite file {path} does not answer" in caplog.text


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis:6379", "redis://host:port/0"])
def test_a_redis_url_that_is_no_redis_url_stops_start_up(environ, url):
    with pytest.raises(SettingsError, match="REDIS_URL") as refused:
        create_app({**environ, "REDIS_URL": url})

    assert url not in str(refused.value)  # a REDIS_URL may hold a password
