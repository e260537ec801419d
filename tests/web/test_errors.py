"""Every failure answers JSON with a status that says whose fault it is."""

import pytest
import requests

from support.examples import CHANNEL_BODY, MESSAGE_BODY
from support.stream import STREAM_URL


def stream_error(code, message, status):
    return {
        "code": code,
        "message": message,
        "StatusCode": status,
        "duration": "1.00ms",
        "more_info": "https://getstream.io/chat/docs/api_errors_response",
        "details": [],
    }


@pytest.mark.parametrize("status, code", [(400, 4), (404, 16), (409, 4), (413, 22), (429, 9)])
def test_stream_errors_about_the_request_pass_through(client, stream, status, code):
    stream.post(
        f"{STREAM_URL}/users",
        status_code=status,
        json=stream_error(code, f'UpdateUsers failed with error: "problem {status}"', status),
    )

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == status
    body = response.get_json()
    assert body["api_error"] == f'UpdateUsers failed with error: "problem {status}"'
    assert body["stream_code"] == code
    assert f"problem {status}" in body["error"]


@pytest.mark.parametrize("status", [401, 403, 500, 502, 503])
def test_stream_failures_not_caused_by_the_caller_are_a_502(client, stream, status):
    stream.post(f"{STREAM_URL}/users", status_code=status, json=stream_error(17, "nope", status))

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 502
    assert response.get_json()["api_error"] == "nope"
    assert response.get_json()["error"]


def test_stream_answer_that_is_not_json_is_a_502(client, stream):
    stream.post(f"{STREAM_URL}/users", status_code=502, text="<html>Bad Gateway</html>")

    response = client.post("/channel", json=CHANNEL_BODY)

    assert response.status_code == 502
    assert response.is_json
    assert "html" not in response.get_data(as_text=True).lower()


def test_stream_timeout_is_a_504(client, stream):
    stream.post(f"{STREAM_URL}/users", exc=requests.exceptions.ReadTimeout)

    response = client.post("/message", json=MESSAGE_BODY)

    assert response.status_code == 504
    assert "did not answer" in response.get_json()["error"]


def test_stream_connection_failure_is_a_502(client, stream):
    stream.post(f"{STREAM_URL}/users", exc=requests.exceptions.ConnectionError)

    response = client.post("/message", json=MESSAGE_BODY)

    assert response.status_code == 502
    assert "could not be reached" in response.get_json()["error"]


def test_a_failed_step_stops_the_ones_after_it(client, stream):
    stream.post(f"{STREAM_URL}/users", status_code=400, json=stream_error(4, "bad user", 400))

    client.post("/message", json=MESSAGE_BODY)

    assert [request.path for request in stream.request_history] == ["/users"]


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/nowhere", 404),
        ("GET", "/channel", 405),
        ("PUT", "/generate-token", 405),
        ("GET", "/stream-incoming-wh", 405),
        ("DELETE", "/channel/messaging//general", 404),
        ("DELETE", "/message//m-1", 404),
    ],
)
def test_flask_errors_are_json(client, method, path, status):
    response = client.open(path, method=method)

    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]


def test_405_keeps_its_allow_header(client):
    response = client.get("/channel")

    assert "POST" in response.headers["Allow"]


def test_healthz_answers_without_calling_stream(client, stream):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert stream.call_count == 0
