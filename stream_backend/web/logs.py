"""The service's log lines: one line each, to stderr, written without a lock, and client text
in them made safe to log. LOG_FORMAT=text (the default) writes `time level logger message`;
LOG_FORMAT=json writes one JSON object a line (python-json-logger), where what a line is about
(the access log's request id, route, status and duration; the webhook's outcome) are fields of
their own: each call passes them as `extra`, which the text format leaves out.

gunicorn's own lines (its master's, a worker's boot) take the same format through
`gunicorn_logconfig`, which web/gunicorn_config.py hands to gunicorn.
"""

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def loggable(text: str) -> str:
    """`text` as it would appear in a URL: percent-encoded, so that a client's `%0a` cannot
    start a forged log line, nor a space shift the fields."""
    return quote(text, safe="/!$&'()*+,;=:@~", errors="backslashreplace")


class LineWriter(logging.Handler):
    """Writes each log line to stderr with a single write(2), and takes no lock: a line under
    4 KB is written whole (POSIX, PIPE_BUF) even when threads write at once.

    Measured with bench/run.py on the token route at 32 connections: with logging's
    StreamHandler, threads queued on its lock (a quarter of a worker's time, py-spy); with a
    QueueHandler, waking its writer thread for every line cost a fifth of the throughput.
    This writer costs nothing measurable.
    """

    def createLock(self) -> None:
        self.lock = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(2, (self.format(record) + "\n").encode())
        except Exception:  # noqa: BLE001 -- a handler never raises: logging's own handleError reports it
            self.handleError(record)


def json_formatter() -> logging.Formatter:
    """One JSON object a line: `time` (ISO 8601, UTC), `level`, `logger`, `message`, and the
    line's own fields (`extra`)."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def formatter(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The service's log lines (access log included) at `level` (a level's name, checked by
    the settings), to stderr, one line each, in `log_format`. A process that configured its
    logging before (a host embedding the service, the tests) keeps its handlers, as with
    logging.basicConfig; the service's own loggers take `level` either way."""
    writer = LineWriter()
    writer.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[writer])
    if log_format == "json":
        logging.captureWarnings(True)  # Python's warnings are log lines too, not raw stderr text
    logging.getLogger("stream_backend").setLevel(level)
    werkzeug = logging.getLogger("werkzeug")
    if skip_request_lines not in werkzeug.filters:
        werkzeug.addFilter(skip_request_lines)


def skip_request_lines(record: logging.LogRecord) -> bool:
    """`flask run`'s server (werkzeug) logs every request at INFO, with the line's parts as
    arguments; our access log already has that line, with the request id. Its other lines
    (the address it serves on, errors) stay."""
    return not (record.levelno == logging.INFO and record.args)


def gunicorn_logconfig(log_format: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict` for `log_format`: empty for text (gunicorn's own lines as
    they are); for json, its error log as JSON lines on stderr, its access log off (ours has
    the request id), and the root logger left without a handler for configure_logging."""
    if log_format != "json":
        return {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["none"], "propagate": False},
        },
        "handlers": {
            "stderr": {"class": "stream_backend.web.logs.LineWriter", "formatter": "json"},
            "none": {"class": "logging.NullHandler"},
        },
        "formatters": {"json": {"()": "stream_backend.web.logs.json_formatter"}},
    }


def cannot_start(problem: str, environ: Mapping[str, str]) -> None:
    """Say on stderr that the service cannot start, and why: as a JSON line when the
    environment asks for JSON logs (the settings, which would say so, are what failed)."""
    if (environ.get("LOG_FORMAT") or "").lower() == "json":
        line = json.dumps({"level": "CRITICAL", "logger": "stream_backend", "message": f"Cannot start: {problem}"})
    else:
        line = f"Cannot start: {problem}"
    print(line, file=sys.stderr, flush=True)
