"""What every request goes through: an id (answered back in `X-Request-Id` and logged), its
route's body cap (web/routing.py), one access-log line, and its count and duration in the
metrics (web/metrics.py), under its route's template, so that their labels stay few."""

import functools
import logging
import os
import re
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from stream_backend.web.logs import loggable
from stream_backend.web.routing import RouteTable

# An incoming X-Request-Id is kept when it looks like one (a proxy's, a client's); otherwise
# the request gets a new one. Either way it is answered back and logged.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("stream_backend.access")


def install(app: Flask, routes: RouteTable, max_body_bytes: int) -> None:
    # For the gunicorn worker, which reads a body ahead before the app runs (web/gunicorn_worker.py).
    app.extensions["request_cap"] = functools.partial(routes.request_cap, app, max_body_bytes=max_body_bytes)

    def start_request() -> None:
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        g.started = time.perf_counter()
        # werkzeug routes "//docs" as "/docs" (its request path drops leading slashes, whatever
        # merge_slashes says): a path that starts with "//" is a 404, like any unknown path.
        if request.environ.get("PATH_INFO", "").startswith("//"):
            raise NotFound()
        cap = routes.body_cap(request.endpoint, max_body_bytes)
        if cap is not None:
            request.max_content_length = cap
            # Routes without a body never read it: refuse an oversized one up front.
            if (request.content_length or 0) > cap:
                raise RequestEntityTooLarge()

    def finish_request(response: Response) -> Response:
        seconds = time.perf_counter() - g.started
        route = routes.template(request.endpoint)
        response.headers["X-Request-Id"] = g.request_id
        log_access(response.status_code, seconds, route)
        metrics = app.extensions.get("metrics")
        if metrics is not None:
            metrics.request_done(route, request.method, response.status_code, seconds)
        return response

    app.before_request(start_request)
    app.after_request(finish_request)


def log_access(status: int, seconds: float, route: str) -> None:
    """One line per request: method, path (never the query), status, duration, request id;
    in JSON, the route's template too."""
    method, path, milliseconds = loggable(request.method), loggable(request.path), seconds * 1000
    access_log.info(
        "%s %s %s %.1fms %s",
        method,
        path,
        status,
        milliseconds,
        g.request_id,
        extra={
            "request_id": g.request_id,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(milliseconds, 1),
        },
    )
