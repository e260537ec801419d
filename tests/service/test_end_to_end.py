"""The service as the Procfile starts it (gunicorn), against the Stream stand-in over HTTP,
driven by real HTTP clients: requests, and newman running the Postman collections."""

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests

import live
from identity_stand_in import IdentityProvider, serving
from primary_system import PrimarySystem
from support.examples import PRIMARY_SYNC_SECRET, origin_mark, sign, webhook_event
from support.newman import NEWMAN, require_newman

API_KEY = "e2e-key"
API_SECRET = "e2e-secret-" + "e" * 32
REFERENCE_COLLECTION = Path(
    os.environ.get(
        "REFERENCE_COLLECTION", live.ROOT.parent / "shared/reference/nextdoor-workshop.postman_collection.json"
    )
)


@pytest.fixture(scope="module")
def stand_in():
    with live.stand_in(API_KEY, API_SECRET) as url:
        yield url


@pytest.fixture(scope="module")
def service(stand_in, tmp_path_factory):
    env = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": stand_in,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path_factory.mktemp("webhooks") / "webhooks.sqlite3"),
    }
    with live.service(env) as url:
        yield url


@pytest.fixture
def received(stand_in):
    """What the stand-in receives during one test."""
    requests.delete(f"{stand_in}/_stand_in/requests", timeout=5)
    return lambda: requests.get(f"{stand_in}/_stand_in/requests", timeout=5).json()["requests"]


