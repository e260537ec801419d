"""Property-based: whatever a client sends to any route, as JSON or as raw bytes, the service
never answers 5xx, always answers JSON, and never sends Stream invalid data."""

import copy
import gzip
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import create_app
from stream_backend.stream.rules import ID_PATTERN

from support.examples import API_KEY, API_SECRET, CHANNEL_BODY, MESSAGE_BODY, PRIMARY_SYNC_SECRET, sign, webhook_event
from support.stream import load_spec, off_spec
from support.stream import stream_in_memory as stream_stand_in

# Lone UTF-16 surrogates ("\ud800" in JSON), which no UTF-8 encoder takes, and integers past a
# double's range: JSON parses both, Stream cannot store either.
# A high surrogate followed by a low one is a pair, which JSON decodes to one valid character.
lone_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3).filter(
    lambda text: not re.search("[\ud800-\udbff][\udc00-\udfff]", text)
)
huge_integers = st.integers(min_value=10**308, max_value=10**400) | st.integers(max_value=-(10**309))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | lone_surrogates
    | huge_integers,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=4),
    max_leaves=12,
)


def paths(value, prefix=()):
    """Every path to a value inside a JSON object, as tuples of keys."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from paths(child, prefix + (key,))


def mutated(example):
    """The example with one of its fields (maybe a new one) set to any JSON value."""

    @st.composite
    def build(draw):
        body = copy.deepcopy(example)
        path = draw(st.sampled_from(list(paths(example))))
        if draw(st.booleans()):
            path = path[:-1] + (draw(st.text(max_size=10)),)
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(json_values)
        return body

    return build()


def rewritten(example):
    """The example with its text fields set to any text, and any custom data added: mostly
    valid bodies, so that they reach Stream."""

    @st.composite
    def build(draw):
        body = copy.deepcopy(example)
        for path in paths(example):
            target = body
            for key in path[:-1]:
                target = target[key]
            is_id = path[-1] in ("id", "creator_id")  # a random id is refused before Stream
            if isinstance(target[path[-1]], str) and not is_id and draw(st.booleans()):
                target[path[-1]] = draw(st.text(max_size=60))
            if path[-1] == "custom_data":
                target["custom_data"].update(draw(st.dictionaries(st.text(max_size=15), json_values, max_size=3)))
        return body

    return build()


# JSON text that no Python value dumps to: nesting past the limit, numbers past a double's
# range, and lone surrogates in keys.
hostile_json = st.one_of(
    st.integers(33, 600).map(lambda levels: "[" * levels + "]" * levels),
    st.sampled_from(["1e400", "-1e999", "2e308", "1" + "0" * 400]),
    lone_surrogates.map(lambda text: json.dumps({text: 1})),
)
RAW = "\x00raw\x00"


def hostile(example):
    """The example with one of its fields (maybe a new one) set to hostile JSON text."""

    @st.composite
    def build(draw):
        body = draw(mutated(example).filter(lambda body: RAW not in json.dumps(body)))
        path = draw(st.sampled_from(list(paths(body))))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = RAW
        return json.dumps(body).replace(json.dumps(RAW), draw(hostile_json)).encode()

    return build()


def bodies(example):
    """Raw bytes, any JSON value, or the route's real body with one field changed (to hostile
    JSON, too) or its text rewritten."""
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda value: json.dumps(value).encode()),
        mutated(example).map(lambda value: json.dumps(value).encode()),
        rewritten(example).map(lambda value: json.dumps(value).encode()),
        hostile(example),
    )


UPDATE_BODY = {"message": {"text": "edited", "mood": "calm"}, "user": {"id": "tommaso"}}
path_parts = st.text(min_size=1, max_size=30).map(lambda text: quote(text, safe=""))
flags = st.one_of(st.none(), st.text(max_size=8))

requests_to_any_route = st.one_of(
    st.tuples(st.just("POST"), st.just("/generate-token"), bodies({"user_id": "tommaso"})),
    st.tuples(st.just("POST"), st.just("/channel"), bodies(CHANNEL_BODY)),
    st.tuples(st.just("POST"), st.just("/message"), bodies(MESSAGE_BODY)),
    st.tuples(st.just("PUT"), path_parts.map(lambda id: f"/message/{id}"), bodies(UPDATE_BODY)),
    st.tuples(
        st.just("DELETE"),
        st.tuples(path_parts, flags).map(
            lambda parts: f"/message/{parts[0]}" + (f"?hard={quote(parts[1])}" if parts[1] is not None else "")
        ),
        st.just(b""),
    ),
    st.tuples(
        st.just("DELETE"),
        st.tuples(path_parts, path_parts, flags).map(
            lambda parts: (
                f"/channel/{parts[0]}/{parts[1]}" + (f"?hard={quote(parts[2])}" if parts[2] is not None else "")
            )
        ),
        st.just(b""),
    ),
)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    environ = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path_factory.mktemp("db") / "webhooks.sqlite3"),
    }
    return create_app(environ)


def assert_answered_in_json(response):
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert isinstance(json.loads(response.get_data()), dict)


def assert_valid_for_stream(sent):
    """Our own rules on what reaches Stream, and Stream's spec when it is at hand."""
    body = json.loads(sent.body) if sent.body else {}
    for user_id, user in body.get("users", {}).items():
        assert re.fullmatch(ID_PATTERN, user_id) and user["id"] == user_id
        assert set(user) <= {"id", "name", "image"}
    for member in body.get("data", {}).get("members", []):
        assert re.fullmatch(ID_PATTERN, member["user_id"])
    spec = load_spec()
    if spec is not None:
        assert off_spec(spec, sent) is None


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(request=requests_to_any_route)
def test_any_request_to_any_route_is_answered_in_json_without_5xx(app, request):
    method, path, body = request
    with stream_stand_in() as stream:
        response = app.test_client().open(path, method=method, data=body, content_type="application/json")

    assert_answered_in_json(response)
    event(f"{method} {path.split('/')[1]}: {response.status_code}, {len(stream.request_history)} Stream calls")
    for sent in stream.request_history:
        assert_valid_for_stream(sent)
    if 400 <= response.status_code < 500 and "api_error" not in response.get_json():
        assert stream.request_history == []  # refused by us: nothing was sent to Stream


