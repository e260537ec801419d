"""The route table: each route declared once, above its view, with everything the service
derives from it.

    api = RouteTable("stream_backend")

    @api.route("POST", "/channel", tag="mirror", body=ChannelRequest, answer=ChannelAnswer,
               errors=STREAM_ERRORS, auth="sync", browser=True)
    def sync_channel(): ...

From the table: the Flask URL rules (`register`), each route's body cap (`body_cap`), the
paths that answer CORS (`browser_paths`), the sync-token guard (`auth="sync"`), and the OpenAPI
document (web/openapi.py), whose descriptions are the views' docstrings.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Flask
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from stream_backend.web.auth import requires_metrics_token, requires_sync_token
from stream_backend.web.models import Parameter

# A route that takes no body still reads what a client sends: this much, then a 413.
NO_BODY_CAP = 1024
# How each `auth` guards its routes; "session" is the view's own (web/auth.py's session_user).
GUARDS = {"sync": requires_sync_token, "metrics": requires_metrics_token, "session": lambda view: view}


@dataclass(frozen=True)
class Route:
    """One operation. `path` is OpenAPI's template (`/message/{message_id}`); `view` is its
    Flask view, whose docstring describes it; `answer` is the model of its 200 body (JSON
    unless `media_types` says). `auth`: "sync" (SYNC_API_TOKEN guards it, when set),
    "metrics" (METRICS_TOKEN guards it, and without it the route is a 404) or "session" (with
    TOKEN_AUTH=jwt the view asks for a session JWT). `body_cap`: its largest
    body in bytes (None: MAX_BODY_BYTES; routes without a body: NO_BODY_CAP). `browser`:
    whether browsers on CORS_ORIGINS may call it."""

    method: str
    path: str
    view: Callable[..., Any]
    tag: str
    answer: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    errors: tuple[int, ...] = ()
    auth: Literal["sync", "session", "metrics"] | None = None
    body_cap: int | None = None
    browser: bool = False
    media_types: tuple[str, ...] = ("application/json",)
    body_required: bool = True

    @property
    def name(self) -> str:
        return self.view.__name__

    @property
    def flask_path(self) -> str:
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    def cap(self, max_body_bytes: int) -> int:
        if self.body_cap is not None:
            return self.body_cap
        return max_body_bytes if self.body is not None else NO_BODY_CAP


class RouteTable:
    """The service's routes, registered on a Flask blueprint named `name`."""

    def __init__(self, name: str) -> None:
        # Its templates (the /docs page) are web/templates.
        self.blueprint = Blueprint(name, __name__, template_folder="templates")
        self.routes: list[Route] = []
        self._by_endpoint: dict[str, Route] = {}

    def route(self, method: str, path: str, **options: Any) -> Callable:
        """Declare the decorated view as the route `method path` (options: Route's fields)."""

        def declare(view: Callable) -> Callable:
            route = Route(method, path, view, **options)
            guarded = GUARDS[route.auth](view) if route.auth else view
            self.blueprint.add_url_rule(route.flask_path, view.__name__, guarded, methods=[method])
            self.routes.append(route)
            self._by_endpoint[f"{self.blueprint.name}.{view.__name__}"] = route
            return view

        return declare

    def register(self, app: Flask) -> None:
        app.register_blueprint(self.blueprint)

    def body_cap(self, endpoint: str | None, max_body_bytes: int) -> int | None:
        """The largest body the route of `endpoint` takes; None for no route (a 404 to come)."""
        route = self._by_endpoint.get(endpoint or "")
        return route.cap(max_body_bytes) if route else None

    def request_cap(self, app: Flask, method: str, path: str, max_body_bytes: int) -> int:
        """The largest body a request for `method path` may send, before Flask has routed it
        (the gunicorn worker reads that much ahead): its route's cap, or that of a route
        without a body for a request no route takes."""
        try:
            endpoint, _ = app.url_map.bind("localhost").match(path, method=method)
        except HTTPException:  # a 404, a 405 or a redirect to come: no body is read
            return NO_BODY_CAP
        return self.body_cap(endpoint, max_body_bytes) or NO_BODY_CAP

    def template(self, endpoint: str | None) -> str:
        """The path template of the route of `endpoint` (`/message/{message_id}`), or
        `unmatched` for a request no route took (a 404, a 405): one name for all of them."""
        route = self._by_endpoint.get(endpoint or "")
        return route.path if route else "unmatched"

    def browser_paths(self) -> re.Pattern:
        """The paths of the routes browsers may call, as one pattern (flask-cors matches it)."""
        paths = sorted(
            {re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route.path)) for route in self.routes if route.browser}
        )
        return re.compile(f"^({'|'.join(paths)})$")
