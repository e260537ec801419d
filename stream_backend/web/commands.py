"""The service's commands, run with its settings and `.env`:

    flask --app app backfill FILE [--check] [--resume] [--concurrency N] [--rate-share X] [--via live|import]
    flask --app app verify FILE [--out DIFFERENCES]

FILE is in Stream's import format (JSON Lines). The work is done by migration/backfill.py and migration/verify.py;
this module only reads the options, builds a paced Stream client and prints the summary.
Exit status: 0 when all is well; 1 when a line was refused or failed, or Stream differs;
2 when the run could not finish (a checkpoint of another file, or Stream unreachable or
failing after every retry: for a backfill, run again with --resume); 130 when stopped before
the end (Ctrl-C, or too many failures in a row: run again with --resume).
"""

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from stream_backend.errors import StreamError, StreamUnavailable
from stream_backend.migration import backfill as backfill_module
from stream_backend.migration import verify as verify_module
from stream_backend.migration.pacing import GaveUp, Pacer, describe, paced_client


def _client(pacer: Pacer, pool_size: int):
    settings = current_app.config["SETTINGS"]
    return paced_client(
        settings.stream_api_key,
        settings.stream_api_secret,
        settings.stream_chat_url,
        settings.stream_timeout,
        pacer,
        pool_size,
    )


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
            mirror = current_app.extensions["mirror"].with_client(client)
            summary = backfill_module.run_live(file, mirror, pacer, options)
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
