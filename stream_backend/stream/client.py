"""The Stream client: the SDK's `StreamChat`, built once per process with an explicit timeout
and our own HTTP session, raising this package's errors instead of the SDK's.

`stream-chat` is in maintenance mode (its README points new projects to `getstream`): the
errors a caller sees are ours (errors.StreamError, StreamTimeout, StreamUnreachable), so a
later move to another SDK changes this module, not its callers.

Every call is told to the client's `observer`, when it has one: Stream's name for the call
(operations.py), its outcome and its duration. The web layer's metrics listen there; the
package itself knows nothing of them.
"""

import math
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_backend.errors import StreamError, StreamTimeout, StreamUnreachable
from stream_backend.stream.operations import operation

# What an observer is told of each call: Stream's name for it, its outcome (`ok`, the HTTP
# status of an error answer such as `429`, `timeout` or `unreachable`), and its seconds.
Observer = Callable[[str, str, float], None]

STREAM_API_URL = "https://chat.stream-io-api.com"
DEFAULT_TIMEOUT_SECONDS = 6.0  # the SDK's own default


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
    retry_after = _seconds_until(response.headers.get("X-RateLimit-Reset")) if response.status_code == 429 else None
    return StreamError(
        response.status_code,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) and message != "unknown" else None,
        retry_after,
    )


def _seconds_until(epoch_seconds: str | None) -> int | None:
    """Whole seconds from now until an `X-RateLimit-Reset` epoch, or None if unreadable."""
    try:
        return max(0, math.ceil(float(epoch_seconds) - time.time()))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def http_session(pool_size: int, session: requests.Session | None = None) -> requests.Session:
    """A session for calls to Stream (or the primary): proxies read from the environment
    once, here, rather than with ~/.netrc on every request (under load that per-request lookup
    cost more than the JSON work); a failed connection retried once, never a sent request, as
    the SDK's own session; and a connection per thread (the default pool of 10 would
    reconnect under load)."""
    session = session or requests.Session()
    session.proxies = urllib.request.getproxies()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(max_retries=1, pool_maxsize=pool_size)
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
