"""The service's commands, run with its settings and `.env`:

    flask --app app backfill FILE [--check] [--resume] [--concurrency N] [--rate-share X] [--via live|import]
    flask --app app verify FILE [--out DIFFERENCES]

FILE is in Stream's import format (JSON Lines). The work is done by migration/backfill.py and migration/verify.py;
this module only reads the options, builds a paced Stream client and prints the summary.

Flask's CLI builds the app before it finds a command (`create_app()`): when it builds it only
to find one (`finding_a_command`), app.py gives it an app of the commands alone, which needs no
setting, so that `--help` and `backfill --check` work anywhere; the commands that call Stream
read the settings they use when they run (`settings`), without TOKEN_AUTH.

Exit status: 0 when all is well; 1 when a line was refused or failed, or Stream differs;
2 when the run could not finish (a checkpoint of another file, or Stream unreachable or
failing after every retry: for a backfill, run again with --resume); 3 when a setting it needs
is missing or wrong; 130 when stopped before the end (Ctrl-C, or too many failures in a row:
run again with --resume).
"""

import os

import click
import requests
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from stream_backend.errors import SettingsError, StreamError, StreamUnavailable
from stream_backend.migration import backfill as backfill_module
from stream_backend.migration import verify as verify_module
from stream_backend.migration.pacing import GaveUp, Pacer, describe, paced_client
from stream_backend.mirror.mirror import Mirror
from stream_backend.mirror.origin import derive_origin_key
from stream_backend.mirror.state import open_sync_state
from stream_backend.settings import Settings
from stream_backend.web.logs import configure_logging


def register(app: Flask) -> None:
    app.cli.add_command(backfill)
    app.cli.add_command(verify)


def finding_a_command() -> bool:
    """Whether Flask's CLI is building the app only to find one of its commands (`flask --app
    app backfill ...`, `flask --app app --help`), not to serve it: it asks from its own group's
    context then, while `flask run` (and `shell`, `routes`) build it inside their command."""
    context = click.get_current_context(silent=True)
    return context is not None and isinstance(context.command, FlaskGroup)


def settings() -> Settings:
    """The settings of a command that calls Stream: the app's when it was built with them (a
    test's, a host's), else read now from the environment and `.env` as a command needs them
    (Settings.from_environ(serving=False)); a problem stops the command with status 3."""
    if "SETTINGS" in current_app.config:
        return current_app.config["SETTINGS"]
    try:
        read = Settings.from_environ(os.environ, serving=False)
    except SettingsError as error:
        click.echo(f"Cannot run: {error}", err=True)
        raise SystemExit(3) from None
    configure_logging(read.log_level)
    current_app.config["SETTINGS"] = read
    return read


def _client(pacer: Pacer, pool_size: int):
    config = settings()
    return paced_client(
        config.stream_api_key, config.stream_api_secret, config.stream_chat_url, config.stream_timeout, pacer, pool_size
    )


def _mirror(client) -> Mirror:
    """The mirror the routes use, writing through the command's paced client: the same
    shared state (so that a live sync after the backfill skips what it wrote) and origin mark."""
    config = settings()
    state = open_sync_state(config.store_location, config.sync_state_ttl_seconds)
    return Mirror(client, state, derive_origin_key(config.stream_api_secret))


def _finish(lines: list[str], status: int) -> None:
    for line in lines:
        click.echo(line)
    raise SystemExit(status)


@click.command("backfill")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--check", is_flag=True, help="Only validate the file, as stream-cli's validate-import does.")
@click.option("--resume", is_flag=True, help="Skip what an earlier, interrupted run of this file did.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=backfill_module.DEFAULT_CONCURRENCY,
    show_default=True,
    help="Calls to Stream at a time.",
)
@click.option(
    "--rate-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=backfill_module.DEFAULT_RATE_SHARE,
    show_default=True,
    help="Share of each of Stream's rate limits to use; the rest is left to live traffic.",
)
@click.option(
    "--via",
    type=click.Choice(["live", "import"]),
    default="live",
    show_default=True,
    help="live: through the mirror over Stream's API; import: Stream's importer.",
)
@with_appcontext
def backfill(file: str, check: bool, resume: bool, concurrency: int, rate_share: float, via: str) -> None:
    """Bring the history in FILE (Stream's import format, JSON Lines) into Stream."""
    report = backfill_module.report_path(file)
    if check:
        summary, valid = backfill_module.check(file)
        lines = [f"valid {count} {record_type}s" for record_type, count in valid.items() if count]
        _finish(
            [*lines, f"refused: {summary.refused}"] + ([f"refused lines: {report}"] if summary.refused else []),
            0 if summary.ok() else 1,
        )
    pacer = Pacer(rate_share)
    options = backfill_module.Options(concurrency=concurrency, resume=resume)
    client = _client(pacer, concurrency)
    try:
        if via == "import":
            summary = backfill_module.run_import(file, client, options)
        else:
            summary = backfill_module.run_live(file, _mirror(client), pacer, options)
    except ValueError as error:  # a checkpoint that does not fit the file
        _finish([f"Cannot resume: {error}"], 2)
    except (GaveUp, StreamError, StreamUnavailable, requests.RequestException) as error:  # Stream still failing
        _finish([f"Backfill could not finish: {describe(error)}; run again with --resume"], 2)
    lines = summary.lines("imported" if via == "import" else "mirrored")
    if pacer.rate_limited or pacer.waited >= 1:
        lines.append(f"paced: waited {pacer.waited:.0f} s for Stream's rate limits ({pacer.rate_limited} 429s)")
    if summary.refused or summary.failed:
        lines.append(f"refused and failed lines: {report}")
    if summary.interrupted:
        lines.append(f"stopped before the end: run again with --resume ({backfill_module.checkpoint_path(file)})")
        _finish(lines, 130)
    _finish(lines, 0 if summary.ok() else 1)


@click.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Where to write the differences (default: FILE.differences.jsonl).",
)
@click.option(
    "--concurrency", type=click.IntRange(1, 64), default=8, show_default=True, help="Queries to Stream at a time."
)
@with_appcontext
def verify(file: str, out: str | None, concurrency: int) -> None:
    """Check that Stream holds what FILE (Stream's import format) says: users, channels and
    their members, messages (channel, text, deleted)."""
    out = out or verify_module.differences_path(file)
    try:
        summary = verify_module.verify(file, _client(Pacer(1.0), concurrency), out, concurrency)
    except (GaveUp, StreamError, StreamUnavailable, requests.RequestException) as error:  # Stream still failing: exit 2
        _finish([f"Verify could not finish: {describe(error)}"], 2)
    _finish(summary.lines() + ([f"differences: {out}"] if summary.differences else []), 1 if summary.differences else 0)
