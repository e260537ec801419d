"""The service as a host runs it in production: the Procfile's gunicorn with 2 workers, in front
of the Stream stand-in. /metrics adds up every worker's values whichever answers, and keeps a
dead worker's; /readyz answers over HTTP; with LOG_FORMAT=json every line on its output, its
master's and its workers' included, is one JSON object."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import live
from support.examples import sign, webhook_event

API_KEY = "production-key"
API_SECRET = "production-secret-" + "p" * 32
METRICS_TOKEN = "production-metrics-" + "m" * 32
REQUESTS = 40


@pytest.fixture(scope="module")
def stand_in():
    with live.stand_in(API_KEY, API_SECRET) as url:
        yield url


def environment(stand_in, folder: Path, **settings) -> dict[str, str]:
    return {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": stand_in,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(folder / "webhooks.sqlite3"),
        "WEB_CONCURRENCY": "2",
        **settings,
    }


def workers(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return sorted(map(int, children))


def tokens_counted(url: str) -> float:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "stream_backend_http_requests_total" and sample.labels == {
                "route": "/generate-token",
                "method": "POST",
                "status": "200",
            }:
                return sample.value
    return 0.0


def counted_by(metrics_dir: Path) -> set[int]:
    """The pids of the workers that wrote a counter (a file each, prometheus-client's)."""
    return {int(path.stem.removeprefix("counter_")) for path in metrics_dir.glob("counter_*.db")}


def test_metrics_add_up_every_workers_and_keep_a_dead_workers(stand_in, tmp_path):
    """Whichever worker answers a scrape, it counts every worker's requests, those of a worker
    that was killed since included. Which worker takes a request is the kernel's choice, so
    the workers that served the first half are killed: others serve the second."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"an earlier run's file")  # emptied at start
    env = environment(stand_in, tmp_path, METRICS_TOKEN=METRICS_TOKEN, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    procfile = f"exec {live.procfile_command()}"
    token = lambda _: requests.post(f"{url}/generate-token", json={"user_id": "tommaso"}, timeout=5)  # noqa: E731
    with (
        live.running(procfile, f"{url}/healthz", env={**env, "PORT": str(port)}, shell=True, quiet=True) as master,
        ThreadPoolExecutor(8) as pool,
    ):
        list(pool.map(token, range(REQUESTS // 2)))
        first = counted_by(metrics_dir)
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (first & set(workers(master.pid)) or len(workers(master.pid)) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        list(pool.map(token, range(REQUESTS // 2)))
        scrapes = [tokens_counted(url) for _ in range(10)]  # new connections: either worker answers
        ready = requests.get(f"{url}/readyz", timeout=5)

    assert 1 not in first
    assert counted_by(metrics_dir) - first, "no other worker served the second half"
    assert scrapes == [REQUESTS] * 10  # every worker's, the dead ones' included
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_with_log_format_json_every_line_is_one_json_object(stand_in, tmp_path):
    output = tmp_path / "output.log"
    body = webhook_event("message.new")
    with live.service(environment(stand_in, tmp_path, LOG_FORMAT="json"), output_path=output) as url:
        token = requests.post(f"{url}/generate-token", json={"user_id": "tommaso"}, timeout=5)
        requests.post(f"{url}/generate-token", json={"user_id": "tom maso"}, timeout=5)
        requests.get(f"{url}/no/such/route%0aforged line", timeout=5)
        requests.post(
            f"{url}/stream-incoming-wh", data=body, headers={"X-Signature": sign(body, API_SECRET)}, timeout=5
        )
        requests.post(f"{url}/stream-incoming-wh", data=body, headers={"X-Signature": "wrong"}, timeout=5)
        requests.get(f"{url}/readyz", timeout=5)
    lines = [line for line in output.read_text().splitlines() if line.strip()]

    parsed = [json.loads(line) for line in lines]  # raises on any line that is not JSON

    assert all(isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys() for entry in parsed)
    access = [entry for entry in parsed if entry["logger"] == "stream_backend.access"]
    token_line = next(entry for entry in access if entry["request_id"] == token.headers["X-Request-Id"])
    assert token_line["route"] == "/generate-token" and token_line["status"] == 200
    assert token_line["method"] == "POST" and token_line["duration_ms"] >= 0
    assert {(entry["route"], entry["status"]) for entry in access} >= {
        ("/generate-token", 400),
        ("unmatched", 404),
        ("/stream-incoming-wh", 200),
        ("/stream-incoming-wh", 401),
        ("/readyz", 200),
    }
    webhook = next(entry for entry in parsed if "webhook" in entry)
    assert webhook["webhook"]["outcome"] == "logged" and webhook["webhook"]["type"] == "message.new"
    assert any(entry["logger"] == "gunicorn.error" and "Booting worker" in entry["message"] for entry in parsed)
    assert any("TOKEN_AUTH=open" in entry["message"] for entry in parsed)


def test_a_settings_error_in_json_mode_is_a_json_line_too(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STREAM_", "TOKEN_", "AUTH_"))}
    env.update(
        PATH=f"{Path(live.sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PORT=str(live.free_port()),
        LOG_FORMAT="json",
        STREAM_API_KEY="key",
        STREAM_API_SECRET="secret",
    )
    result = live.subprocess.run(
        ["bash", "-c", f"exec {live.procfile_command()}"],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 3
    assert [line["message"] for line in lines if line["message"].startswith("Cannot start")] == [
        next(line["message"] for line in lines if "TOKEN_AUTH must be set" in line["message"])
    ]
