"""Running a model-based test (a hypothesis state machine) against instances of the service that
share one store: a fresh SQLite file, or a real Redis, emptied first."""

import tempfile
from pathlib import Path

import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from support.examples import API_KEY, API_SECRET


def run_on_a_shared_store(machine_class, store: str, request, steps: int, examples: int = 25) -> None:
    """Run `machine_class` (whose `environ` its instances are created from) on `store`,
    "sqlite" or "redis" (the `redis_url` fixture, through pytest's `request`)."""

    def machine():
        environ = {
            "STREAM_API_KEY": API_KEY,
            "STREAM_API_SECRET": API_SECRET,
            "TOKEN_AUTH": "open",
            "WEBHOOK_DB": str(Path(tempfile.mkdtemp()) / "webhooks.sqlite3"),
        }
        if store == "redis":
            redis_url = request.getfixturevalue("redis_url")
            redis.Redis.from_url(redis_url).flushdb()
            environ["REDIS_URL"] = redis_url
        machine_class.environ = environ
        return machine_class()

    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
