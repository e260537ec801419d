"""The service's Prometheus metrics, served by `GET /metrics` when METRICS_TOKEN is set, with
prometheus-client:

    stream_backend_http_requests_total{route, method, status}       requests answered
    stream_backend_http_request_duration_seconds{route, method}     their latency (histogram)
    stream_backend_stream_calls_total{operation, outcome}           calls to Stream; outcome `ok`,
                                                                    an error's status (`429`, ...),
                                                                    `timeout` or `unreachable`
    stream_backend_stream_call_duration_seconds{operation}          their latency (histogram)
    stream_backend_webhook_deliveries_total{outcome}                webhook outcomes (`queued`, `duplicate`, ...)
    stream_backend_handover_queue_*                                 the hand-over queue (QueueCollector)

Labels are bounded: a route is its template (`/message/{message_id}`, or `unmatched`), a method
one of HTTP's, an operation Stream's own name for the call (stream/operations.py).

Under gunicorn, every worker is a process of its own, so the values live in files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, which web/gunicorn_config.py
sets up, marking dead workers), and a scrape, whichever worker answers it, adds up every
worker's. Without that directory (`flask run`, tests) they are this process's, in a registry
of the app's own, so that two apps in one process do not collide.
"""

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from stream_backend.errors import StoreUnavailable
from stream_backend.handover.queue import Status

NAMESPACE = "stream_backend"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Our routes answer in a few ms (a token) to a few Stream round trips (a sync): up to 30 s,
# gunicorn's worker timeout.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 6)  # up to STREAM_CHAT_TIMEOUT's cap


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class QueueCollector(Collector):
    """Gauges of the hand-over queue, read from its store at each scrape by `status` (a
    callable such as `queue.status`), so any worker answers for all. A store that cannot
    answer gives no gauges rather than a failed scrape: their absence is what an alert sees."""

    def __init__(self, status: Callable[[], Status]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        try:
            status = self.status()
        except StoreUnavailable:
            return
        for name, documentation, value in (
            ("pending", "Events waiting to be handed over to the primary system.", status.pending),
            ("in_flight", "Events being handed over right now.", status.in_flight),
            ("failed", "Events the primary system did not take, after every retry.", status.failed),
            ("delivered_last_hour", "Events handed over in the last hour.", status.delivered_last_hour),
        ):
            yield GaugeMetricFamily(f"{NAMESPACE}_handover_queue_{name}", documentation, value=value)
        if status.oldest_pending_age is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_handover_queue_oldest_pending_age_seconds",
                "How long the oldest pending event has waited.",
                value=status.oldest_pending_age,
            )


class Metrics:
    """The service's metrics, and their text for a scrape (`exposition`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._collectors: list[Collector] = []
        family: dict[str, Any] = {"namespace": NAMESPACE, "registry": self.registry}
        self.requests = Counter(
            "http_requests", "Requests answered, by route, method and status.", ["route", "method", "status"], **family
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "How long requests took to answer, by route and method.",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            **family,
        )
        self.stream_calls = Counter(
            "stream_calls", "Calls to Stream, by operation and outcome.", ["operation", "outcome"], **family
        )
        self.stream_seconds = Histogram(
            "stream_call_duration_seconds",
            "How long calls to Stream took, by operation.",
            ["operation"],
            buckets=STREAM_BUCKETS,
            **family,
        )
        self.webhooks = Counter(
            "webhook_deliveries", "Webhook deliveries answered 200, by outcome.", ["outcome"], **family
        )

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route, method).observe(seconds)

    def stream_call(self, operation: str, outcome: str, seconds: float) -> None:
        """A StreamClient observer (stream/client.py)."""
        self.stream_calls.labels(operation, outcome).inc()
        self.stream_seconds.labels(operation).observe(seconds)

    def webhook(self, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()

    def watch_queue(self, status: Callable[[], Status]) -> None:
        """Add the hand-over queue's gauges, read by `status` at each scrape."""
        collector = QueueCollector(status)
        self._collectors.append(collector)
        if not multiprocess():
            self.registry.register(collector)

    def exposition(self) -> bytes:
        """The text of a scrape: every worker's values under gunicorn, this process's otherwise."""
        if not multiprocess():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)
