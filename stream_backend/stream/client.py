"""The Stream client: the SDK's `StreamChat`, built once per process with an explicit timeout
and our own HTTP session, raising this package's errors instead of the SDK's.

`stream-chat` is in maintenance mode (its README points new projects to `getstream`): the
errors a caller sees are ours (errors.StreamError, StreamTimeout, StreamUnreachable), so a
later move to another SDK changes this module, not its callers.

Stream's errors are read here and in errors.StreamError: `stream_error` turns the SDK's
exception into ours, with the wait a 429 asks for (`wait_seconds`), and `http_session` is the
session every call to Stream goes through, which never sends a request twice nor sleeps on
Stream's behalf.

Every call is told to the client's `observer`, when it has one: Stream's name for the call
(operations.py), its outcome and its duration. The web layer's metrics listen there; the
package itself knows nothing of them.
"""

import email.utils
import math
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException
from urllib3.util.retry import Retry

from stream_backend.errors import StreamError, StreamTimeout, StreamUnreachable
from stream_backend.stream.operations import operation

# What an observer is told of each call: Stream's name for it, its outcome (`ok`, the HTTP
# status of an error answer such as `429`, `timeout` or `unreachable`), and its seconds.
Observer = Callable[[str, str, float], None]

STREAM_API_URL = "https://chat.stream-io-api.com"
DEFAULT_TIMEOUT_SECONDS = 6.0  # the SDK's own default
# The longest wait a 429 of ours passes on: Stream's rate-limit windows reset within a day
# (stream-node's rate-limit test), and a proxy's header could say anything.
MAX_RETRY_AFTER_SECONDS = 24 * 3600

# The session's retries: a connection that failed before anything was sent is tried once more;
# a request that was sent is never sent again, and an answer is never waited out. urllib3's
# own default (the SDK's `max_retries=1`) sends a GET, PUT or DELETE again after a read error,
# and sleeps through a 413, 429 or 503's `Retry-After` first: that held a request thread for as
# long as Stream (or a proxy) asked, past STREAM_CHAT_TIMEOUT, and a fractional `Retry-After`
# failed the call (InvalidHeader). Our 429 passes Stream's wait on to the caller instead.
NO_RESEND = Retry(
    total=1,
    connect=1,
    read=False,
    redirect=False,
    status=0,
    other=0,
    respect_retry_after_header=False,
    raise_on_status=False,
)


class StreamClient(StreamChat):
    """`StreamChat` with this package's errors. Its base URL and timeout are the ones given:
    the SDK would also read STREAM_CHAT_URL and STREAM_CHAT_TIMEOUT from the process
    environment, but the settings have read them already (or the caller chose)."""

    observer: Observer | None = None  # told of every call, when set

    def __init__(
        self, api_key: str, api_secret: str, *, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(api_key, api_secret, timeout=timeout)
        self.base_url, self.timeout = base_url or STREAM_API_URL, timeout

    def _parse_response(self, response: requests.Response):
        try:
            return super()._parse_response(response)
        except StreamAPIException as error:
            raise stream_error(error, response) from None

    def _make_request(self, method: Callable[..., requests.Response], relative_url: str, *args: Any, **kwargs: Any):
        started, outcome = time.perf_counter(), "unreachable"
        try:
            answer = super()._make_request(method, relative_url, *args, **kwargs)
            outcome = "ok"
            return answer
        except StreamError as error:
            outcome = str(error.status)
            raise
        except requests.Timeout as error:
            outcome = "timeout"
            raise StreamTimeout(f"Stream did not answer within {self.timeout:g} s") from error
        except requests.RequestException as error:
            raise StreamUnreachable(f"Stream could not be reached: {type(error).__name__}") from error
        finally:
            if self.observer is not None:
                self.observer(operation(method.__name__, relative_url), outcome, time.perf_counter() - started)


def stream_error(error: StreamAPIException, response: requests.Response) -> StreamError:
    """The SDK's exception as ours. The SDK says "unknown" for a JSON body without a code,
    as a proxy's JSON page would be: that is no code of Stream's."""
    code = getattr(error, "error_code", None)
    message = getattr(error, "error_message", None)
    return StreamError(
        response.status_code,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) and message != "unknown" else None,
        retry_after(response.headers) if response.status_code == 429 else None,
    )


def retry_after(headers: Mapping[str, str]) -> int | None:
    """The whole seconds (at least 1) a 429's headers ask to wait, as our own `Retry-After`."""
    seconds = wait_seconds(headers, time.time())
    return None if seconds is None else min(max(1, math.ceil(seconds)), MAX_RETRY_AFTER_SECONDS)


def wait_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """How long an answer asks to wait, from `now` (epoch seconds): its `Retry-After` (whole
    or fractional seconds, or an HTTP date: RFC 9110, section 10.2.3) or, without a readable
    one, until its `X-RateLimit-Reset` (epoch seconds: Stream's own, which its SDKs read).
    None when neither says."""
    raw = headers.get("Retry-After")
    seconds = header_number(raw)
    if seconds is None and raw:
        date = email.utils.parsedate_tz(raw)
        seconds = None if date is None else email.utils.mktime_tz(date) - now
    if seconds is None:
        reset = header_number(headers.get("X-RateLimit-Reset"))
        seconds = None if reset is None else reset - now
    return None if seconds is None else max(0.0, seconds)


def header_number(value: str | None) -> float | None:
    """A header's number, or None when it is absent, not a number, or not finite."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def http_session(pool_size: int, session: requests.Session | None = None) -> requests.Session:
    """A session for calls to Stream (or the primary): proxies read from the environment
    once, here, rather than with ~/.netrc on every request (under load that per-request lookup
    cost more than the JSON work); a failed connection tried once more, but never a request
    sent again nor a `Retry-After` slept through (NO_RESEND); and a connection per thread
    (the default pool of 10 would reconnect under load)."""
    session = session or requests.Session()
    session.proxies = urllib.request.getproxies()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(max_retries=NO_RESEND, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def build_client(
    api_key: str,
    api_secret: str,
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    pool_size: int = 10,
    session: requests.Session | None = None,
) -> StreamClient:
    """One client per process, with an explicit timeout and a session of `pool_size`
    connections (`session`: one of the caller's, such as a paced one)."""
    client = StreamClient(api_key, api_secret, base_url=base_url, timeout=timeout)
    client.set_http_session(session or http_session(pool_size))
    return client
