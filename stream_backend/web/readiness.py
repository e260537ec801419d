"""What `GET /readyz` answers: whether this process can do its work now. The shared store must
answer (store/probe.py) and Stream must have accepted our credentials recently
(stream/credentials.py). `/healthz` stays liveness: it asks neither.

The answer names each check's verdict only (`unavailable`, `refused`, ...): the route is
public, so the details (a Redis host, Stream's words) go to the log, once each time a check
changes its mind, not once a probe.
"""

import logging
import threading

from stream_backend.store.probe import StoreProbe
from stream_backend.stream.credentials import CredentialsCheck

log = logging.getLogger("stream_backend.readiness")


class Readiness:
    def __init__(self, store: StoreProbe, credentials: CredentialsCheck) -> None:
        self.store, self.credentials = store, credentials
        self._lock = threading.Lock()
        self._last: dict[str, str | None] = {}

    def verdicts(self) -> dict[str, str]:
        """Each check's verdict: `ok`, or a word for what is wrong."""
        problems = {"store": self.store.problem(), "stream": self.credentials.problem()}
        self._log_changes(problems)
        verdicts = {"store": "ok" if problems["store"] is None else "unavailable"}
        verdicts["stream"] = "ok" if problems["stream"] is None else problems["stream"].partition(":")[0]
        return verdicts

    def _log_changes(self, problems: dict[str, str | None]) -> None:
        with self._lock:
            for name, problem in problems.items():
                if problem is not None and problem != self._last.get(name):
                    log.warning("not ready: %s: %s", name, problem)
                elif problem is None and self._last.get(name) is not None:
                    log.info("ready again: %s", name)
            self._last = problems
