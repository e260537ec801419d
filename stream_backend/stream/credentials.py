"""Whether Stream accepted this service's credentials recently: for `GET /readyz`.

One cheap authenticated call, `GET /app` (the app's settings, which the SDK calls
`get_app_settings`), asked at most once per `CHECK_SECONDS` in a process while the answer is
good, and once per `RECHECK_SECONDS` while it is not: a platform probing every second costs
Stream one call a minute per worker. Its own client waits at most `TIMEOUT_SECONDS`, inside
the second or so a probe waits.
"""

import threading
import time
from collections.abc import Callable

from stream_backend.errors import StreamError, StreamTimeout, StreamUnreachable
from stream_backend.stream.client import StreamClient

CHECK_SECONDS = 60.0
RECHECK_SECONDS = 10.0
TIMEOUT_SECONDS = 2.0


class CredentialsCheck:
    """Asks Stream through `client` (one of its own, with a short timeout) whether it takes our
    key and secret, and remembers the answer for a while."""

    def __init__(
        self,
        client: StreamClient,
        every: float = CHECK_SECONDS,
        recheck: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.every, self.recheck, self.clock = client, every, recheck, clock
        self._lock = threading.Lock()
        self._asked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """Why Stream is not known to accept our credentials (`refused`, `unreachable`,
        `failing`, then what Stream said), or None when it did recently."""
        with self._lock:  # one call at a time: the probes that arrive meanwhile share its answer
            age = None if self._asked_at is None else self.clock() - self._asked_at
            if age is None or age >= (self.every if self._problem is None else self.recheck):
                self._problem = self._ask()
                self._asked_at = self.clock()
            return self._problem

    def _ask(self) -> str | None:
        try:
            self.client.get_app_settings()
        except StreamError as error:
            if error.status in (401, 403):
                return f"refused: Stream refused this service's credentials ({error.message})"
            return f"failing: Stream answered {error.status} ({error.message})"
        except StreamTimeout:
            return f"unreachable: Stream did not answer within {self.client.timeout:g} s"
        except StreamUnreachable as error:
            return f"unreachable: {error}"
        return None
