"""The web process's gunicorn worker (`--worker-class stream_backend.web.gunicorn_worker.Worker`):
gevent's, so that a connection costs a greenlet, not a thread, and slow clients hold nothing
the others need, with both halves of a request bounded in time.

- The request line and headers must arrive within `--keep-alive` seconds (5 in the Procfile):
  gunicorn's gevent worker already reads every request of a connection, the first included,
  under that timeout, and closes the connection past it.
- The body must arrive within `--timeout` seconds (30): it is read here, whole (up to the app's
  MAX_CONTENT_LENGTH and one byte more), before the app runs, so that no request greenlet
  waits on a client that sends a byte a second. Past it the answer is a 408, in JSON, and the
  connection is closed. A body declared larger than the limit is left to the app, which
  answers 413 without reading it.

gevent's monkey-patching (done by gunicorn when the worker starts, before the app is
imported) makes the SDK's requests, redis-py and the delivery threads cooperative; the SQLite
store waits for its locks in short sleeps rather than in SQLite's C code (store/sqlite.py).
"""

import io
import json

import gevent
from gunicorn.workers.ggevent import GeventWorker

TIMED_OUT = json.dumps({"error": "The request body did not arrive in time."}).encode()


class PrereadBody:
    """A request body read ahead: what was read, then whatever is left on the connection (so
    that gunicorn can skip the rest of an oversized body before the next request)."""

    def __init__(self, read: bytes, rest) -> None:
        self._read, self._rest = io.BytesIO(read), rest

    def read(self, size: int | None = None) -> bytes:
        data = self._read.read(size)
        if size is None or size < 0:
            return data + self._rest.read()
        return data if data or not size else self._rest.read(size)

    def readline(self, size: int | None = None) -> bytes:
        line = self._read.readline(size)
        return line if line else self._rest.readline(size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return io.BytesIO(self.read()).readlines()

    def __iter__(self):
        return iter(self.readline, b"")


class Worker(GeventWorker):
    def handle_request(self, listener_name, req, sock, addr):
        limit = self.wsgi.config["MAX_CONTENT_LENGTH"]
        declared = next(
            (int(value) for name, value in req.headers if name == "CONTENT-LENGTH" and value.isdigit()), None
        )
        if declared is None or declared <= limit:
            try:
                with gevent.Timeout(self.cfg.timeout):
                    read = req.body.read(limit + 1)
            except gevent.Timeout:
                self.log.info("closed a connection whose request body did not arrive within %s s", self.cfg.timeout)
                sock.sendall(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(TIMED_OUT), TIMED_OUT)
                )
                raise StopIteration() from None
            req.body = PrereadBody(read, req.body)
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            # A kept-alive connection whose next request is already there would be served
            # again at once, without yielding: the others' requests would wait behind it.
            gevent.idle()
