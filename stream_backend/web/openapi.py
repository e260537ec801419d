"""The OpenAPI 3.1 document of the route table (web/routing.py), with the bodies' and answers'
JSON Schemas as components: the published constraints are the ones the service enforces.
Each operation's summary and description are its view's docstring."""

import inspect
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
    503: "The webhook: the primary system did not take the event, another worker is handing it over, or "
    "the delivery store is down: Stream retries. A versioned sync: another request is writing one of its "
    "objects (`objects`), or the store of versions is down: retry (`Retry-After`).",
    504: "Stream did not answer within STREAM_CHAT_TIMEOUT.",
}
# What a route that calls Stream may answer besides its own errors.
STREAM_ERRORS = (400, 404, 409, 413, 429, 502, 504)
# And a sync route, whose versioned writes wait for their objects' locks and versions.
SYNC_ERRORS = (*STREAM_ERRORS, 503)

SECURITY_SCHEMES = {
    "syncToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SYNC_API_TOKEN: required by the sync routes when the service sets it.",
    },
    "sessionJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "With TOKEN_AUTH=jwt: your app's session JWT (HS256, `sub` and `exp`); "
        "the token is for its `sub`.",
    },
}
SCHEMES_OF_AUTH = {"sync": "syncToken", "session": "sessionJwt"}

TAGS = {
    "tokens": "Stream user tokens for your apps.",
    "mirror": "Dual-write: the primary chat system's users, channels and messages, mirrored into Stream.",
    "webhook": "Stream's webhook, handed over to the primary system once.",
    "service": "The service itself: health, this document and its reference page.",
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
        "servers": [{"url": "/"}],
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


def _operation(route: Route) -> dict[str, Any]:
    summary, _, description = (inspect.getdoc(route.view) or "").partition("\n")
    request_id = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    answer = {"schema": _ref(route.answer)} if route.answer else {}
    responses = {
        "200": {
            "description": "OK",
            "headers": request_id,
            "content": {media_type: answer for media_type in route.media_types},
        }
    }
    errors = set(route.errors) | ({401} if route.auth == "sync" else set())
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status],
            "headers": request_id,
            "content": {"application/json": {"schema": _ref(Error)}},
        }
    operation: dict[str, Any] = {
        "operationId": route.name,
        "tags": [route.tag],
        "summary": summary.strip(),
        "description": description.strip(),
        "responses": responses,
    }
    if route.parameters:
        operation["parameters"] = [_parameter(parameter) for parameter in route.parameters]
    if route.body:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    if route.auth:
        # Optional: each scheme is required only when the service's settings turn it on.
        operation["security"] = [{SCHEMES_OF_AUTH[route.auth]: []}, {}]
    return operation


def _parameter(parameter: Parameter) -> dict[str, Any]:
    schema = TypeAdapter(parameter.kind).json_schema()
    return {
        "name": parameter.name,
        "in": parameter.where,
        "required": parameter.required,
        "description": parameter.description or schema.pop("description", ""),
        "schema": schema,
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}
