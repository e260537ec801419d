"""Stream's API for the tests: the stand-in's own logic (tools/stream_stand_in.py) answering in
memory through requests-mock, and the check of every request sent to it against Stream's
published OpenAPI spec.

The spec is read from STREAM_OPENAPI_SPEC (default: ../shared/stream-openapi/chat-openapi.json
beside the project); without it, the check is skipped with a note.
"""

import functools
import os
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
import requests_mock

from stream_stand_in import StandIn
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
