"""The service started in a process of its own, from an environment of the test's choosing."""

import os
import subprocess
import sys

from live import ROOT


def create_app_in_a_process(environ: dict[str, str]) -> subprocess.CompletedProcess:
    """`create_app()` in a fresh Python, as `flask run` and gunicorn call it: from the process
    environment (the test's own Stream, token and sync settings left out) and `.env`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STREAM_", "TOKEN_", "AUTH_", "SYNC_", "LOG_"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import app; app.create_app()"],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
