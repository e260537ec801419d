"""GET /openapi.json: a valid OpenAPI 3.1 document that describes every route the app serves,
with the constraints the validation enforces."""

import copy
import json
import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from stream_backend.errors import InvalidRequest
from stream_backend.mirror import bodies
from stream_backend.validation import validated
from stream_backend.web.models import TokenRequest

from live import ROOT
from support.examples import CHANNEL_BODY, MESSAGE_BODY

MODELS = {
    model.__name__: model
    for model in (
        bodies.ChannelRequest,
        bodies.MessageRequest,
        bodies.MessageUpdateRequest,
        bodies.ChannelUpdateRequest,
        TokenRequest,
    )
}

# Flask answers these for every route by itself (HEAD for GET; OPTIONS, and CORS preflights).
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)  # raises on any error

    assert document["openapi"].startswith("3.1")


def test_every_flask_route_is_in_the_document_and_nothing_else(app, document):
    served = {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - AUTOMATIC_METHODS
    }
    described = {(method, path) for path, operations in document["paths"].items() for method in operations}

    assert served == described


def test_each_operation_names_its_view_and_takes_its_docstring(app, document):
    views = {endpoint.rpartition(".")[2]: view for endpoint, view in app.view_functions.items()}
    for operations in document["paths"].values():
        for operation in operations.values():
            view = views[operation["operationId"]]
            assert operation["summary"] and operation["summary"] in view.__doc__


def test_errors_are_described_with_the_error_shape(document):
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and "field" in error["properties"]
    channel = document["paths"]["/channel"]["post"]
    assert channel["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert {"syncToken": []} in channel["security"]


def test_the_webhook_headers_are_described(document):
    headers = {p["name"]: p["required"] for p in document["paths"]["/stream-incoming-wh"]["post"]["parameters"]}

    assert headers == {
        "X-Signature": True,
        "X-Api-Key": False,
        "X-Webhook-Id": False,
        "X-Webhook-Attempt": False,
        "Content-Encoding": False,
    }


def body_schema(document, name):
    """The document's schema of one request body, standing alone."""
    return {**document["components"]["schemas"][name], "$defs": document["components"]["schemas"]}


def refs_to_defs(schema):
    return json.loads(json.dumps(schema).replace("#/components/schemas/", "#/$defs/"))


def changed(body, path, value):
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    target[last] = value
    return body


# Bodies the validation refuses for a reason JSON Schema can say: the document must refuse them too.
# (Not "tommaso\n": both refuse it, as ECMA-262 patterns and pydantic's regex engine read `$` as
# the very end, but Python's `re`, which jsonschema uses here, lets a final newline through.)
REFUSED = [
    ("ChannelRequest", changed(CHANNEL_BODY, "members", {})),
    ("ChannelRequest", changed(CHANNEL_BODY, "members.bad id", {})),
    ("ChannelRequest", changed(CHANNEL_BODY, "members.thierry.role", "admin")),
    ("ChannelRequest", changed(CHANNEL_BODY, "channel.custom_data", {"frozen": "yes"})),
    ("ChannelRequest", changed(CHANNEL_BODY, "channel.type", "a:b")),
    ("ChannelRequest", changed(CHANNEL_BODY, "channel.id", "x" * 65)),
    ("MessageRequest", changed(MESSAGE_BODY, "message.text", " \t")),
    ("MessageRequest", changed(MESSAGE_BODY, "message.id", "a/b")),
    ("MessageRequest", changed(MESSAGE_BODY, "user.id", "m" * 256)),
    ("MessageUpdateRequest", {"message": {}, "user": {"id": "tommaso"}}),
    ("MessageUpdateRequest", {"message": {"primary_origin": "forged"}, "user": {"id": "tommaso"}}),
    ("TokenRequest", {"user_id": "tom maso"}),
    ("ChannelUpdateRequest", {"members": None}),
    ("ChannelUpdateRequest", {"custom_data": {"title": "x"}, "members": None}),
    ("ChannelUpdateRequest", {"members": {"bad id": {}}}),
    ("ChannelUpdateRequest", {"custom_data": {"frozen": True}}),
]

ACCEPTED = [
    ("ChannelRequest", CHANNEL_BODY),
    ("ChannelRequest", changed(CHANNEL_BODY, "channel.id", "!members-abc")),
    ("MessageRequest", MESSAGE_BODY),
    ("MessageUpdateRequest", {"message": {"text": "edited", "mood": "calm"}, "user": {"id": "tommaso"}}),
    ("TokenRequest", {"user_id": "user@example_com-1"}),
    ("ChannelUpdateRequest", {"custom_data": {"title": "Renamed", "topic": None}}),
    ("ChannelUpdateRequest", {"members": {"ana": {"name": "Ana"}}}),
]


@pytest.mark.parametrize("name, body", REFUSED)
def test_the_document_and_the_validation_refuse_the_same_bodies(document, name, body):
    schema = refs_to_defs(body_schema(document, name))

    assert not jsonschema.Draft202012Validator(schema).is_valid(body)
    with pytest.raises(InvalidRequest):
        validated(MODELS[name], body)


@pytest.mark.parametrize("name, body", ACCEPTED)
def test_the_document_and_the_validation_accept_the_same_bodies(document, name, body):
    schema = refs_to_defs(body_schema(document, name))

    jsonschema.Draft202012Validator(schema).validate(body)
    validated(MODELS[name], body)


def postman_requests(items):
    for item in items:
        yield from postman_requests(item["item"]) if "item" in item else [item["request"]]


def test_every_request_of_the_postman_collection_is_a_described_operation(document):
    collection = json.loads((ROOT / "postman_collection.json").read_text())
    templates = {
        (method.upper(), re.compile("/" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path.lstrip("/"))) + "$"))
        for path, operations in document["paths"].items()
        for method in operations
    }
    called = {
        (request["method"], "/" + "/".join(request["url"]["path"]).split("?")[0])
        for request in postman_requests(collection["item"])
    }

    undescribed = {
        (method, path)
        for method, path in called
        if not any(method == described and pattern.match(path) for described, pattern in templates)
    }
    assert undescribed == set()
    assert len(called) >= 9


@pytest.mark.parametrize("name", ["ChannelRequest", "MessageRequest", "MessageUpdateRequest"])
def test_the_documents_examples_are_valid_requests(document, name):
    """/docs fills them in for "Try it out": they must pass both the document and the service."""
    schema = refs_to_defs(body_schema(document, name))
    for example in schema["examples"]:
        jsonschema.Draft202012Validator(schema).validate(example)
        validated(MODELS[name], example)


def test_docs_api_has_a_section_for_every_route_and_no_other(document):
    """The headings of docs/api.md's Routes section name the routes, as `GET /docs/<asset>`."""
    page = (ROOT / "docs" / "api.md").read_text()
    routes_section = page.split("\n## Routes\n")[1].split("\n## ")[0]
    headings = "\n".join(line for line in routes_section.splitlines() if line.startswith("### "))
    in_docs = {(method, re.sub(r"<\w+>", "*", path)) for method, path in re.findall(r"`([A-Z]+) (/[^`]*)`", headings)}
    described = {
        (method.upper(), re.sub(r"\{\w+\}", "*", path))
        for path, operations in document["paths"].items()
        for method in operations
    }

    assert in_docs == described
