"""The check that every request a test sends to Stream conforms to Stream's published OpenAPI
spec (the `stream` fixture runs it when each test ends): it finds a request off the spec, and
fails the test that sent it."""

import os

import pytest

from stream_backend.stream.client import build_client

from live import ROOT
from support.examples import API_KEY, API_SECRET, CHANNEL_BODY
from support.stream import SPEC, STREAM_URL, load_spec, off_spec, requests_off_spec, stream_in_memory


@pytest.fixture
def spec():
    loaded = load_spec()
    if loaded is None:
        if os.environ.get("CI"):
            pytest.fail(f"Stream's OpenAPI spec is not at {SPEC}: .ci/run sets STREAM_OPENAPI_SPEC")
        pytest.skip(f"Stream's OpenAPI spec is not at {SPEC}; set STREAM_OPENAPI_SPEC to its path")
    return loaded


def test_the_check_catches_the_reference_channel_request(spec):
    """The reference sent members as user objects: the check must refuse that."""
    with stream_in_memory() as stream:
        client = build_client(API_KEY, API_SECRET)
        client.upsert_users([{"id": "tommaso"}, {"id": "thierry"}])
        members = [{"user": {"id": "tommaso", "name": "T"}}, {"user": {"id": "thierry"}}]
        client.channel("messaging", data={"members": members}).create("tommaso")

    assert off_spec(spec, stream.request_history[0]) is None
    assert off_spec(spec, stream.request_history[1]) is not None
    assert len(requests_off_spec(stream.request_history)) == 1


def test_the_services_requests_pass_the_check(spec, client, stream):
    client.post("/channel", json=CHANNEL_BODY)

    assert stream.request_history and requests_off_spec(stream.request_history) == []
    assert all(sent.url.startswith(STREAM_URL) for sent in stream.request_history)


def test_a_test_that_sends_an_off_spec_request_fails(pytester, spec):
    """The fixture fails the very test that sent it, not a test at the end of the run."""
    pytester.makeini(f"[pytest]\npythonpath = {ROOT} {ROOT / 'tests'} {ROOT / 'tools'}\n")
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_off_spec=f"""
from stream_backend.stream.client import build_client

def test_sends_members_as_user_objects(stream):
    client = build_client({API_KEY!r}, {API_SECRET!r})
    client.upsert_users([{{"id": "tommaso"}}, {{"id": "thierry"}}])
    members = [{{"user": {{"id": "tommaso"}}}}, {{"user": {{"id": "thierry"}}}}]
    client.channel("messaging", data={{"members": members}}).create("tommaso")

def test_sends_nothing(stream):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_sends_members_as_user_objects*"])
    result.stdout.fnmatch_lines(["*1 of 2 requests sent to Stream are off Stream's spec*"])
