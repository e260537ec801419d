"""One place turns every failure into JSON `{"error": "..."}` with a status that says whose
fault it is: `register(app)` installs the handlers, and `error_response` is the one shape."""

import json
import logging
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from stream_backend.errors import (
    InvalidRequest,
    MembersAreFixed,
    MessageIdTaken,
    ObjectBusy,
    QueueFull,
    StoreUnavailable,
    StreamError,
    StreamTimeout,
    StreamUnreachable,
    VersionConflict,
    VersionsUnavailable,
)
from stream_backend.web.logs import loggable

log = logging.getLogger("stream_backend")
errors = Blueprint("errors", __name__)


def register(app: Flask) -> None:
    app.register_blueprint(errors)


def error_response(status: int, message: str, **extra: Any):
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


# Stream's answers that are about the caller's request: passed through as they are, when
# they carry Stream's error body (a proxy's or a wrong URL's 404 is not Stream's). 401 and
# 403 are about our credentials or permissions, so they become a 502 like any other failure.
# Stream's not-found is a 404 whichever form Stream sent (code 16, or a 400 with code 4 that
# says "doesn't exist": errors.StreamError.is_not_found).
PASSED_THROUGH_STREAM_STATUSES = {400, 404, 409, 413, 429}


@errors.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Flask's own errors (400, 404, 405, 413, 415, ...) as JSON, keeping their headers."""
    response = error.get_response()
    response.data = json.dumps({"error": error.description})
    response.content_type = "application/json"
    return response


@errors.app_errorhandler(InvalidRequest)
def invalid_request(error: InvalidRequest):
    return error_response(400, str(error), field=error.field)


@errors.app_errorhandler(VersionConflict)
def version_conflict(error: VersionConflict):
    return error_response(409, f"Conflict: {error}.", field=error.field)


@errors.app_errorhandler(MessageIdTaken)
def message_id_taken(error: MessageIdTaken):
    log.warning("message id conflict: %s", error)
    return error_response(409, f"Conflict: {error}.", message_id=error.message_id, cid=error.cid)


@errors.app_errorhandler(MembersAreFixed)
def members_are_fixed(error: MembersAreFixed):
    return error_response(400, f"members: {error}.", field="members")


@errors.app_errorhandler(ObjectBusy)
def object_busy(error: ObjectBusy):
    """A versioned write whose objects another request is writing: nothing was written."""
    response = error_response(503, f"Busy: {error}; nothing was written, retry.", objects=error.objects)
    response.headers["Retry-After"] = "1"
    return response


@errors.app_errorhandler(VersionsUnavailable)
def versions_unavailable(error: VersionsUnavailable):
    log.warning("store of versions unavailable: %s: %s", error, error.__cause__)
    response = error_response(
        503, f"The store of versions (WEBHOOK_DB or REDIS_URL) {error}; nothing was written, retry."
    )
    response.headers["Retry-After"] = "1"
    return response


@errors.app_errorhandler(StreamError)
def stream_error(error: StreamError):
    details = {"api_error": error.message, "stream_code": error.code}
    if error.status in PASSED_THROUGH_STREAM_STATUSES and error.is_streams_own():
        status = 404 if error.is_not_found() else error.status
        response = error_response(status, f"Stream refused the request: {error.message}", **details)
        if error.status == 429 and error.retry_after is not None:
            # At once: the session never sleeps on Stream's behalf (stream/client.py), the
            # caller waits as long as Stream asked.
            response.headers["Retry-After"] = str(error.retry_after)
        return response
    if error.status in (401, 403):
        problem = "Stream refused this service's credentials or permissions"
    else:
        problem = f"Stream failed with HTTP {error.status}"
    log.warning("%s: %s", problem, loggable(error.message))  # Stream may echo client text
    return error_response(502, problem, **details)


@errors.app_errorhandler(QueueFull)
def queue_full(error: QueueFull):
    log.warning("webhook refused: %s", error)
    return error_response(503, f"The delivery queue is full: {error}; Stream will retry.")


@errors.app_errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable):
    log.warning("store unavailable: %s", error)
    return error_response(503, "The store (delivery queue and sync state) is unavailable; Stream will retry.")


@errors.app_errorhandler(StreamTimeout)
def stream_timeout(error: StreamTimeout):
    log.warning("Stream timed out: %s", error)
    timeout = current_app.config["SETTINGS"].stream_timeout
    return error_response(504, f"Stream did not answer within {timeout:g} s.")


@errors.app_errorhandler(StreamUnreachable)
def stream_unreachable(error: StreamUnreachable):
    log.warning("Stream unreachable: %s", error)
    return error_response(502, "Stream could not be reached.")


@errors.app_errorhandler(Exception)
def unexpected_error(error: Exception):
    """A bug of ours: logged with its traceback, answered without it."""
    log.exception("unhandled error")
    return error_response(500, "Internal error.")
