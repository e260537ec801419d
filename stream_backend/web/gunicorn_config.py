"""gunicorn's hooks for the Procfile's web process (`gunicorn -c python:stream_backend.web.gunicorn_config`).

- `on_starting` checks the settings once, in the master, before any worker starts: a missing
  or wrong setting prints one `Cannot start: ...` and stops gunicorn with status 3, rather
  than once per worker (each worker builds the app again with `create_app()`, from the same
  environment, so it would fail the same way).
- `post_worker_init` starts each worker's deliveries to the primary system as soon as it
  runs, so that a backlog left by a restart is delivered without waiting for a request.
"""

import os
import sys

from dotenv import load_dotenv

from stream_backend.errors import SettingsError
from stream_backend.settings import Settings


def on_starting(server) -> None:
    load_dotenv()  # the workers inherit what .env set
    try:
        Settings.from_environ(os.environ)
    except SettingsError as error:
        print(f"Cannot start: {error}", file=sys.stderr)
        sys.exit(3)


def post_worker_init(worker) -> None:
    worker.wsgi.extensions["handover"].start()
