"""POST /generate-token: a Stream user token for a valid user id, signed locally."""

import time

import jwt
import pytest

from app import create_app

from support.examples import API_SECRET


def decode(token):
    return jwt.decode(token, API_SECRET, algorithms=["HS256"])


def test_token_is_a_jwt_for_the_user(client, stream):
    response = client.post("/generate-token", json={"user_id": "tommaso"})

    assert response.status_code == 200
    assert decode(response.get_json()["token"])["user_id"] == "tommaso"
    assert stream.call_count == 0  # signed locally


def test_token_expires_after_the_configured_ttl(environ):
    client = create_app({**environ, "TOKEN_TTL_SECONDS": "120"}).test_client()
    before = int(time.time())
    claims = decode(client.post("/generate-token", json={"user_id": "tommaso"}).get_json()["token"])

    assert before + 120 <= claims["exp"] <= int(time.time()) + 120


def test_token_expires_after_an_hour_by_default(client):
    claims = decode(client.post("/generate-token", json={"user_id": "tommaso"}).get_json()["token"])

    assert abs(claims["exp"] - (time.time() + 3600)) < 5


def test_token_is_issued_in_the_past_because_stream_refuses_a_future_iat(client):
    claims = decode(client.post("/generate-token", json={"user_id": "tommaso"}).get_json()["token"])

    assert claims["iat"] < time.time() - 1


def test_body_without_json_content_type_is_read_as_json(client):
    response = client.post("/generate-token", data='{"user_id": "tommaso"}', content_type="text/plain")

    assert response.status_code == 200
    assert decode(response.get_json()["token"])["user_id"] == "tommaso"


@pytest.mark.parametrize("debug", [False, True])
def test_answer_is_one_line_of_json_for_android_readline(environ, debug):
    app = create_app(environ)
    app.debug = debug  # what FLASK_DEBUG=1 does
    response = app.test_client().post("/generate-token", json={"user_id": "tommaso"})

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert b"\n" not in response.data.rstrip(b"\n")


@pytest.mark.parametrize(
    "user_id",
    [
        None,
        "",
        42,
        True,
        ["tommaso"],
        {"id": "tommaso"},
        "tom maso",
        "tommaso!",
        "томазо",
        "a" * 256,
        "../admin",
    ],
)
def test_invalid_user_id_is_a_400_naming_the_field(client, stream, user_id):
    response = client.post("/generate-token", json={"user_id": user_id})

    assert response.status_code == 400
    assert response.get_json()["field"] == "user_id"
    assert "user_id" in response.get_json()["error"]


def test_missing_user_id_is_a_400(client):
    response = client.post("/generate-token", json={})

    assert response.status_code == 400
    assert "user_id" in response.get_json()["error"]


@pytest.mark.parametrize("user_id", ["tommaso", "a", "user@example_com-1", "a" * 255])
def test_every_stream_user_id_character_is_accepted(client, user_id):
    response = client.post("/generate-token", json={"user_id": user_id})

    assert response.status_code == 200
    assert decode(response.get_json()["token"])["user_id"] == user_id
