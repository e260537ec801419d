"""Stream's API for the tests: the stand-in's own logic (tools/stream_stand_in.py) answering in
memory through requests-mock, or served over HTTP by a thread of this process; a Stream that
answers every call 429; and the check of every request sent to Stream against its published
OpenAPI spec.

The spec is read from STREAM_OPENAPI_SPEC (default: ../shared/stream-openapi/chat-openapi.json
beside the project); without it, the check is skipped with a note.
"""

import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
import requests_mock

from live import free_port
from stream_stand_in import Faults, StandIn, StandInServer
from support.examples import API_KEY, API_SECRET

# Stream's own base URL, so requests match the spec's server; requests-mock keeps them local.
STREAM_URL = "https://chat.stream-io-api.com"

SPEC = Path(
    os.environ.get(
        "STREAM_OPENAPI_SPEC", Path(__file__).resolve().parents[3] / "shared/stream-openapi/chat-openapi.json"
    )
)


@functools.cache
def load_spec():
    """Stream's spec, read once per test run; None when the file is absent."""
    if not SPEC.is_file():
        return None
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(str(SPEC))


def off_spec(spec, sent) -> str | None:
    """The spec's objection to one request that requests-mock recorded, or None."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    prepared = requests.Request(sent.method, sent.url, headers=dict(sent.headers), data=sent.body).prepare()
    try:
        spec.validate_request(RequestsOpenAPIRequest(prepared))
    except Exception as error:  # openapi-core raises one of many classes; all mean "off spec"
        return f"{sent.method} {urlsplit(sent.url).path}: {error}"
    return None


def requests_off_spec(history) -> list[str]:
    """Every objection of the spec to the requests in `history` (none without the spec)."""
    spec = load_spec()
    if spec is None:
        return []
    return [problem for sent in history if (problem := off_spec(spec, sent))]


@contextmanager
def stream_in_memory(delay: Callable[[], float] | None = None):
    """Stream's API, answered in memory by the stand-in through requests-mock: yields the
    mocker, whose `stand_in` is the stand-in and whose `request_history` is what was sent. A
    test overrides a route by registering it again. `delay()`: seconds each answer waits
    first, as Stream's round trips do (so that concurrent requests interleave)."""
    stand_in = StandIn(API_KEY, API_SECRET)

    def answer(request, context):
        if delay is not None:
            time.sleep(delay())
        query = {key: values[-1] for key, values in parse_qs(urlsplit(request.url).query).items()}
        context.status_code, body = stand_in.answer(
            request.method, request.path, query, request.body or b"", request.headers.get("Authorization")
        )
        return body

    with requests_mock.Mocker() as mock:
        mock.register_uri(requests_mock.ANY, re.compile(re.escape(STREAM_URL) + "/"), json=answer)
        mock.stand_in = stand_in
        yield mock


@contextmanager
def stand_in_over_http(faults: Faults | None = None, latency_ms: float = 0, message_not_found_code: int = 16):
    """The stand-in served on a loopback port by a thread of this process: `(url, stand_in)`."""
    stand_in = StandIn(API_KEY, API_SECRET, latency_ms, message_not_found_code)
    if faults is not None:
        stand_in.faults = faults
    with serving(StandInServer(("127.0.0.1", free_port()), stand_in)) as url:
        yield url, stand_in


@contextmanager
def rate_limited(headers: dict[str, str]):
    """Stream, or a proxy before it, answering every call 429 with Stream's error body and
    `headers`: yields its base URL and the list of calls it received (`"METHOD /path"`)."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(f"{self.command} {urlsplit(self.path).path}")
            body = json.dumps({"code": 9, "message": "Too many requests", "StatusCode": 429}).encode()
            self.send_response(429)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, format, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving(server) as url:
        yield url, received


@contextmanager
def serving(server: ThreadingHTTPServer):
    """`server` serving from a thread until the block ends: yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
