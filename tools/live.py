"""Real processes for end-to-end runs: the Stream stand-in, and the service started exactly as
the Procfile starts it (gunicorn). Used by the end-to-end tests and the benchmark."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "tools" / "stream_stand_in.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The setups the benchmarks compare the Procfile's with, in the same run: the service on its
# earlier gthread workers, and the reference's 4 sync workers.
GTHREAD_COMMAND = (
    "gunicorn -c python:stream_backend.web.gunicorn_config 'app:create_app()' --bind 0.0.0.0:${PORT} "
    "--worker-class gthread --workers 4 --threads 8"
)
REFERENCE_COMMAND = "gunicorn 'app:create_app()' --bind 0.0.0.0:${PORT} --workers 4 --no-control-socket"


def procfile_command(process_type: str = "web") -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return command.strip()
    raise LookupError(f"no {process_type!r} process in the Procfile")


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout} s")


@contextmanager
def running(command, url: str, env: dict, shell: bool = False, quiet: bool = False, output_path: Path | None = None):
    """Start `command`, wait until `url` answers, and stop it (and its children) afterwards.
    Its output goes to `output_path` when given (stdout and stderr), nowhere when `quiet`."""
    # The venv's gunicorn and python come first, whoever started the tests.
    env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    output = open(output_path, "w") if output_path else subprocess.DEVNULL if quiet else None  # noqa: SIM115
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        shell=shell,
        start_new_session=True,
        executable="/bin/bash" if shell else None,
        stdout=output,
        stderr=output,
    )
    try:
        wait_until_up(url, process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
        process.wait(timeout=30)
        if output_path:
            output.close()  # type: ignore[union-attr]


@contextmanager
def stand_in(api_key: str, api_secret: str, latency_ms: float = 0, options: tuple[str, ...] = ()):
    """The Stream stand-in on a free loopback port, with `options` of its command line; yields
    its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        str(STAND_IN),
        "--port",
        str(port),
        "--api-key",
        api_key,
        "--api-secret",
        api_secret,
        "--latency-ms",
        str(latency_ms),
        *options,
    ]
    with running(command, f"{url}/_stand_in/calls", env={}):
        yield url


def service_env(api_key: str, api_secret: str, stream_url: str, directory: str) -> dict:
    """The service's settings for a benchmark against the stand-in: tokens for anyone, warnings
    only in its log, its SQLite file in `directory`."""
    return {
        "STREAM_API_KEY": api_key,
        "STREAM_API_SECRET": api_secret,
        "STREAM_CHAT_URL": stream_url,
        "TOKEN_AUTH": "open",
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_DB": f"{directory}/webhooks.sqlite3",
    }


@contextmanager
def service(env: dict, command: str | None = None, quiet: bool = False, output_path: Path | None = None):
    """The service as the Procfile starts it (or as `command` does), on a free port; yields
    its base URL. Its output goes to `output_path` when given."""
    port = free_port()
    with running(
        f"exec {command or procfile_command()}",
        f"http://127.0.0.1:{port}/healthz",
        env={**env, "PORT": str(port)},
        shell=True,
        quiet=quiet,
        output_path=output_path,
    ):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def redis_server():
    """A redis-server of its own on a free loopback port, without persistence: yields its URL."""
    import redis

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
