"""POST /stream-incoming-wh: Stream's signed deliveries in, everything else out."""

import gzip
import json

import pytest

from examples import API_KEY, sign, webhook_event


def deliver(client, body, signature=None, **headers):
    headers = {"X-Signature": sign(body) if signature is None else signature,
               "X-Webhook-Id": "wh-1", "X-Webhook-Attempt": "1", "X-Api-Key": API_KEY, **headers}
    return client.post("/stream-incoming-wh", data=body, headers={
        name: value for name, value in headers.items() if value is not ...},
        content_type="application/json")


def test_signed_event_is_acknowledged(client, stream):
    response = deliver(client, webhook_event("message.new"))

    assert response.status_code == 200
    assert response.get_json() == {"received": "message.new", "outcome": "logged"}
    assert stream.call_count == 0


def test_unknown_event_type_is_acknowledged(client):
    response = deliver(client, webhook_event("something.invented.later"))

    assert response.status_code == 200


def test_gzip_body_signed_over_its_json_is_accepted(client):
    body = webhook_event("message.new")

    response = deliver(client, gzip.compress(body), signature=sign(body),
                       **{"Content-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.get_json()["received"] == "message.new"


def test_missing_signature_is_a_401(client):
    response = deliver(client, webhook_event(), signature=...)

    assert response.status_code == 401
    assert "X-Signature" in response.get_json()["error"]


@pytest.mark.parametrize("signature", ["", "0" * 64, "not-hex", "é"])
def test_wrong_signature_is_a_401(client, signature):
    response = deliver(client, webhook_event(), signature=signature)

    assert response.status_code == 401
    assert response.is_json


def test_signature_made_with_another_secret_is_a_401(client):
    body = webhook_event()

    response = deliver(client, body, signature=sign(body, secret="another-app-secret"))

    assert response.status_code == 401


def test_tampered_body_is_a_401(client):
    body = webhook_event()
    signature = sign(body)

    response = deliver(client, body.replace(b"hi", b"ha"), signature=signature)

    assert response.status_code == 401


def test_another_apps_api_key_is_a_401(client):
    response = deliver(client, webhook_event(), **{"X-Api-Key": "another-key"})

    assert response.status_code == 401
    assert "X-Api-Key" in response.get_json()["error"]


def test_missing_api_key_header_is_accepted(client):
    response = deliver(client, webhook_event(), **{"X-Api-Key": ...})

    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"message.new"', b"{}",
                                  b'{"type": 7}', b'{"type": null}'])
def test_signed_body_that_is_not_an_event_is_a_400(client, body):
    response = deliver(client, body)

    assert response.status_code == 400
    assert response.is_json


def test_corrupt_gzip_body_is_a_400(client):
    body = gzip.compress(webhook_event())[:20]

    response = deliver(client, body, signature=sign(body))

    assert response.status_code == 400


def test_accepted_event_is_logged_on_one_line(client, caplog):
    deliver(client, webhook_event("channel.created"), **{"X-Webhook-Id": "wh-42"})

    lines = [record.getMessage() for record in caplog.records
             if record.getMessage().startswith("webhook ")]
    assert len(lines) == 1
    logged = json.loads(lines[0].split(" ", 1)[1])
    assert logged == {"outcome": "ignored", "type": "channel.created", "cid": "messaging:fun",
                      "message_id": "m-1", "webhook_id": "wh-42", "attempt": "1"}
