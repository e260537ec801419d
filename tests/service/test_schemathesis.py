"""The published contract, checked from outside: schemathesis reads the served /openapi.json
and sends what it generates from it to the service as the Procfile starts it (gunicorn), in
front of the Stream stand-in. Its hooks (schemathesis_hooks.py) say what JSON Schema cannot.

It runs twice: in workshop mode (TOKEN_AUTH=open, no bearer), and in production mode
(TOKEN_AUTH=jwt with SYNC_API_TOKEN), where the hooks send the bearers the document names."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import live
from support.examples import PRIMARY_SYNC_SECRET

API_KEY = "contract-key"
API_SECRET = "contract-secret-" + "c" * 32
TESTS = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).parent / "st"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MODES = {
    "open": {"TOKEN_AUTH": "open"},
    "jwt": {
        "TOKEN_AUTH": "jwt",
        "AUTH_JWT_SECRET": "contract-session-" + "j" * 32,
        "SYNC_API_TOKEN": "contract-sync-" + "t" * 32,
        "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET,
    },
}


@pytest.mark.parametrize("mode", MODES)
def test_schemathesis_finds_no_failure_and_no_warning(tmp_path, mode):
    env = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        **MODES[mode],
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
        "METRICS_TOKEN": "contract-metrics-" + "m" * 32,
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    with live.stand_in(API_KEY, API_SECRET) as stand_in:
        env["STREAM_CHAT_URL"] = stand_in
        with live.service(env, quiet=True) as url:
            # One worker: several threads parsing hypothesis's lambdas at once trip a CPython 3.11 bug.
            result = subprocess.run(
                [
                    str(SCHEMATHESIS),
                    "--config-file",
                    str(TESTS / "support" / "schemathesis.toml"),
                    "run",
                    f"{url}/openapi.json",
                    "--checks",
                    CHECKS,
                    "--phases",
                    "coverage,fuzzing",
                    "--max-examples",
                    "50",  # per operation and phase: with the coverage phase's cases, about 900 a run
                    "--workers",
                    "1",
                    "--report",
                    "junit,ndjson",
                    "--report-dir",
                    str(tmp_path / "report"),
                ],
                env={
                    **os.environ,
                    **env,
                    "SCHEMATHESIS_HOOKS": "support.schemathesis_hooks",
                    "PYTHONPATH": str(TESTS),
                    "NO_COLOR": "1",
                },
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
            )  # its cache goes there too

    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "WARNINGS" not in result.stdout and "passed" in result.stdout
