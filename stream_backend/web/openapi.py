"""The OpenAPI 3.1 document of the route table (web/routing.py), with the bodies' and answers'
JSON Schemas as components: the published constraints are the ones the service enforces.
Each operation's summary is its view's docstring's first paragraph, as a plain sentence (no
Markdown: importers show it as it is), and its description the rest.

It is written to import into requests that work, as Postman's converter
(openapi-to-postmanv2) and /docs's "Try it out" use it: every body, answer, parameter and
error has a media-type or parameter `example` (importers ignore the schemas' own `examples`),
each error's example is one its route answers, and `servers` is the base URL the document was
fetched from (`with_server`), not a relative one importers cannot resolve.
"""

import inspect
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from stream_backend.web.models import Error, Parameter
from stream_backend.web.routing import Route

# What each error status means. Stream's own answers about a request pass through.
ERRORS = {
    400: "Invalid request: not a JSON object, or a field is wrong (`field` names it); or Stream's 400.",
    401: "A bearer token or webhook signature is missing or wrong (`WWW-Authenticate: Bearer`).",
    403: "A token asked for another user than the session JWT's (TOKEN_AUTH=jwt); a webhook caller "
    "outside WEBHOOK_ALLOWED_IPS.",
    404: "Stream has no such message or channel, or no such asset.",
    409: "Stream's 409, passed through; or the message id is taken in Stream by a message that is "
    "not this service's for this channel and sender; or a version of another kind (integer, timestamp) "
    "than its object's (`field`).",
    413: "The body is over this route's cap.",
    429: "Stream's rate limit, passed through; `Retry-After` says when to try again.",
    502: "Stream refused this service's credentials, failed, or could not be reached.",
    503: "The webhook: the store cannot take the event (down, or PRIMARY_SYNC_MAX_PENDING events waiting): "
    "Stream retries. A versioned sync: another request is writing one of its objects (`objects`), or the "
    "store of versions is down: retry (`Retry-After`).",
    504: "Stream did not answer within STREAM_CHAT_TIMEOUT.",
}
# What a route that calls Stream may answer besides its own errors.
STREAM_ERRORS = (400, 404, 409, 413, 429, 502, 504)
# And a sync route, whose versioned writes wait for their objects' locks and versions.
SYNC_ERRORS = (*STREAM_ERRORS, 503)

# An example of each error as the service answers it: the route's own (by operationId) where
# its error differs, else the status's, which the sync routes answer.
STREAM_NOT_FOUND = "Message with id never-sent not found"
ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {"error": "members.thierry.name: must be a string", "field": "members.thierry.name"},
    401: {"error": "An Authorization: Bearer <SYNC_API_TOKEN> header is required."},
    404: {"error": f"Stream refused the request: {STREAM_NOT_FOUND}", "api_error": STREAM_NOT_FOUND, "stream_code": 16},
    409: {
        "error": "Conflict: message id 123-456-789-01234 is taken in Stream by a message that is not this "
        "service's for messaging:general and this sender.",
        "message_id": "123-456-789-01234",
        "cid": "messaging:general",
    },
    413: {"error": "The data value transmitted exceeds the capacity limit."},
    429: {"error": "Stream refused the request: Too many requests", "api_error": "Too many requests", "stream_code": 9},
    502: {"error": "Stream refused this service's credentials or permissions"},
    503: {"error": "The event was not handed over: the primary system answered 500; Stream will retry."},
    504: {"error": "Stream did not answer within 6 s."},
}
INVALID_ID = "may contain only letters, digits, '@', '_' and '-'"
ROUTE_ERROR_EXAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("generate_token", 400): {"error": f"user_id: {INVALID_ID}", "field": "user_id"},
    ("generate_token", 401): {"error": "An Authorization: Bearer <session JWT> header is required."},
    ("generate_token", 403): {"error": "user_id is not the user of the session JWT."},
    ("sync_message", 400): {"error": "message.text: must not be empty or only whitespace", "field": "message.text"},
    ("update_message", 400): {"error": "message: must set at least one field", "field": "message"},
    ("delete_message", 400): {"error": f"message id: {INVALID_ID}", "field": "message id"},
    ("update_channel", 400): {"error": "members: must be a JSON object", "field": "members"},
    ("update_channel", 404): {
        "error": "Stream refused the request: Can't find channel with id messaging:general",
        "api_error": "Can't find channel with id messaging:general",
        "stream_code": 16,
    },
    ("delete_channel", 400): {
        "error": "channel type: may contain only letters, digits, '_' and '-'",
        "field": "channel type",
    },
    ("delete_user", 400): {"error": f"user id: {INVALID_ID}", "field": "user id"},
    ("stream_webhook", 400): {"error": "The webhook body must be a JSON object with a 'type'."},
    ("stream_webhook", 401): {"error": "X-Signature does not match the body."},
    ("stream_webhook", 403): {"error": "This address may not call the webhook (WEBHOOK_ALLOWED_IPS)."},
    ("stream_webhook", 413): {"error": "The webhook body inflates to over MAX_BODY_BYTES (1048576 bytes)."},
    ("readyz", 503): {"error": "Not ready: stream refused.", "checks": {"store": "ok", "stream": "refused"}},
    ("serve_metrics", 401): {"error": "An Authorization: Bearer <METRICS_TOKEN> header is required."},
    ("serve_metrics", 404): {"error": "Metrics are off: set METRICS_TOKEN to serve them."},
    ("docs_asset", 404): {"error": "No such asset: /docs/swagger-ui.min.js."},
}
METRICS_EXAMPLE = (
    "# HELP stream_backend_http_requests_total Requests answered, by route, method and status.\n"
    "# TYPE stream_backend_http_requests_total counter\n"
    'stream_backend_http_requests_total{method="POST",route="/message",status="200"} 1027.0\n'
)

