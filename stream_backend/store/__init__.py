"""Where the service keeps what every worker shares: one SQLite file (one host, any number of
worker processes) or one Redis (several hosts). The mirror's state (mirror/state.py) and the
webhook's delivery queue (handover/queue.py) keep their tables or keys there.

    sqlite.py   the file: made, set to WAL, a connection per thread, IMMEDIATE transactions
    redis.py    a client from a URL, with timeouts; redis-py is needed only when it is used

Every store turns its own errors into errors.StoreUnavailable (`unavailable_on`), so that its
callers have one error to handle, whichever store it is.
"""

import functools
from collections.abc import Callable
from typing import Any

from stream_backend.errors import StoreUnavailable


def unavailable_on(errors: Callable[[Any], tuple[type[BaseException], ...]]):
    """A method decorator: the errors `errors(self)` names become StoreUnavailable."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except errors(self) as error:
                raise StoreUnavailable(str(error)) from error

        return wrapper

    return decorate
