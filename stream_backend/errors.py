"""Every exception this package raises, under one base class, `StreamBackendError`.

A caller of the Python API catches `StreamBackendError` for all of them, or one kind:

    StreamBackendError
    ├── InvalidRequest        a body or value breaks a rule (Stream's or ours): `field` names it
    │   └── VersionConflict       ... a version of another kind than the object's (integer, timestamp)
    ├── SettingsError         settings missing or malformed: the service must not start
    ├── StoreUnavailable      the SQLite file or Redis could not answer
    │   ├── QueueFull             more webhook events wait for the primary than the queue may hold
    │   └── VersionsUnavailable   ... where a versioned write must read or record its versions
    ├── ObjectBusy            another request is writing the same object (a versioned write)
    ├── MessageIdTaken        Stream holds another message under the primary's message id
    ├── MembersAreFixed       a distinct channel's members cannot change
    ├── StreamError           Stream answered a call with an error (status, code, message)
    └── StreamUnavailable     Stream gave no answer
        ├── StreamTimeout         ... within the client's timeout
        └── StreamUnreachable     ... at all (connection refused, reset, DNS)

`StreamError` is also where Stream's error answers are read: its predicates (`is_not_found`,
`is_missing`, `is_duplicate_message`, `is_streams_own`) are the only code that looks inside one
(https://getstream.io/chat/docs/python/api_errors_response/). stream/client.py raises these
instead of the SDK's exceptions, so nothing else in the package knows the SDK's error types.
Nothing here imports the rest of the package.
"""

import re


class StreamBackendError(Exception):
    """The base of every exception this package raises."""


class InvalidRequest(StreamBackendError, ValueError):
    """A request field that is missing or wrong; the service answers it with a 400 naming it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class VersionConflict(InvalidRequest):
    """A version of another kind (integer or timestamp) than the one the object has: they do not
    compare, so nothing is written (409, naming the field)."""


class SettingsError(StreamBackendError):
    """One or more settings are missing or malformed; the process must not start."""


class StoreUnavailable(StreamBackendError):
    """The store could not answer (Redis down, SQLite locked past its busy timeout)."""


class VersionsUnavailable(StoreUnavailable):
    """The store of versions and object locks could not answer: a versioned write cannot be
    checked against the newest version applied, so nothing is written (503, retry)."""


class ObjectBusy(StreamBackendError):
    """Another request holds the lock of one of these objects (`user:<id>`, `channel:<type>:<id>`,
    `message:<id>`) past the wait: nothing is written (503, retry)."""

    def __init__(self, objects: list[str], waited: float) -> None:
        super().__init__(f"another request is writing {', '.join(objects)} (waited {waited:g} s)")
        self.objects, self.waited = objects, waited


class MessageIdTaken(StreamBackendError):
    """Stream holds another message under the primary's message id (a chat client chose it
    first): answered 409, never taken for an earlier attempt of ours."""

    def __init__(self, message_id: str, cid: str) -> None:
        super().__init__(
            f"message id {message_id} is taken in Stream by a message that is not this "
            f"service's for {cid} and this sender"
        )
        self.message_id, self.cid = message_id, cid


class MembersAreFixed(StreamBackendError):
    """A distinct channel's members define it: they cannot be changed (400)."""


class QueueFull(StoreUnavailable):
    """More webhook events wait for the primary system than the queue may hold
    (PRIMARY_SYNC_MAX_PENDING): the webhook answers 503 rather than grow without bound."""


# --- Stream's answers -------------------------------------------------------------------------

# Stream's error codes (stream-facts.md): 4 bad input, 16 not found.
INPUT_ERROR = 4
NOT_FOUND = 16

# Stream's words when what a call names is not there. Its own tests show both codes for one
# answer: stream-node's messages test expected code 4 `GetMessage failed with error: "Message
# with id ... doesn't exist"` until 2026-03, and code 16 `"message with id ... doesn't exist"`
# since; a delete of a missing message has answered 400 with the same words, and 2021's SDKs
# said "... not found" (docs/stream-behaviour.md).
_NOT_THERE = re.compile(r"doesn't exist|does not exist|not found|can't find", re.IGNORECASE)
# ... and when users a call relies on are not there: "The following users are ... but don't exist".
_MISSING = re.compile(r"(don't|doesn't|does not|do not) exist|not found|can't find", re.IGNORECASE)


class StreamError(StreamBackendError):
    """Stream answered a call with an error status.

    `status` is the HTTP status; `code` and `message` are Stream's own, from its error body
    (`{"code", "message", "StatusCode", ...}`), or None and `HTTP <status>` when the answer
    had no such body (a proxy's page, a wrong URL). `retry_after`: for a 429, the whole
    seconds Stream asked us to wait (its `Retry-After`, or until its `X-RateLimit-Reset`).
    """

    def __init__(self, status: int, code: int | None, message: str | None, retry_after: int | None = None) -> None:
        self.status, self.code, self.retry_after = status, code, retry_after
        self.message = message or f"HTTP {status}"
        super().__init__(
            f"Stream answered {status}" + (f" (code {code})" if code is not None else "") + f": {self.message}"
        )

    def is_streams_own(self) -> bool:
        """The error carries Stream's error body (its code), not a proxy's page or a wrong URL's."""
        return self.code is not None

    def is_not_found(self) -> bool:
        """Stream's own answer that what the call names is not there: code 16, or code 4 saying
        so ("doesn't exist", "not found"), whatever the HTTP status; never a proxy's 404."""
        if self.code == NOT_FOUND:
            return True
        return self.code == INPUT_ERROR and bool(_NOT_THERE.search(self.message))

    def is_missing(self) -> bool:
        """Stream says a user or channel we relied on does not exist (deleted elsewhere)."""
        return self.is_not_found() or (
            self.is_streams_own() and self.status == 400 and bool(_MISSING.search(self.message))
        )

    def is_duplicate_message(self) -> bool:
        """Stream already has a message with this id: 400 code 4 "a message with ID ... already
        exists", which Stream's own React and Android SDKs treat as delivered."""
        return self.status == 400 and self.code == INPUT_ERROR and "already exists" in self.message


class StreamUnavailable(StreamBackendError):
    """Stream gave no answer to a call."""


class StreamTimeout(StreamUnavailable):
    """Stream did not answer within the client's timeout."""


class StreamUnreachable(StreamUnavailable):
    """Stream could not be reached, or the connection broke before its answer."""
