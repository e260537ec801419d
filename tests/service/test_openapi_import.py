"""/openapi.json imports into requests that work: Postman's converter (openapi-to-postmanv2)
turns the document the service serves into a collection, and newman runs it against the
service as the Procfile starts it, in front of the Stream stand-in: every generated request
gets its documented success status.

What JSON Schema cannot say is added to the collection here, as schemathesis's hooks do: the
webhook's request is signed with the API secret (and sent uncompressed), and the bearer the
document's security schemes ask for is METRICS_TOKEN (the other routes' bearers are off in
workshop mode)."""

import json
import subprocess

import pytest
import requests

import live
from support.newman import NEWMAN, require_newman

API_KEY = "import-key"
API_SECRET = "import-secret-" + "i" * 32
METRICS_TOKEN = "import-metrics-" + "m" * 32
CONVERTER = live.ROOT / "tests" / "support" / "openapi_to_postman.js"

SIGN_THE_WEBHOOK = [
    "// Stream signs its webhooks with the app's secret: a document cannot hold a signature.",
    "if (pm.request.url.getPath().endsWith('/stream-incoming-wh')) {",
    "  const crypto = require('crypto-js');",
    "  const body = pm.request.body.raw;",
    "  const signature = crypto.HmacSHA256(body, pm.variables.get('STREAM_API_SECRET')).toString(crypto.enc.Hex);",
    "  pm.request.headers.upsert({key: 'X-Signature', value: signature});",
    "  pm.request.headers.upsert({key: 'X-Api-Key', value: pm.variables.get('STREAM_API_KEY')});",
    "  pm.request.headers.remove('Content-Encoding');",
    "}",
]


def requests_of(items):
    for item in items:
        yield from requests_of(item["item"]) if "item" in item else [item]


def documented_success(item) -> int:
    """The success status the document gives the request (its saved 2xx answer)."""
    return min(answer["code"] for answer in item["response"] if 200 <= answer["code"] < 300)


def expecting_documented_success(collection: dict) -> dict:
    """The converted collection, signing the webhook and asserting each request's success status."""
    for item in requests_of(collection["item"]):
        status = documented_success(item)
        name = f"{item['request']['method']} {item['name']}"
        test = f"pm.test({json.dumps(name + ' answers ' + str(status))}, () => pm.response.to.have.status({status}));"
        item["event"] = [{"listen": "test", "script": {"type": "text/javascript", "exec": [test]}}]
    collection["event"] = [{"listen": "prerequest", "script": {"type": "text/javascript", "exec": SIGN_THE_WEBHOOK}}]
    return collection


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("import")
    with live.stand_in(API_KEY, API_SECRET) as stand_in:
        env = {
            "STREAM_API_KEY": API_KEY,
            "STREAM_API_SECRET": API_SECRET,
            "STREAM_CHAT_URL": stand_in,
            "TOKEN_AUTH": "open",
            "METRICS_TOKEN": METRICS_TOKEN,
            "WEBHOOK_DB": str(folder / "webhooks.sqlite3"),
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": "WARNING",
        }
        with live.service(env, quiet=True) as url:
            yield url


def test_the_served_document_names_the_service_as_its_server(service):
    document = requests.get(f"{service}/openapi.json", timeout=5).json()

    assert document["servers"] == [{"url": service}]


@pytest.mark.parametrize("path", ["//docs", "//healthz", "//docs/swagger-ui.css"])
def test_a_path_starting_with_two_slashes_is_a_404_over_http(service, path):
    response = requests.get(f"{service}{path}", timeout=5, allow_redirects=False)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"


def test_the_converted_document_runs_with_every_request_getting_its_documented_success(service, tmp_path):
    require_newman()
    (tmp_path / "openapi.json").write_bytes(requests.get(f"{service}/openapi.json", timeout=5).content)
    subprocess.run(
        ["node", str(CONVERTER), str(tmp_path / "openapi.json"), str(tmp_path / "converted.json")],
        check=True,
        timeout=60,
    )
    collection = json.loads((tmp_path / "converted.json").read_text())
    (tmp_path / "collection.json").write_text(json.dumps(expecting_documented_success(collection)))

    result = subprocess.run(
        [
            str(NEWMAN),
            "run",
            str(tmp_path / "collection.json"),
            "--env-var",
            f"bearerToken={METRICS_TOKEN}",
            "--env-var",
            f"STREAM_API_SECRET={API_SECRET}",
            "--env-var",
            f"STREAM_API_KEY={API_KEY}",
            "--color",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(requests_of(collection["item"]))) == 15
    assert result.stdout.count(" answers 200") >= 15