def newman(collection, service, *options):
    require_newman()
    return subprocess.run(
        [str(NEWMAN), "run", str(collection), "--env-var", f"HOST={service}", "--color", "off", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_reference_collection_passes_unchanged(service):
    if not REFERENCE_COLLECTION.is_file():
        pytest.skip(f"the reference collection is not at {REFERENCE_COLLECTION}; set REFERENCE_COLLECTION")

    result = newman(REFERENCE_COLLECTION, service, "--bail")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "AssertionError" not in result.stdout


def test_project_collection_passes_with_every_assertion(service):
    result = newman(live.ROOT / "postman_collection.json", service, "--env-var", f"STREAM_API_SECRET={API_SECRET}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "AssertionError" not in result.stdout


def test_project_collection_passes_when_run_again(service):
    """Every write is safe to repeat: a second run against the same Stream still passes."""
    result = newman(live.ROOT / "postman_collection.json", service, "--env-var", f"STREAM_API_SECRET={API_SECRET}")

    assert result.returncode == 0, result.stdout + result.stderr


def test_project_collection_checks_a_jwt_deployment_with_its_variables(stand_in, tmp_path):
    """TOKEN_AUTH=jwt against an identity provider's keys (a real local JWKS server), with the
    sync token: the collection's SESSION_JWT and SYNC_API_TOKEN variables carry the bearers."""
    provider = IdentityProvider("https://identity.stand-in.invalid/")
    provider.add_key("EC")
    sync_token = "e2e-sync-token-" + "s" * 32
    with serving(provider) as jwks_url:
        env = {
            "STREAM_API_KEY": API_KEY,
            "STREAM_API_SECRET": API_SECRET,
            "STREAM_CHAT_URL": stand_in,
            "TOKEN_AUTH": "jwt",
            "AUTH_JWKS_URL": jwks_url,
            "SYNC_API_TOKEN": sync_token,
            "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET,
            "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
            "WEB_CONCURRENCY": "2",
        }
        with live.service(env, quiet=True) as url:
            variables = {"STREAM_API_SECRET": API_SECRET, "SYNC_API_TOKEN": sync_token}
            without_session = newman(live.ROOT / "postman_collection.json", url, *env_vars(variables))
            variables["SESSION_JWT"] = provider.session_jwt("tommaso")
            result = newman(live.ROOT / "postman_collection.json", url, *env_vars(variables))

    assert result.returncode == 0, result.stdout + result.stderr
    assert without_session.returncode != 0 and "but got 401" in without_session.stdout  # the token needs it


def env_vars(variables: dict[str, str]) -> list[str]:
    return [option for name, value in variables.items() for option in ("--env-var", f"{name}={value}")]


def test_the_sync_requests_pass_against_streams_earlier_not_found(tmp_path):
    """Until 2026-03 Stream answered a missing message 400 with code 4 (docs/stream-behaviour.md,
    B30, B35): the repeated delete and the unknown update pass on that form too."""
    with (
        live.stand_in(API_KEY, API_SECRET, options=("--message-not-found-code", "4")) as stand_in_url,
        live.service(
            {
                "STREAM_API_KEY": API_KEY,
                "STREAM_API_SECRET": API_SECRET,
                "STREAM_CHAT_URL": stand_in_url,
                "TOKEN_AUTH": "open",
                "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
            }
        ) as url,
    ):
        result = newman(live.ROOT / "postman_collection.json", url, "--folder", "Sync")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Delete Message: repeated" in result.stdout and "Update Message: unknown id (404)" in result.stdout


def test_token_over_http_is_one_line_of_json(service):
    response = requests.post(f"{service}/generate-token", data='{"user_id": "tommaso"}', timeout=5)

    assert response.status_code == 200
    assert response.text.count("\n") <= 1 and response.text.startswith("{")
    claims = jwt.decode(response.json()["token"], API_SECRET, algorithms=["HS256"])
    assert claims["user_id"] == "tommaso"


def test_message_reaches_the_stand_in_with_its_members(service, received):
    body = {
        "channel": {"creator_id": "ana", "custom_data": {"title": "E2E"}},
        "members": {"ana": {"name": "Ana"}, "bo": {"name": "Bo"}},
        "message": {"id": "e2e-message-1", "text": "over HTTP"},
        "user": {"id": "ana", "name": "Ana"},
    }

    response = requests.post(f"{service}/message", json=body, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["message"]["id"] == "e2e-message-1"
    calls = received()
    assert [call["path"] for call in calls][:2] == ["/users", "/channels/messaging/query"]
    assert calls[1]["body"]["data"]["title"] == "E2E"
    assert calls[2]["body"]["message"] == {
        "id": "e2e-message-1",
        "text": "over HTTP",
        "user": {"id": "ana"},
        "primary_origin": origin_mark("e2e-message-1", response.json()["cid"], "ana", API_SECRET),
    }


def test_stream_error_passes_through_as_json(service):
    body = {
        "channel": {"creator_id": "ana"},
        "members": {"ana": {}},
        "message": {"id": "e2e-dup", "text": "once"},
        "user": {"id": "ana"},
    }
    requests.post(f"{service}/message", json=body, timeout=10)

    again = requests.post(f"{service}/message", json=body, timeout=10)

    assert again.headers["Content-Type"] == "application/json"
    assert again.status_code < 500


def test_cors_preflight_from_a_browser_origin(service):
    response = requests.options(
        f"{service}/generate-token",
        timeout=5,
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:3000")


def test_unknown_route_is_json_not_html(service):
    response = requests.get(f"{service}/nowhere", timeout=5)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"


def test_gunicorn_without_credentials_refuses_to_start():
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAM_")}
    env["PATH"] = f"{Path(live.sys.executable).parent}{os.pathsep}{env['PATH']}"
    port = live.free_port()
    result = subprocess.run(
        ["bash", "-c", f"exec {live.procfile_command()}"],
        cwd=live.ROOT,
        env={**env, "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "STREAM_API_KEY and STREAM_API_SECRET must be set" in result.stderr
    assert shutil.which("gunicorn", path=env["PATH"])


def test_run_command_without_credentials_serves_through_the_stand_in(tmp_path):
    """`make run` on a fresh clone with no .env: the stand-in starts, and the service uses it."""
    if (live.ROOT / ".env").exists():
        pytest.skip("a .env is present: this test is about a fresh clone without one")
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAM_")}
    port, stand_in_port = live.free_port(), live.free_port()
    env.update(PYTHON=live.sys.executable, PORT=str(port), STAND_IN_PORT=str(stand_in_port))
    process = subprocess.Popen(
        [str(live.ROOT / "bin" / "run")],
        cwd=tmp_path,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        live.wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        url = f"http://127.0.0.1:{port}"
        token = requests.post(f"{url}/generate-token", json={"user_id": "tommaso"}, timeout=5)
        channel = requests.post(
            f"{url}/channel",
            json={"channel": {"creator_id": "tommaso", "id": "general"}, "members": {"tommaso": {"name": "Tommaso"}}},
            timeout=5,
        )
        message = requests.post(
            f"{url}/message",
            json={
                "channel": {"creator_id": "tommaso", "id": "general"},
                "members": {"tommaso": {"name": "Tommaso"}},
                "message": {"id": "first", "text": "hi"},
                "user": {"id": "tommaso"},
            },
            timeout=5,
        )
    finally:
        os.killpg(process.pid, 15)
        _, stderr = process.communicate(timeout=30)

    assert token.status_code == 200 and token.json()["token"]
    assert channel.status_code == 200 and channel.json()["cid"]
    assert message.status_code == 200 and message.json()["message"]["id"] == "first"
    assert "LOCAL STREAM STAND-IN" in stderr
    assert ".env" in stderr


def test_copies_of_a_delivery_across_gunicorn_workers_reach_the_primary_once(stand_in, tmp_path):
    """Twenty copies of one webhook delivery at once, over HTTP, to the Procfile's workers."""
    body = webhook_event("message.new")
    headers = {
        "X-Signature": sign(body, API_SECRET),
        "X-Webhook-Id": "e2e-delivery",
        "X-Webhook-Attempt": "1",
        "Content-Type": "application/json",
    }
    with (
        PrimarySystem(delay=0.3) as primary,
        live.service(
            {
                "STREAM_API_KEY": API_KEY,
                "STREAM_API_SECRET": API_SECRET,
                "STREAM_CHAT_URL": stand_in,
                "TOKEN_AUTH": "open",
                "PRIMARY_SYNC_URL": primary.url,
                "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
            }
        ) as url,
    ):
        with ThreadPoolExecutor(20) as pool:
            answers = list(
                pool.map(
                    lambda _: requests.post(f"{url}/stream-incoming-wh", data=body, headers=headers, timeout=10),
                    range(20),
                )
            )
        late_retry = requests.post(f"{url}/stream-incoming-wh", data=body, headers=headers, timeout=10)
        primary.wait_for(1)
        time.sleep(0.5)  # a second copy would be on its way by now

    assert len(primary.accepted()) == 1
    assert {answer.status_code for answer in answers} == {200}  # stored or known: no worker waits on another
    assert sum(answer.json().get("outcome") == "queued" for answer in answers) == 1
    assert late_retry.json() == {"received": "message.new", "outcome": "duplicate"}
