"""Every request the test suite sent to Stream conforms to Stream's published OpenAPI spec.

The spec is read from STREAM_OPENAPI_SPEC (default: ../shared/stream-openapi/chat-openapi.json
beside the project). This test runs after all others (see conftest.py).
"""

import copy
import functools
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import STREAM_URL
from examples import API_KEY, API_SECRET

SPEC = Path(os.environ.get(
    "STREAM_OPENAPI_SPEC",
    Path(__file__).resolve().parent.parent.parent / "shared/stream-openapi/chat-openapi.json"))


@functools.cache
def load_spec():
    """Stream's spec, read once per test run; None when the file is absent."""
    if not SPEC.is_file():
        return None
    from openapi_core import OpenAPI
    return OpenAPI.from_file_path(str(SPEC))


@pytest.fixture(scope="module")
def openapi():
    spec = load_spec()
    if spec is None:
        pytest.skip(f"Stream's OpenAPI spec is not at {SPEC}; set STREAM_OPENAPI_SPEC to its path")
    return spec


def off_spec(openapi, sent):
    """The spec's objection to one request that requests-mock recorded, or None."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest
    try:
        openapi.validate_request(RequestsOpenAPIRequest(sent._request))
    except Exception as error:  # openapi-core raises one of many classes; all mean "off spec"
        return f"{sent.method} {urlsplit(sent.url).path}: {error}"
    return None


@pytest.mark.contract
def test_every_request_sent_to_stream_conforms_to_the_spec(openapi, sent_to_stream):
    if not sent_to_stream:
        pytest.skip("no request was sent to Stream: run the whole suite, not this test alone")

    problems = [problem for sent in sent_to_stream if (problem := off_spec(openapi, sent))]

    assert problems == [], f"{len(problems)} of {len(sent_to_stream)} requests are off spec"
    assert all(sent.url.startswith(STREAM_URL) for sent in sent_to_stream)
    print(f"\n{len(sent_to_stream)} requests to Stream checked against {SPEC.name}: 0 off spec")


@pytest.mark.contract
def test_the_check_catches_the_reference_channel_request(openapi, stream):
    """The reference sent members as user objects: the check must refuse that."""
    from stream_chat import StreamChat

    stream.post(f"{STREAM_URL}/channels/messaging/query", status_code=201, json={"channel": {"id": "x"}})
    client = StreamChat(API_KEY, API_SECRET)
    client.channel("messaging", data={"members": [{"user": {"id": "tommaso", "name": "T"}}]}).create("tommaso")
    reference_request = copy.copy(stream.request_history[-1])
    stream.request_history.clear()  # deliberately off spec: keep it out of the suite's list

    assert off_spec(openapi, reference_request) is not None
