"""GET /metrics with METRICS_TOKEN, in one process (prometheus-client's own registry per app):
each family is there and moves with what the service does. Under gunicorn's workers:
tests/service/test_metrics.py."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from stream_backend.errors import StoreUnavailable
from stream_backend.web.metrics import Metrics, QueueCollector

from support.examples import MESSAGE_BODY, sign, webhook_event
from support.stream import STREAM_URL

METRICS_TOKEN = "metrics-token-" + "m" * 32
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def metered(environ):
    return create_app({**environ, "METRICS_TOKEN": METRICS_TOKEN}).test_client()


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by name and labels."""
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_without_metrics_token(client):
    response = client.get("/metrics")

    assert response.status_code == 404
    assert "METRICS_TOKEN" in response.get_json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}])
def test_metrics_need_the_metrics_token_as_a_bearer(metered, headers):
    response = metered.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_requests_are_counted_by_route_template_method_and_status(metered, stream):
    before = scrape(metered)
    metered.post("/generate-token", json={"user_id": "tommaso"})
    metered.post("/generate-token", json={"user_id": "tom maso"})
    metered.put("/message/m-404", json={"message": {"text": "x"}, "user": {"id": "tommaso"}})
    metered.get("/nowhere/at/all")
    after = scrape(metered)

    name = "stream_backend_http_requests_total"
    for route, method, status in [
        ("/generate-token", "POST", "200"),
        ("/generate-token", "POST", "400"),
        ("/message/{message_id}", "PUT", "404"),
        ("unmatched", "GET", "404"),
    ]:
        labels = {"route": route, "method": method, "status": status}
        assert value(after, name, **labels) - value(before, name, **labels) == 1, labels
    histogram = "stream_backend_http_request_duration_seconds_count"
    assert value(after, histogram, route="/generate-token", method="POST") == 2


def test_an_unknown_method_is_one_label_not_one_each(metered):
    for method in ("BREW", "PROPFIND"):
        metered.open("/healthz", method=method)

    labels = {"route": "unmatched", "method": "other", "status": "405"}
    assert value(scrape(metered), "stream_backend_http_requests_total", **labels) == 2


def test_stream_calls_are_counted_by_operation_and_outcome_429_included(metered, stream):
    metered.post("/message", json=MESSAGE_BODY)
    stream.post(
        f"{STREAM_URL}/users",
        status_code=429,
        json={"code": 9, "message": "Too many requests", "StatusCode": 429, "duration": "0.0ms"},
        headers={"X-RateLimit-Reset": "0"},
    )
    limited = metered.post("/channel", json={"channel": {"creator_id": "ana"}, "members": {"ana": {}, "bo": {}}})
    samples = scrape(metered)

    assert limited.status_code == 429
    calls = "stream_backend_stream_calls_total"
    assert value(samples, calls, operation="UpdateUsers", outcome="ok") == 1
    assert value(samples, calls, operation="GetOrCreateDistinctChannel", outcome="ok") == 1
    assert value(samples, calls, operation="SendMessage", outcome="ok") == 1
    assert value(samples, calls, operation="UpdateUsers", outcome="429") == 1
    assert value(samples, "stream_backend_stream_call_duration_seconds_count", operation="SendMessage") == 1
    assert value(samples, "stream_backend_http_requests_total", route="/channel", method="POST", status="429") == 1


def test_webhook_outcomes_and_the_queue_are_counted(environ, primary):
    primary.status = 503  # the event stays pending
    app = create_app(
        {**environ, "METRICS_TOKEN": METRICS_TOKEN, "PRIMARY_SYNC_URL": primary.url, "PRIMARY_SYNC_THREADS": "0"}
    )
    metered = app.test_client()
    body = webhook_event("message.new")
    headers = {"X-Signature": sign(body), "X-Webhook-Id": "metrics-delivery"}
    metered.post("/stream-incoming-wh", data=body, headers=headers)
    metered.post("/stream-incoming-wh", data=body, headers=headers)
    metered.post("/stream-incoming-wh", data=webhook_event("channel.truncated"), headers={"X-Signature": "bad"})
    samples = scrape(metered)

    deliveries = "stream_backend_webhook_deliveries_total"
    assert value(samples, deliveries, outcome="queued") == 1
    assert value(samples, deliveries, outcome="duplicate") == 1
    assert value(samples, "stream_backend_handover_queue_pending") == 1
    webhook = {"route": "/stream-incoming-wh", "method": "POST"}
    assert value(samples, "stream_backend_http_requests_total", **webhook, status="401") == 1


class Status:
    def __init__(self, **fields):
        self.pending, self.in_flight, self.failed, self.delivered_last_hour = 3, 1, 2, 40
        self.oldest_pending_age = 12.5
        self.__dict__.update(fields)


def queue_samples(status):
    metrics = Metrics()
    metrics.watch_queue(status)
    text = metrics.exposition().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_queue_gauges_are_read_from_its_status_at_each_scrape():
    statuses = iter([Status(), Status(pending=0, oldest_pending_age=None)])
    metrics = Metrics()
    metrics.watch_queue(lambda: next(statuses))

    first, second = (
        {s.name: s.value for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}
        for _ in range(2)
    )

    assert first["stream_backend_handover_queue_pending"] == 3
    assert first["stream_backend_handover_queue_in_flight"] == 1
    assert first["stream_backend_handover_queue_failed"] == 2
    assert first["stream_backend_handover_queue_delivered_last_hour"] == 40
    assert first["stream_backend_handover_queue_oldest_pending_age_seconds"] == 12.5
    assert second["stream_backend_handover_queue_pending"] == 0
    assert "stream_backend_handover_queue_oldest_pending_age_seconds" not in second  # nothing pending


def test_a_queue_store_that_cannot_answer_gives_no_gauges_and_the_scrape_still_answers():
    def status():
        raise StoreUnavailable("redis is down")

    samples = list(QueueCollector(status).collect())
    text = queue_samples(status)

    assert samples == []
    assert not [name for name in text if "handover_queue" in name]
