"""gunicorn's settings, hooks and logging for the web process, as the Procfile and `make run`
start it (`gunicorn -c python:stream_backend.web.gunicorn_config 'app:create_app()'`).

- The worker model, declared here once for both: gevent workers (web/gunicorn_worker.py), so
  that a connection costs a greenlet and a slow client holds nothing the others need
  (docs/production.md says why, and what the timeouts are). WEB_CONCURRENCY processes (one per core) of
  up to WEB_CONNECTIONS connections each (1000); the request line and headers within
  `keepalive` seconds, the body within `timeout`.

- `on_starting` checks the settings once, in the master, before any worker starts: a missing
  or wrong setting prints one `Cannot start: ...` and stops gunicorn with status 3, rather
  than once per worker (each worker builds the app again with `create_app()`, from the same
  environment, so it would fail the same way).
- `post_worker_init` starts each worker's deliveries to the primary system as soon as it
  runs, so that a backlog left by a restart is delivered without waiting for a request.
- `.env` is read when gunicorn reads this file, so that LOG_FORMAT there sets gunicorn's own
  lines' format too (`logconfig_dict`), and the workers inherit what it set.

With METRICS_TOKEN set, the workers keep their metrics in files (prometheus-client's
multiprocess mode, web/metrics.py): `on_starting` gives them PROMETHEUS_MULTIPROC_DIR (a fresh
directory of this run's, or the one set, emptied of an earlier run's files), `child_exit` marks
a worker that died, and `on_exit` removes the directory it made.
"""

import glob
import os
import shutil
import sys
import tempfile

from dotenv import load_dotenv

from stream_backend.errors import SettingsError
from stream_backend.settings import Settings
from stream_backend.web.logs import cannot_start, gunicorn_logconfig


def environment_count(name: str, default: int) -> int:
    """A count from .env (or the environment) for gunicorn's own settings, which the app's
    settings do not hold: a wrong one stops gunicorn with the same message they would. (A
    wrong WEB_CONCURRENCY in the environment itself is gunicorn's own error, at its import.)"""
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        cannot_start(f"{name} must be a positive integer, not {value!r}.", os.environ)
        sys.exit(3)
    return int(value)


def cores() -> int:
    """The cores this process may run on (Linux: its affinity; elsewhere: the machine's). A
    container's CPU quota is not seen: set WEB_CONCURRENCY there (Heroku sets it itself)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


load_dotenv()
logconfig_dict = gunicorn_logconfig((os.environ.get("LOG_FORMAT") or "text").lower())

worker_class = "stream_backend.web.gunicorn_worker.Worker"
# One event loop per core: a worker is one process, and while the kernel runs another in its
# place every connection of it waits, so more workers than cores only lengthen the tail.
# gunicorn reads WEB_CONCURRENCY from the environment itself too (hosts such as Heroku set it),
# and a wrong one there is its own error, before this file runs; read here for .env's.
workers = environment_count("WEB_CONCURRENCY", cores())
worker_connections = environment_count("WEB_CONNECTIONS", 1000)
keepalive = 5  # seconds for a request's line and headers, the first request's too
timeout = 30  # seconds for a request's body; and for a worker that stops answering its master
# Seconds a worker has, after a SIGTERM, to finish the requests under way before its master
# kills it: inside the 30 s platforms such as Heroku give the whole process before their SIGKILL.
graceful_timeout = 20
control_socket_disable = True  # so that several instances can run on one machine


MADE_DIRECTORY = "STREAM_BACKEND_METRICS_DIR_MADE"  # set in the master when it made the directory


def on_starting(server) -> None:
    try:
        settings = Settings.from_environ(os.environ)
    except SettingsError as error:
        cannot_start(str(error), os.environ)
        sys.exit(3)
    if settings.metrics_token:
        prepare_metrics_directory()


def prepare_metrics_directory() -> None:
    """Before any worker starts (and imports prometheus-client, which reads it then): a
    directory for their metrics' files, which must not hold an earlier run's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[MADE_DIRECTORY] = tempfile.mkdtemp(prefix="metrics-")
        return
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)


def child_exit(server, worker) -> None:
    """A worker that exited: its counters stay in the sums, its live gauges go."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if os.environ.get(MADE_DIRECTORY):
        shutil.rmtree(os.environ[MADE_DIRECTORY], ignore_errors=True)


def post_worker_init(worker) -> None:
    worker.wsgi.extensions["handover"].start()
