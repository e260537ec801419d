"""Under `flask run` (which `make run` used before it ran gunicorn, and which still works),
each request is logged once: by our access log."""

import os
import subprocess
import sys

import requests

import live


def test_flask_run_logs_each_request_once(tmp_path):
    port = live.free_port()
    env = {
        **os.environ,
        "STREAM_API_KEY": "log-key",
        "STREAM_API_SECRET": "log-secret-" + "l" * 32,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
        "FLASK_DEBUG": "0",
    }
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
            cwd=live.ROOT,
            env=env,
            stdout=stderr,
            stderr=stderr,
        )
        try:
            live.wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
            requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
        finally:
            process.terminate()
            process.wait(timeout=10)
    output = (tmp_path / "stderr").read_text()

    assert output.count("/openapi.json") == 1, output
    assert "Running on http://127.0.0.1" in output  # werkzeug's own lines stay