SECURITY_SCHEMES = {
    "syncToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SYNC_API_TOKEN: required by the sync routes when the service sets it.",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "METRICS_TOKEN: /metrics is served only when it is set, and only to it.",
    },
    "sessionJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "With TOKEN_AUTH=jwt: your app's session JWT, with `sub` and `exp`, signed by your app "
        "(HS256, AUTH_JWT_SECRET) or by your identity provider (RS256, ES256, ...: AUTH_JWKS_URL); the token is "
        "for its `sub`.",
    },
}
# The server of the document as built; each answer of /openapi.json names its own (with_server).
DEFAULT_SERVER = "http://127.0.0.1:5000"
SCHEMES_OF_AUTH = {"sync": "syncToken", "session": "sessionJwt", "metrics": "metricsToken"}

TAGS = {
    "tokens": "Stream user tokens for your apps.",
    "mirror": "Dual-write: the primary chat system's users, channels and messages, mirrored into Stream.",
    "webhook": "Stream's webhook, handed over to the primary system once.",
    "service": "The service itself: liveness, readiness, metrics, this document and its reference page.",
}


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    routes = list(routes)
    described = {model for route in routes for model in (route.body, route.answer) if model} | {Error}
    _, schemas = models_json_schema(
        [(model, "validation") for model in sorted(described, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stream Chat backend",
            "version": "1.0.0",
            "description": "User tokens, a dual-write mirror of a primary chat system into Stream Chat, "
            "and Stream's webhook. Every answer is JSON and carries `X-Request-Id`; "
            'every error is `{"error", "field"?}`.',
        },
        "servers": [{"url": DEFAULT_SERVER}],
        "tags": [{"name": name, "description": description} for name, description in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": SECURITY_SCHEMES,
            "headers": {
                "X-Request-Id": {
                    "description": "This request's id, also in the access log.",
                    "schema": {"type": "string"},
                }
            },
        },
    }


def with_server(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    """`document` with `base_url` (the one a request reached, such as `https://chat.example.com`)
    as its server: what importers and /docs's "Try it out" send to."""
    return {**document, "servers": [{"url": base_url.rstrip("/") or "/"}]}


def summary_and_description(view: Any) -> tuple[str, str]:
    """The docstring's first paragraph as one plain sentence (Markdown's backticks dropped: a
    summary is shown as it is), and the rest, Markdown, as the description."""
    first, _, rest = (inspect.getdoc(view) or "").partition("\n\n")
    return re.sub(r"\s+", " ", first.replace("`", "")).strip(), rest.strip()


def _operation(route: Route) -> dict[str, Any]:
    summary, description = summary_and_description(route.view)
    request_id = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    responses = {
        "200": {
            "description": "OK",
            "headers": request_id,
            "content": {media_type: _answer(route, media_type) for media_type in route.media_types},
        }
    }
    errors = set(route.errors) | ({401} if route.auth == "sync" else set())
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status],
            "headers": request_id,
            "content": {
                "application/json": {
                    "schema": _ref(Error),
                    "example": ROUTE_ERROR_EXAMPLES.get((route.name, status)) or ERROR_EXAMPLES[status],
                }
            },
        }
    operation: dict[str, Any] = {
        "operationId": route.name,
        "tags": [route.tag],
        "summary": summary,
        "description": description,
        "responses": responses,
    }
    if route.parameters:
        operation["parameters"] = [_parameter(parameter) for parameter in route.parameters]
    if route.body:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.body), "example": _example(route.body)}},
        }
    if route.auth == "metrics":
        operation["security"] = [{SCHEMES_OF_AUTH[route.auth]: []}]
    elif route.auth:
        # Optional: each scheme is required only when the service's settings turn it on.
        operation["security"] = [{SCHEMES_OF_AUTH[route.auth]: []}, {}]
    return operation


def _answer(route: Route, media_type: str) -> dict[str, Any]:
    if route.answer is not None:
        return {"schema": _ref(route.answer), "example": _example(route.answer)}
    if media_type == "text/plain":
        return {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}
    return {}


def _example(model: type[BaseModel]) -> Any:
    """The model's first example (its json_schema_extra's `examples`)."""
    return model.model_json_schema()["examples"][0]


def _parameter(parameter: Parameter) -> dict[str, Any]:
    schema = TypeAdapter(parameter.kind).json_schema()
    described = {
        "name": parameter.name,
        "in": parameter.where,
        "required": parameter.required,
        "description": parameter.description or schema.pop("description", ""),
        "schema": schema,
    }
    example = parameter.example if parameter.example is not None else (schema.get("enum") or [None])[0]
    return described | ({"example": example} if example is not None else {})


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}
