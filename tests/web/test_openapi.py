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
            assert operation["summary"] and operation["summary"] in " ".join(view.__doc__.replace("`", "").split())


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


# --- A document that imports into working requests ------------------------------------------


def operations(document):
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            yield method.upper(), path, operation


def test_the_server_is_the_base_url_the_document_was_fetched_from(client):
    document = client.get("/openapi.json", base_url="https://chat.example.com").get_json()

    assert document["servers"] == [{"url": "https://chat.example.com"}]


def test_summaries_are_plain_whole_sentences(app, document):
    views = {endpoint.rpartition(".")[2]: view for endpoint, view in app.view_functions.items()}
    for method, path, operation in operations(document):
        summary = operation["summary"]
        assert "`" not in summary and "\n" not in summary, (method, path, summary)
        assert summary.endswith("."), (method, path, summary)
        first_paragraph = views[operation["operationId"]].__doc__.split("\n\n")[0]
        assert " ".join(first_paragraph.replace("`", "").split()) == summary


def test_every_request_body_has_an_example_the_service_accepts(document):
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        if "requestBody" not in operation:
            continue
        content = operation["requestBody"]["content"]["application/json"]
        name = content["schema"]["$ref"].rpartition("/")[2]
        jsonschema.Draft202012Validator(refs_to_defs(body_schema(document, name))).validate(content["example"])
        if name in MODELS:
            validated(MODELS[name], content["example"])
        assert schemas[name]["examples"][0] == content["example"], (method, path)


def test_every_json_answer_has_an_example_of_its_schema(document):
    for method, path, operation in operations(document):
        for status, answer in operation["responses"].items():
            for media_type, content in answer["content"].items():
                if "schema" not in content or "$ref" not in content["schema"]:
                    continue
                name = content["schema"]["$ref"].rpartition("/")[2]
                assert "example" in content, (method, path, status, media_type)
                schema = refs_to_defs(body_schema(document, name))
                jsonschema.Draft202012Validator(schema).validate(content["example"])


def test_error_examples_belong_to_their_routes(document):
    token_errors = document["paths"]["/generate-token"]["post"]["responses"]
    examples = {status: answer["content"]["application/json"]["example"] for status, answer in token_errors.items()}

    assert examples["400"]["field"] == "user_id"
    assert "session JWT" in examples["401"]["error"] and "session JWT" in examples["403"]["error"]
    assert "members" not in json.dumps(examples)
    webhook = document["paths"]["/stream-incoming-wh"]["post"]["responses"]
    assert webhook["401"]["content"]["application/json"]["example"]["error"] == "X-Signature does not match the body."


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "/generate-token", {"user_id": "tom maso"}, 400),
        ("POST", "/generate-token", "x" * 5000, 413),
        ("POST", "/message", {**MESSAGE_BODY, "message": {"id": "m-1", "text": " "}}, 400),
        ("PUT", "/message/123-456-789-01234", {"message": {}, "user": {"id": "tommaso"}}, 400),
        ("PUT", "/channel/messaging/general", {"members": None}, 400),
        ("DELETE", "/user/a b", None, 400),
        ("POST", "/stream-incoming-wh", b"{}", 401),
        ("GET", "/metrics", None, 404),
        ("GET", "/docs/swagger-ui.min.js", None, 404),
    ],
)
def test_an_error_example_is_what_its_route_answers(client, stream, document, method, path, body, status):
    template = next(
        template
        for template, by_method in document["paths"].items()
        if method.lower() in by_method
        and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), path.replace(" ", "%20"))
    )
    example = document["paths"][template][method.lower()]["responses"][str(status)]["content"]["application/json"]
    headers = {"X-Signature": "0" * 64} if path == "/stream-incoming-wh" else {}
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body}

    response = client.open(path, method=method, headers=headers, **kwargs)

    assert response.status_code == status
    answer = response.get_json()
    if path == "/stream-incoming-wh":  # the example is of a body that does verify; this one does not
        assert answer == {"error": "X-Signature does not match the body."}
    else:
        assert answer == example["example"]


def test_every_parameter_has_an_example(document):
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert "example" in parameter, (method, path, parameter["name"])
