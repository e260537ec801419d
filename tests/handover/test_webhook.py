"""POST /stream-incoming-wh: Stream's signed deliveries in, everything else out."""

import gzip
import json
import tracemalloc
import zlib

import pytest

from app import create_app
from stream_backend.errors import SettingsError
from stream_backend.handover import body as webhook_body

from support.examples import API_KEY, sign, webhook_event


def deliver(client, body, signature=None, **headers):
    headers = {
        "X-Signature": sign(body) if signature is None else signature,
        "X-Webhook-Id": "wh-1",
        "X-Webhook-Attempt": "1",
        "X-Api-Key": API_KEY,
        **headers,
    }
    return client.post(
        "/stream-incoming-wh",
        data=body,
        headers={name: value for name, value in headers.items() if value is not ...},
        content_type="application/json",
    )


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

    response = deliver(client, gzip.compress(body), signature=sign(body), **{"Content-Encoding": "gzip"})

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


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"message.new"', b"{}", b'{"type": 7}', b'{"type": null}'])
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

    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("webhook ")]
    assert len(lines) == 1
    logged = json.loads(lines[0].split(" ", 1)[1])
    assert logged == {
        "outcome": "ignored",
        "type": "channel.created",
        "cid": "messaging:fun",
        "message_id": "m-1",
        "webhook_id": "wh-42",
        "attempt": "1",
    }


# --- Bounded inflation ------------------------------------------------------------------------


def gzip_bomb(inflated_size: int) -> bytes:
    """Zeros, compressed about a thousand to one."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = [
        compressor.compress(chunk[: min(len(chunk), inflated_size - done)])
        for done in range(0, inflated_size, len(chunk))
    ]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_gzip_bomb_is_a_413_without_inflating_it(client, signed, encoding):
    bomb = gzip_bomb(64 * 1024 * 1024)  # 64 MB of zeros in 64 KB
    headers = {"X-Signature": sign(bytes(64 * 1024 * 1024)) if signed else "0" * 64}
    if encoding:
        headers["Content-Encoding"] = encoding

    tracemalloc.start()
    response = client.post("/stream-incoming-wh", data=bomb, headers=headers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.get_json()["error"]
    assert peak < 8 * 1024 * 1024  # the default MAX_BODY_BYTES (1 MiB) inflated, and some copies


def test_body_inflating_to_exactly_the_limit_is_read_and_one_byte_more_is_not(environ):
    body = webhook_event()
    client = create_app({**environ, "MAX_BODY_BYTES": str(len(body))}).test_client()
    longer = body[:-1] + b" }"

    assert deliver(client, gzip.compress(body), signature=sign(body)).status_code == 200
    assert deliver(client, gzip.compress(longer), signature=sign(longer)).status_code == 413


def test_gzip_body_in_several_members_is_read_whole(client):
    body = webhook_event()

    response = deliver(client, gzip.compress(body[:40]) + gzip.compress(body[40:]), signature=sign(body))

    assert response.status_code == 200


def test_gzip_body_ending_in_an_empty_member_is_read(client):
    body = webhook_event()

    response = deliver(client, gzip.compress(body) + gzip.compress(b""), signature=sign(body))

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "logged"


def test_gzip_body_in_up_to_four_members_is_read_and_in_more_is_a_400(client):
    body = webhook_event()
    parts = [body[:10], body[10:20], body[20:30], body[30:]]
    in_four = b"".join(gzip.compress(part) for part in parts)

    assert deliver(client, in_four, signature=sign(body)).status_code == 200
    response = deliver(client, in_four + gzip.compress(b""), signature=sign(body))
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "The webhook body could not be read: the gzip stream has more than 4 members."
    )


def test_many_one_byte_gzip_members_cost_at_most_four_inflaters(monkeypatch):
    bomb = b"".join(gzip.compress(b"x") for _ in range(40_000))
    inflaters = []
    real = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *args: inflaters.append(1) or real(*args))

    with pytest.raises(webhook_body.CorruptBody):
        webhook_body.inflate(bomb, 1024 * 1024)
    assert len(inflaters) == webhook_body.MAX_GZIP_MEMBERS


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda gz: gz[:-6],  # truncated
        lambda gz: gz[:12] + b"\xff" * 8 + gz[20:],  # garbled
        lambda gz: gz + b"trailing bytes",
    ],
)
def test_corrupt_gzip_is_a_400_naming_the_problem(client, corrupt):
    body = webhook_event()

    response = deliver(client, corrupt(gzip.compress(body)), signature=sign(body), **{"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert "gzip" in response.get_json()["error"]


def test_a_signed_body_that_is_not_utf8_is_a_400(client):
    body = json.dumps(json.loads(webhook_event())).encode("utf-16")

    response = deliver(client, body, signature=sign(body))

    assert response.status_code == 400
    assert response.get_json()["error"] == "The webhook body could not be read: the body is not UTF-8."


def test_gzip_header_on_a_plain_body_is_a_400(client):
    body = webhook_event()

    assert deliver(client, body, **{"Content-Encoding": "gzip"}).status_code == 400


# --- IP allow-list ----------------------------------------------------------------------------


def from_address(client, address, **headers):
    body = webhook_event()
    return client.post(
        "/stream-incoming-wh",
        data=body,
        environ_base={"REMOTE_ADDR": address},
        headers={"X-Signature": sign(body), **headers},
    )


@pytest.fixture
def allow_listed(environ):
    def make(**settings):
        return create_app(
            {**environ, "WEBHOOK_ALLOWED_IPS": "34.225.10.29, 52.212.14.0/24, 2001:db8::/32", **settings}
        ).test_client()

    return make


@pytest.mark.parametrize(
    "address, status",
    [
        ("34.225.10.29", 200),
        ("52.212.14.212", 200),
        ("2001:db8::7", 200),
        ("::ffff:34.225.10.29", 200),
        ("34.225.10.30", 403),
        ("52.212.15.1", 403),
        ("2001:db9::1", 403),
        ("127.0.0.1", 403),
    ],
)
def test_only_allowed_addresses_reach_the_webhook(allow_listed, stream, address, status):
    response = from_address(allow_listed(), address)

    assert response.status_code == status
    assert response.is_json
    if status == 403:
        assert "WEBHOOK_ALLOWED_IPS" in response.get_json()["error"]


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(allow_listed):
    forged = {"X-Forwarded-For": "34.225.10.29"}

    assert from_address(allow_listed(), "198.51.100.1", **forged).status_code == 403
    assert from_address(allow_listed(TRUSTED_PROXY_COUNT="1"), "10.0.0.2", **forged).status_code == 200


def test_with_one_trusted_proxy_only_the_address_it_saw_counts(allow_listed):
    client = allow_listed(TRUSTED_PROXY_COUNT="1")
    # The client put an allowed address first; the proxy appended the address it really saw.
    response = from_address(client, "10.0.0.2", **{"X-Forwarded-For": "34.225.10.29, 198.51.100.1"})

    assert response.status_code == 403


def test_without_an_allow_list_any_address_is_let_through(client):
    assert from_address(client, "198.51.100.1").status_code == 200


@pytest.mark.parametrize("value", ["10.0.0.1/33", "not-an-ip", "10.0.0.1/24"])
def test_a_malformed_allow_list_stops_start_up_naming_it(environ, value):
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_IPS"):
        create_app({**environ, "WEBHOOK_ALLOWED_IPS": f"34.225.10.29,{value}"})
