"""What every request goes through: an id (answered back in `X-Request-Id` and logged), its
route's body cap (web/routing.py), and one access-log line."""

import logging
import os
import re
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from stream_backend.web.logs import loggable
from stream_backend.web.routing import RouteTable

# An incoming X-Request-Id is kept when it looks like one (a proxy's, a client's); otherwise
# the request gets a new one. Either way it is answered back and logged.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("stream_backend.access")


def install(app: Flask, routes: RouteTable, max_body_bytes: int) -> None:
    def start_request() -> None:
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        g.started = time.perf_counter()
        cap = routes.body_cap(request.endpoint, max_body_bytes)
        if cap is not None:
            request.max_content_length = cap
            # Routes without a body never read it: refuse an oversized one up front.
            if (request.content_length or 0) > cap:
                raise RequestEntityTooLarge()

    app.before_request(start_request)
    app.after_request(log_access)


def log_access(response: Response) -> Response:
    """One line per request: method, path (never the query), status, duration, request id."""
    request_id = g.request_id
    response.headers["X-Request-Id"] = request_id
    access_log.info(
        "%s %s %s %.1fms %s",
        loggable(request.method),
        loggable(request.path),
        response.status_code,
        (time.perf_counter() - g.started) * 1000,
        request_id,
    )
    return response
