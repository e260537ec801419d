"""`flask --app app backfill` and `verify` as their users meet them, each in a process of its
own: `--help` and `--check` need no setting, a command that calls Stream needs only Stream's
and says so, none warns of TOKEN_AUTH, and without a terminal each shows its progress in lines."""

import os
import subprocess
import sys

from live import ROOT
from support.examples import API_KEY, API_SECRET
from support.history import EXAMPLE
from support.stream import stand_in_over_http


def flask(*args, **env) -> subprocess.CompletedProcess:
    """`flask --app app ARGS`, with none of the service's settings but `env`."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("STREAM_", "TOKEN_", "AUTH_"))}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *map(str, args)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def history(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(EXAMPLE.read_bytes())
    return path


def test_help_and_check_need_no_setting(tmp_path):
    usage = flask("backfill", "--help")
    check = flask("backfill", history(tmp_path), "--check")

    assert usage.returncode == 0 and "--resume" in usage.stdout
    assert check.returncode == 0, check.stderr
    assert "valid 7 messages" in check.stdout and "refused: 0" in check.stdout
    assert "Cannot" not in usage.stderr + check.stderr and "TOKEN_AUTH" not in usage.stderr + check.stderr


def test_a_command_that_calls_stream_names_the_settings_it_lacks(tmp_path):
    result = flask("verify", history(tmp_path))

    assert result.returncode == 3
    assert result.stderr.count("Cannot run: STREAM_API_KEY and STREAM_API_SECRET must be set") == 1
    assert "TOKEN_AUTH" not in result.stderr and "Traceback" not in result.stderr


def test_backfill_and_verify_need_no_token_auth_warn_of_none_and_show_progress_in_lines(tmp_path):
    path = history(tmp_path)
    env = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "WEBHOOK_DB": str(tmp_path / "webhooks.sqlite3"),
    }
    with stand_in_over_http() as (url, _):
        backfilled = flask("backfill", path, STREAM_CHAT_URL=url, **env)
        verified = flask("verify", path, STREAM_CHAT_URL=url, TOKEN_AUTH="open", **env)

    assert backfilled.returncode == 0, backfilled.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "TOKEN_AUTH" not in backfilled.stderr + verified.stderr
    assert "messages: 6/6 records (100%)" in backfilled.stderr and "replies: 1/1 records (100%)" in backfilled.stderr
    assert "checking messages: 7/7 records (100%)" in verified.stderr
    assert "\r" not in backfilled.stderr + verified.stderr
