"""The web process's gunicorn worker (`--worker-class stream_backend.web.gunicorn_worker.Worker`):
gevent's, so that a connection costs a greenlet, not a thread, and slow clients hold nothing
the others need, with both halves of a request bounded in time.

- The request line and headers must arrive within `--keep-alive` seconds (5 in the Procfile):
  gunicorn's gevent worker already reads every request of a connection, the first included,
  under that timeout, and closes the connection past it.
- The body must arrive within `--timeout` seconds (30): it is read here, whole, before the app
  runs, up to its route's cap and one byte more (4 KB for a token, 1 KB for a route without a
  body), so that no request greenlet waits on a client that sends a byte a second, and a
  connection holds at most that much. Past the timeout the answer is a 408, in JSON, and the
  connection is closed. A body declared larger than its cap is left to the app, which answers
  413 without reading it. A client that waits for `100 Continue` gets it first.

gevent's monkey-patching (done by gunicorn when the worker starts, before the app is
imported) makes the SDK's requests, redis-py and the delivery threads cooperative; the SQLite
store waits for its locks in short sleeps rather than in SQLite's C code (store/sqlite.py).
"""

import io
import json
from urllib.parse import unquote

import gevent
from gunicorn.workers.ggevent import GeventWorker

IDLE_WAIT_SECONDS = 0.01
TIMED_OUT = json.dumps({"error": "The request body did not arrive in time."}).encode()


class PrereadBody:
    """A request body read ahead: what was read, then whatever is left on the connection (so
    that gunicorn can skip the rest of an oversized body before the next request). Anything
    else gunicorn asks of a body (`failed`, after a malformed chunk) is the body's own."""

    def __init__(self, read: bytes, rest) -> None:
        self._read, self._rest = io.BytesIO(read), rest

    def __getattr__(self, name: str):
        return getattr(self._rest, name)

    def read(self, size: int | None = None) -> bytes:
        data = self._read.read(size)
        if size is None or size < 0:
            return data + self._rest.read()
        return data if data or not size else self._rest.read(size)

    def readline(self, size: int | None = None) -> bytes:
        line = self._read.readline(size)
        if line.endswith(b"\n") or (size is not None and 0 <= size <= len(line)):
            return line
        # The end of what was read ahead, in the middle of a line: the rest of it follows.
        return line + self._rest.readline(None if size is None or size < 0 else size - len(line))

    def readlines(self, size: int | None = None) -> list[bytes]:
        return io.BytesIO(self.read()).readlines()

    def __iter__(self):
        return iter(self.readline, b"")


class Worker(GeventWorker):
    def handle_request(self, listener_name, req, sock, addr):
        cap = self.wsgi.extensions["request_cap"](req.method, unquote(req.path or "/"))
        declared = next(
            (int(value) for name, value in req.headers if name == "CONTENT-LENGTH" and value.isdigit()), None
        )
        # A body declared over its route's cap is left unread: the app answers 413 at once.
        if declared is None or declared <= cap:
            if req._expected_100_continue:  # the client waits for it before it sends the body
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                req._expected_100_continue = False
            try:
                with gevent.Timeout(self.cfg.timeout):
                    read = req.body.read(cap + 1)
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
            # again at once, without yielding: the others' requests would wait behind it. The
            # wait is bounded: under a load that never lets the loop idle, 10 ms at most.
            with gevent.Timeout(IDLE_WAIT_SECONDS, False):
                gevent.idle()
