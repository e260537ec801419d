"""Helpers for the backfill and verify tests: import-format files, and the Flask commands run
as a user runs them."""

import json
from pathlib import Path

from live import ROOT

EXAMPLE = ROOT / "examples" / "history.jsonl"


def write_history(path: Path, records: list) -> Path:
    """`records`: `(type, item)` pairs, or raw strings written as they are (malformed lines)."""
    lines = [
        record if isinstance(record, str) else json.dumps({"type": record[0], "item": record[1]}) for record in records
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def user(user_id, **fields):
    return "user", {"id": user_id, **fields}


def channel(channel_id, created_by="ana", **fields):
    return "channel", {"id": channel_id, "type": "messaging", "created_by": created_by, **fields}


def member(channel_id, user_id):
    return "member", {"channel_type": "messaging", "channel_id": channel_id, "user_id": user_id}


def message(message_id, channel_id="general", sender="ana", text=None, **fields):
    return "message", {
        "id": message_id,
        "channel_type": "messaging",
        "channel_id": channel_id,
        "user": sender,
        "text": text or f"text of {message_id}",
        "created_at": "2022-05-01T10:00:00Z",
        **fields,
    }


def small_history(messages=20):
    """Two users, a channel with both as members, `messages` messages, the last one deleted."""
    records = [
        user("ana", name="Ana"),
        user("bo", name="Bo"),
        channel("general"),
        member("general", "ana"),
        member("general", "bo"),
    ]
    records += [message(f"m-{number:04d}", sender="ana" if number % 2 else "bo") for number in range(messages - 1)]
    records.append(message(f"m-{messages - 1:04d}", type="deleted", deleted_at="2022-05-01T11:00:00Z"))
    return records


def run_command(app, *args):
    """A Flask command, as `flask --app app ...` runs it: `(exit code, output)`."""
    result = app.test_cli_runner().invoke(args=[str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