JSON_ROUTES = [
    ("POST", "/generate-token", {"user_id": "tommaso"}),
    ("POST", "/channel", CHANNEL_BODY),
    ("POST", "/message", MESSAGE_BODY),
    ("PUT", "/message/m-1", UPDATE_BODY),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), route=st.sampled_from(JSON_ROUTES))
def test_hostile_json_anywhere_in_a_body_is_a_400_before_stream(app, data, route):
    method, path, example = route
    body = data.draw(hostile(example))
    with stream_stand_in() as stream:
        response = app.test_client().open(path, method=method, data=body, content_type="application/json")

    assert response.status_code == 400, body[:200]
    assert response.is_json
    assert stream.request_history == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.builds(webhook_event, st.text(max_size=20)),
    ),
    signed=st.booleans(),
    api_key=st.one_of(st.none(), st.text(max_size=10)),
    compressed=st.sampled_from([None, "gzip", "gzip, truncated"]),
)
def test_any_webhook_delivery_is_answered_in_json_without_5xx(app, body, signed, api_key, compressed):
    headers = {"X-Webhook-Id": "wh-property"}
    if signed:
        headers["X-Signature"] = sign(body)
    if api_key is not None and api_key.isprintable() and api_key.isascii():
        headers["X-Api-Key"] = api_key
    if compressed:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)[: -4 if "truncated" in compressed else None]

    response = app.test_client().post("/stream-incoming-wh", data=body, headers=headers)

    assert_answered_in_json(response)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    authorization=st.text(max_size=60).filter(lambda text: text.isascii() and text.isprintable()),
    body=bodies({"user_id": "tommaso"}),
)
def test_any_bearer_in_jwt_mode_is_answered_in_json_without_5xx(tmp_path_factory, authorization, body):
    client = jwt_app(tmp_path_factory).test_client()

    response = client.post("/generate-token", data=body, headers={"Authorization": authorization})

    assert_answered_in_json(response)
    assert response.status_code in (400, 401, 403, 413)


_jwt_app = []


def jwt_app(tmp_path_factory):
    if not _jwt_app:
        _jwt_app.append(
            create_app(
                {
                    "STREAM_API_KEY": API_KEY,
                    "STREAM_API_SECRET": API_SECRET,
                    "TOKEN_AUTH": "jwt",
                    "AUTH_JWT_SECRET": "session-secret-" + "q" * 32,
                    "SYNC_API_TOKEN": "sync-token-" + "w" * 32,
                    "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET,
                    "WEBHOOK_DB": str(tmp_path_factory.mktemp("db") / "webhooks.sqlite3"),
                }
            )
        )
    return _jwt_app[0]
