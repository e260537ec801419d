"""Start-up as hosts run it: the Procfile's gunicorn checks the settings once, in its master,
and stops with status 3 and one message; `flask run` finds the app factory."""

import os
import subprocess
import sys
from pathlib import Path

import live
from live import ROOT


def procfile_web(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("STREAM_", "TOKEN_", "AUTH_"))}
    return subprocess.run(
        ["bash", "-c", f"exec {live.procfile_command()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, "PATH": path, "PORT": str(live.free_port()), "WEB_CONCURRENCY": "4", **env},
    )


def test_a_settings_error_stops_gunicorn_with_one_message_and_status_3(tmp_path):
    result = procfile_web(
        {"STREAM_API_KEY": "key", "STREAM_API_SECRET": "secret", "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3")}
    )

    assert result.returncode == 3
    assert result.stderr.count("Cannot start: TOKEN_AUTH must be set") == 1, result.stderr
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr


def test_flask_run_finds_the_factory_and_stops_on_a_settings_error(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STREAM_", "TOKEN_"))}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(live.free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "STREAM_API_KEY": "key", "WEBHOOK_DB": str(tmp_path / "w.sqlite3")},
    )

    assert result.returncode == 3
    assert result.stderr.count("Cannot start:") == 1 and "STREAM_API_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_connection_count_stops_gunicorn_with_one_message_and_status_3(tmp_path):
    result = procfile_web({"WEB_CONNECTIONS": "many", "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3")})

    assert result.returncode == 3
    assert result.stderr.count("Cannot start: WEB_CONNECTIONS must be a positive integer, not 'many'.") == 1
    assert "Traceback" not in result.stderr
