"""A stand-in for the primary chat system's sync endpoint, for tests and benchmarks: records the
events it is handed, answering with a chosen status after a chosen delay, or a byte at a time
(`trickle`)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PrimarySystem(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200, delay: float = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.delay = status, delay
        self.trickle: float = 0  # > 0: answer one byte every `trickle` seconds, headers included
        self.answer_bytes = 102  # the length of its answer's body
        self.answer_headers: dict[str, str] = {}  # more headers on its answers, such as Retry-After
        # {"webhook_id", "content_type", "event", "status", "headers", "body"} per request
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/stream-events"

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        """The events it took, once it took `count` different ones (or the time is up)."""
        deadline = time.monotonic() + timeout
        while len({entry["webhook_id"] for entry in self.accepted()}) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.accepted()

    def accepted(self) -> list[dict]:
        """The events it took (answered 2xx): what the primary system now has."""
        with self.lock:
            return [entry for entry in self.received if 200 <= entry["status"] < 300]

    def __enter__(self) -> "PrimarySystem":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PrimarySystem

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.status
        with self.server.lock:
            self.server.received.append(
                {
                    "webhook_id": self.headers.get("X-Webhook-Id"),
                    "content_type": self.headers.get("Content-Type"),
                    "event": json.loads(body),
                    "status": status,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
        if self.server.delay:
            threading.Event().wait(self.server.delay)
        size = self.server.answer_bytes
        data = b"{}" + b" " * min(size - 2, 2**16)
        answer = (
            f"HTTP/1.1 {status} Answer\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in self.server.answer_headers.items())
            + "\r\n"
        ).encode() + data
        if not self.server.trickle:
            try:
                self.wfile.write(answer)
                for _ in range((size - len(data)) // len(data)):  # sizes of 2 + n * 64 KB
                    self.wfile.write(b" " * len(data))
            except OSError:  # the client had read enough
                self.close_connection = True
            return
        try:
            for byte in answer:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                threading.Event().wait(self.server.trickle)
        except OSError:  # the client gave up
            self.close_connection = True

    def log_message(self, format, *args) -> None:
        pass
