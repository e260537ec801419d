"""CORS for the routes a browser calls, from CORS_ORIGINS; none for the webhook."""

import pytest

from app import create_app

ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Content-Type",
}


@pytest.mark.parametrize("route", ["/generate-token", "/channel", "/message"])
def test_preflight_with_json_content_type_passes_on_browser_routes(client, route):
    response = client.options(route, headers=PREFLIGHT)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()


def test_answer_carries_the_allow_origin_header(client):
    response = client.post(
        "/generate-token", json={"user_id": "tommaso"}, headers={"Origin": "https://app.example.com"}
    )

    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_error_answers_carry_it_too_so_the_browser_can_read_them(client):
    response = client.post("/generate-token", json={"user_id": None}, headers={"Origin": "https://app.example.com"})

    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_webhook_answers_no_cors(client):
    preflight = client.options("/stream-incoming-wh", headers=PREFLIGHT)
    post = client.post("/stream-incoming-wh", data=b"{}", headers={"Origin": "https://app.example.com"})

    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Origin" not in post.headers


def test_origins_come_from_cors_origins(environ):
    client = create_app({**environ, "CORS_ORIGINS": "https://app.example.com, https://admin.example.com"}).test_client()

    allowed = client.options("/generate-token", headers=PREFLIGHT)
    refused = client.options("/generate-token", headers={**PREFLIGHT, "Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_browser_can_read_the_request_id(client):
    """A frontend developer can quote X-Request-Id in a bug report: the browser exposes it."""
    response = client.post("/generate-token", json={"user_id": "tommaso"}, headers={"Origin": ORIGIN})

    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    assert response.headers["X-Request-Id"]


def test_web_tools_can_fetch_the_api_document(client):
    response = client.get("/openapi.json", headers={"Origin": ORIGIN})

    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
