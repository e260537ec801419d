"""CORS for the routes a browser calls, from CORS_ORIGINS; none for the webhook."""

import pytest

from app import create_app
from stream_backend import origins
from stream_backend.errors import SettingsError

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


# --- What a CORS_ORIGINS entry means -----------------------------------------------------------


def allow_origin(environ, cors_origins, origin):
    client = create_app({**environ, "CORS_ORIGINS": cors_origins}).test_client()
    return client.options("/generate-token", headers={**PREFLIGHT, "Origin": origin}).headers.get(
        "Access-Control-Allow-Origin"
    )


@pytest.mark.parametrize(
    "origin",
    ["https://api.example.com", "https://a.b.example.com", "https://API.Example.com", "https://x-1.example.com"],
)
def test_a_wildcard_entry_allows_the_subdomains_of_its_domain(environ, origin):
    assert allow_origin(environ, "https://*.example.com", origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",  # the domain itself is not one of its subdomains
        "https://eexample.com",
        "https://eexample.com.evil.net",
        "https://api.example.com.evil.net",
        "https://evil.net/.example.com",
        "https://api.example.com:8443",
        "http://api.example.com",
        "https://-bad.example.com",
        "null",
    ],
)
def test_a_wildcard_entry_refuses_look_alikes(environ, origin):
    assert allow_origin(environ, "https://*.example.com", origin) is None


def test_a_pattern_matches_to_the_very_end_not_before_a_final_newline():
    """`$` would let "...example.com\n" through; a test client cannot even send that header."""
    assert origins.pattern("https://*.example.com").match("https://api.example.com\n") is None
    assert origins.pattern("https://app.example.com").match("https://app.example.com\n") is None


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com.evil.net", "https://appxexample.com", "https://app.example.co", "http://app.example.com"],
)
def test_an_exact_entry_allows_that_origin_only(environ, origin):
    assert allow_origin(environ, "https://app.example.com", "https://app.example.com") == "https://app.example.com"
    assert allow_origin(environ, "https://app.example.com", origin) is None


def test_an_entry_with_a_port_and_a_native_apps_scheme_are_origins_too(environ):
    entries = "http://localhost:3000, capacitor://localhost, https://*.example.com:8443"

    assert allow_origin(environ, entries, "http://localhost:3000") == "http://localhost:3000"
    assert allow_origin(environ, entries, "capacitor://localhost") == "capacitor://localhost"
    assert allow_origin(environ, entries, "https://api.example.com:8443") == "https://api.example.com:8443"
    assert allow_origin(environ, entries, "http://localhost:3001") is None


@pytest.mark.parametrize(
    "entry, says",
    [
        ("https://app.example.com/", "'https://app.example.com/' is not an origin"),
        ("https://ok.example.com, https://app.example.com/chat", "'https://app.example.com/chat' is not an origin"),
        ("app.example.com", "'app.example.com' is not an origin"),
        ("https://app.*.example.com", "'https://app.*.example.com' is not an origin"),
        ("https://*example.com", "'https://*example.com' is not an origin"),
        ("https://*.com", "'https://*.com' allows every site under a top-level domain"),
        ("https://app.example.com:443", "'https://app.example.com:443' names the default port"),
        ("https://user@app.example.com", "'https://user@app.example.com' is not an origin"),
        ("https://app.example.com, *", "'*' allows every origin, so it stands alone"),
        ("null", "'null' is not an origin"),
    ],
)
def test_an_entry_that_is_no_origin_stops_start_up_naming_it(environ, entry, says):
    with pytest.raises(SettingsError, match="CORS_ORIGINS") as refused:
        create_app({**environ, "CORS_ORIGINS": entry})

    assert says in str(refused.value)


@pytest.mark.parametrize("cors_origins", ["*", "https://app.example.com", "https://*.example.com"])
def test_a_request_without_origin_gets_no_cors_headers(environ, cors_origins):
    client = create_app({**environ, "CORS_ORIGINS": cors_origins}).test_client()

    answer = client.post("/generate-token", json={"user_id": "tommaso"})

    assert answer.status_code == 200
    assert not [name for name, _ in answer.headers if name.lower().startswith("access-control-")]
