"""gunicorn's hooks and logging for the Procfile's web process (`gunicorn -c
python:stream_backend.web.gunicorn_config`).

`on_starting` checks the settings once, in the master, before any worker starts: a missing or
wrong setting prints one `Cannot start: ...` and stops gunicorn with status 3, rather than
once per worker (each worker builds the app again with `create_app()`, from the same
environment, so it would fail the same way). `.env` is read when gunicorn reads this file, so
that LOG_FORMAT there sets gunicorn's own lines' format too (`logconfig_dict`), and the
workers inherit what it set.
"""

import os
import sys

from dotenv import load_dotenv

from stream_backend.errors import SettingsError
from stream_backend.settings import Settings
from stream_backend.web.logs import cannot_start, gunicorn_logconfig

load_dotenv()
logconfig_dict = gunicorn_logconfig((os.environ.get("LOG_FORMAT") or "text").lower())


def on_starting(server) -> None:
    try:
        Settings.from_environ(os.environ)
    except SettingsError as error:
        cannot_start(str(error), os.environ)
        sys.exit(3)
