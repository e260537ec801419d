"""What Stream's errors mean, read in one place.

The SDK raises `StreamAPIException` with Stream's HTTP status, its error code and message
(https://getstream.io/chat/docs/python/api_errors_response/). These named checks are the only
places that look inside one.
"""

import re

from stream_chat.base.exceptions import StreamAPIException

# Stream's error codes (stream-facts.md): 4 bad input, 16 not found.
INPUT_ERROR = 4
NOT_FOUND = 16

# Stream's words when a user or channel is not there: "The following users are ... but don't
# exist", "user ... doesn't exist", "Can't find channel ...".
_MISSING = re.compile(r"(don't|doesn't|does not|do not) exist|not found|can't find", re.IGNORECASE)


def message_of(error: StreamAPIException) -> str:
    """Stream's message in an error; an answer from a proxy in front of Stream has none."""
    return getattr(error, "error_message", None) or f"HTTP {error.status_code}"


def code_of(error: StreamAPIException) -> int | None:
    """Stream's error code; None for an answer without one (the SDK says "unknown" for a JSON
    body without a code, as a proxy's JSON page would be)."""
    code = getattr(error, "error_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def is_streams_own(error: StreamAPIException) -> bool:
    """The error carries Stream's error body (its code), not a proxy's page or a wrong URL's."""
    return code_of(error) is not None


def is_not_found(error: StreamAPIException) -> bool:
    """Stream's own not-found answer (404, code 16), not a proxy's 404 or a wrong URL's."""
    return error.status_code == 404 and code_of(error) == NOT_FOUND


def is_missing(error: StreamAPIException) -> bool:
    """Stream says a user or channel we relied on does not exist (deleted elsewhere)."""
    return is_not_found(error) or (error.status_code == 400 and bool(_MISSING.search(message_of(error))))


def is_duplicate_message(error: StreamAPIException) -> bool:
    """Stream already has a message with this id: 400 code 4 "a message with ID ... already
    exists", which Stream's own React and Android SDKs treat as delivered."""
    return (error.status_code == 400 and code_of(error) == INPUT_ERROR
            and "already exists" in message_of(error))
