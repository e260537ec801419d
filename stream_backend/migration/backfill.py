"""Backfill: a primary system's history, in Stream's import format, brought into Stream.

Two ways, one file (import_file.py reads and checks it):

- `run_live`: through the mirror, over Stream's live API, as the dual-write does: users 100 a
  call, channels, members 100 a call, messages, reactions, in that order (each needs the one
  before), `concurrency` calls at a time but one channel's messages one after another, in
  file order (Stream's live API orders a channel by arrival), paced by pacing.py. Every write
  is safe to repeat, so a retry or a re-run changes nothing that already arrived.
- `run_import`: the file handed to Stream's own importer (the SDK's import calls), in parts of
  at most 300 MB, Stream's limit per file, each followed until Stream reports it done.

Over the live API, a record's `updated_at` is its version (mirror/versions.py), when it is an
RFC 3339 timestamp: a record older than what the service applied since (a live write of the
primary, a delete) is skipped and counted as already there, so a backfill never overwrites a
newer live write. Stream's importer writes what the file says.

Both are resumable: progress is checkpointed beside the file (`FILE.checkpoint.json`), and a
run with `resume` skips what is done and retries what failed. Refused lines (wrong: done) and
failed ones (Stream down, or without what they refer to: retried), with their line number and
reason, go to `FILE.refused.jsonl`. Nothing here knows of Flask.
"""

import functools
import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from stream_chat import StreamChat

from stream_backend.errors import InvalidRequest, StreamError
from stream_backend.migration import import_file
from stream_backend.migration.import_file import Record, Refusal, Refused
from stream_backend.migration.pacing import GaveUp, Pacer, describe, retrying
from stream_backend.migration.progress import Progress, plural
from stream_backend.mirror.mirror import Mirror
from stream_backend.mirror.versions import parse_version
from stream_backend.stream.rules import STREAM_BATCH_SIZE

# Chosen by measurement (bench/backfill.py, docs/performance.md): against a
# 25 ms Stream, throughput grows with concurrency up to 64 and not beyond.
DEFAULT_CONCURRENCY = 64
# Half of each endpoint's limit, the other half left to the live dual-write.
DEFAULT_RATE_SHARE = 0.5
# The phases of a live run, in the order their references need: replies (and quotes) after
# the messages they refer to, which threads one level deep allow.
LIVE_PHASES = ("user", "channel", "member", "message", "reply", "reaction")
# Stream's importer takes files of at most 300 MB.
MAX_PART_BYTES = 300 * 1000 * 1000
# A run stops (resumable) after this many failures in a row: Stream is down, not one record bad.
MAX_FAILURES_IN_A_ROW = 50
# How often the checkpoint is saved: a run that is killed (not stopped) sends again what was
# done since, and a save is a small file written whole (bench/backfill.py --resume-under-faults).
CHECKPOINT_SECONDS = 0.25
# Stream's message custom field where the original time is kept: the live API stamps a message
# with its arrival.
ORIGINAL_CREATED_AT = "original_created_at"

# Import-format fields that are not the live API's: read by the backfill, not sent as custom data.
USER_IMPORT_ONLY = {
    "created_at",
    "updated_at",
    "deleted_at",
    "deactivated_at",
    "channel_mutes",
    "user_mutes",
    "push_notifications",
}
CHANNEL_IMPORT_ONLY = {"id", "type", "created_by", "member_ids", "created_at", "updated_at"}
MESSAGE_IMPORT_ONLY = {
    "channel_type",
    "channel_id",
    "channel_member_ids",
    "user",
    "type",
    "html",
    "created_at",
    "updated_at",
    "deleted_at",
    "pinned_at",
    "pinned_by_id",
    "pin_expires",
    "mentioned_users_ids",
}

# Stream's Attachment fields (its spec); the import format's other attachment fields are custom.
ATTACHMENT_FIELDS = {
    "type",
    "fallback",
    "color",
    "pretext",
    "author_name",
    "author_link",
    "author_icon",
    "title",
    "title_link",
    "text",
    "image_url",
    "thumb_url",
    "footer",
    "footer_icon",
    "asset_url",
    "og_scrape_url",
    "original_width",
    "original_height",
    "actions",
    "fields",
    "giphy",
    "custom",
}


def checkpoint_path(path: str) -> str:
    return f"{path}.checkpoint.json"


def report_path(path: str) -> str:
    return f"{path}.refused.jsonl"


@dataclass
class Options:
    concurrency: int = DEFAULT_CONCURRENCY
    resume: bool = False
    progress: bool | None = None  # None: a bar on a terminal, else a line every few seconds; False: none
    stop: threading.Event = field(default_factory=threading.Event)  # set: stop, resumably
    part_bytes: int = MAX_PART_BYTES
    poll_seconds: float = 5.0  # the longest wait between two reads of an import task


@dataclass
class Summary:
    mirrored: int = 0  # written now (or, with Stream's importer, imported)
    already_there: int = 0  # Stream had it already, or a newer version of it
    refused: int = 0  # refused by the file's rules or by Stream (see the report)
    failed: int = 0  # still failing after every retry (see the report; retried by --resume)
    done_before: int = 0  # skipped with --resume: done by an earlier run
    interrupted: bool = False

    def ok(self) -> bool:
        return not (self.refused or self.failed or self.interrupted)

    def lines(self, written: str = "mirrored") -> list[str]:
        lines = [
            f"{written}: {self.mirrored}",
            f"already there: {self.already_there}",
            f"refused: {self.refused}",
            f"failed: {self.failed}",
        ]
        if self.done_before:
            lines.append(f"done by an earlier run: {self.done_before}")
        return lines


class Report:
    """The refused and failed lines, one JSON object a line, beside the file.

    A resumed run keeps the earlier run's refusals made when writing (Stream's 400s, what only
    Stream's importer takes): those records are done and not read again, so no later run
    would report them. The file's own refusals and the failures are reported anew by each run
    (every run checks the whole file, and retries what failed)."""

    def __init__(self, path: str, summary: Summary, resume: bool = False) -> None:
        self.path, self.summary = path, summary
        if resume and os.path.exists(path):
            self._keep_refused_when_written()
        self._file = open(path, "a" if resume else "w")  # noqa: SIM115 -- open for the run; close() closes it
        self._lock = threading.Lock()

    def _keep_refused_when_written(self) -> None:
        temporary = f"{self.path}.tmp"
        with open(self.path) as earlier, open(temporary, "w") as kept:
            for line in earlier:
                if '"stage": "write"' in line and '"outcome": "refused"' in line:
                    kept.write(line)
                    self.summary.refused += 1
        os.replace(temporary, self.path)

    def refused(self, refusal: Refusal, when_written: bool = False) -> None:
        self._write(refusal, "refused", stage="write" if when_written else None)

    def failed(self, refusal: Refusal, records: int = 1) -> None:
        self._write(refusal, "failed", records=records)

    def _write(self, refusal: Refusal, outcome: str, records: int = 1, stage: str | None = None) -> None:
        entry = {"line": refusal.line, "type": refusal.type, "outcome": outcome, "reason": refusal.reason}
        if stage:
            entry["stage"] = stage
        with self._lock:
            setattr(self.summary, outcome, getattr(self.summary, outcome) + records)
            self._file.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        self._file.close()


class Checkpoint:
    """How far a run got, written beside the file so that `resume` can skip what is done.

    A live run's mark is its phase, which lines of that phase are done (its `Tracker`), and the
    lines that failed (of any phase: --resume retries them). An import's: the parts done, and
    the task under way.
    """

    def __init__(self, path: str, via: str) -> None:
        self.path, self.via = checkpoint_path(path), via
        stat = os.stat(path)
        self.file = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        self.phase = 0
        self.tracker = Tracker()  # the lines of `phase` done
        self.failed: set[tuple[int, int]] = set()
        self.parts_done = 0  # an import's parts done, and its task under way
        self.task: dict[str, Any] | None = None
        self._lock = threading.Lock()  # workers add failed lines while the run saves

    def load(self) -> bool:
        """Read the checkpoint of an earlier run of this file; False when there is none. One
        written before the tracker kept the lines done beyond its mark has only the mark."""
        try:
            with open(self.path) as file:
                saved = json.load(file)
        except FileNotFoundError:
            return False
        if saved.get("file") != self.file or saved.get("via") != self.via:
            raise ValueError(
                f"{self.path} is from another file, another version of it, or the other --via; "
                "remove it or run without --resume"
            )
        self.phase = saved["phase"]
        self.tracker = Tracker(saved["done_through"], saved.get("read_through"), lines_of(saved.get("open", [])))
        self.failed = {tuple(entry) for entry in saved["failed"]}
        self.parts_done, self.task = saved["parts_done"], saved["task"]
        return True

    def save(self) -> None:
        with self._lock:
            failed = sorted(self.failed)
        state = {
            "file": self.file,
            "via": self.via,
            "phase": self.phase,
            **self.tracker.state(),
            "failed": failed,
            "parts_done": self.parts_done,
            "task": self.task,
        }
        temporary = f"{self.path}.tmp"
        with open(temporary, "w") as file:
            json.dump(state, file)
        os.replace(temporary, self.path)  # atomic: a crash leaves the old checkpoint or the new

    def start_phase(self, phase: int) -> None:
        """Mark `phase` as the one under way, none of its lines done yet."""
        self.phase, self.tracker = phase, Tracker()

    def is_done(self, phase: int, line: int) -> bool:
        if (phase, line) in self.failed:
            return False
        return phase < self.phase or (phase == self.phase and self.tracker.is_done(line))

    def set_failed(self, phase: int, line: int, failed: bool) -> None:
        with self._lock:
            if failed:
                self.failed.add((phase, line))
            else:
                self.failed.discard((phase, line))


class Tracker:
    """Which lines of a phase are done. Records are read in file order and finish out of order,
    `concurrency` at a time: one slow record (a retry, a 429) holds the line through which all
    are done, `done_through`, while hundreds after it finish. So the tracker keeps, beyond that
    line, the lines read (through `read_through`) that are still `open` (under way, or read
    ahead and not started when the run stopped): every other line read is done, and a resumed
    run skips it. `open` holds only what is in flight, a few hundred lines, so the checkpoint
    stays small.
    """

    def __init__(self, done_through: int = 0, read_through: int | None = None, open_lines=()) -> None:
        self.read_through = max(done_through, read_through or 0)
        self.open: set[int] = set(open_lines)
        self._lock = threading.Lock()

    @property
    def done_through(self) -> int:
        """The line through which every line read is done."""
        with self._lock:
            return min(self.open) - 1 if self.open else self.read_through

    def read(self, line: int) -> None:
        with self._lock:
            self.open.add(line)
            self.read_through = max(self.read_through, line)

    def done(self, lines: list[int]) -> None:
        with self._lock:
            self.open.difference_update(lines)

    def is_done(self, line: int) -> bool:
        with self._lock:
            return line <= self.read_through and line not in self.open

    def state(self) -> dict[str, Any]:
        """The tracker as the checkpoint keeps it: `open` as ranges of consecutive lines."""
        done_through = self.done_through
        with self._lock:
            return {"done_through": done_through, "read_through": self.read_through, "open": ranges(self.open)}


def ranges(lines) -> list[list[int]]:
    """Line numbers as `[first, last]` runs of consecutive numbers: a batch of users read
    together is one run."""
    runs: list[list[int]] = []
    for line in sorted(lines):
        if runs and runs[-1][1] == line - 1:
            runs[-1][1] = line
        else:
            runs.append([line, line])
    return runs


def lines_of(runs) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


@dataclass
class Unit:
    """Records written in one go (a batch of users or members, or one record)."""

    records: list[Record]
    write: Callable[[], bool]  # True: arrived now; False: Stream had it already
    # A batch Stream refused (400) is written again a record at a time, so that only the bad
    # one is refused: these are its records' units.
    one_by_one: Callable[[], list["Unit"]] | None = None
    channel: str | None = None  # a message's channel: one channel's messages go one at a time


class Lanes:
    """Run jobs `concurrency` at a time, but those of one channel one after another, in the
    order given: Stream's live API orders a channel's messages by their arrival. At most
    `max_held` jobs are held (read ahead, waiting or running), so memory stays flat."""

    def __init__(self, concurrency: int, max_held: int) -> None:
        self._pool = ThreadPoolExecutor(concurrency)
        self._held = threading.BoundedSemaphore(max_held)
        self._lock = threading.Lock()
        self._waiting: dict[str, deque] = {}  # channel -> its jobs waiting; there while one of them runs

    def submit(self, channel: str | None, job: Callable[[], None]) -> None:
        self._held.acquire()
        with self._lock:
            if channel is not None:
                if channel in self._waiting:
                    self._waiting[channel].append(job)
                    return
                self._waiting[channel] = deque()
        self._pool.submit(self._run, channel, job)

    def _run(self, channel: str | None, job: Callable[[], None] | None) -> None:
        while job is not None:  # then the channel's next job, in this thread: its order holds
            try:
                job()
            finally:
                self._held.release()
            job = self._next(channel)

    def _next(self, channel: str | None) -> Callable[[], None] | None:
        if channel is None:
            return None
        with self._lock:
            waiting = self._waiting[channel]
            if waiting:
                return waiting.popleft()
            del self._waiting[channel]
        return None

    def close(self) -> None:
        """Wait for every job submitted."""
        self._pool.shutdown(wait=True)


class Run:
    """What both ways share: the summary, the report, the checkpoint, and a stop (or Ctrl-C)
    that ends the run resumably."""

    via = ""

    def __init__(self, path: str, options: Options) -> None:
        self.path, self.options = path, options
        self.summary = Summary()
        self.report = Report(report_path(path), self.summary, options.resume)
        self.checkpoint = Checkpoint(path, self.via)

    def run(self) -> Summary:
        if self.options.resume:
            self.checkpoint.load()
        try:
            self._run(import_file.index_file(self.path, self.report.refused))
        except KeyboardInterrupt:
            self.options.stop.set()
        finally:
            self.summary.interrupted = self.options.stop.is_set()
            self.checkpoint.save()
            self.report.close()
        return self.summary

    def _run(self, index: import_file.Index) -> None:
        raise NotImplementedError


class LiveRun(Run):
    via = "live"

    def __init__(self, path: str, mirror: Mirror, pacer: Pacer, options: Options) -> None:
        super().__init__(path, options)
        self.mirror, self.pacer = mirror, pacer
        self._lock = threading.Lock()
        self._failures_in_a_row = 0

    def _run(self, index: import_file.Index) -> None:
        for number, phase in enumerate(LIVE_PHASES, start=1):
            if self.checkpoint.phase < number:
                self.checkpoint.start_phase(number)
            if phase_size(index, phase):
                self._phase(index, number, phase)
            if self.options.stop.is_set():
                return
        self.checkpoint.start_phase(len(LIVE_PHASES) + 1)
        for record in import_file.records(self.path, index, "device", self.report.refused):
            self.report.refused(Refusal(record.line, "device", "devices are imported by --via import only"))

    def _phase(self, index: import_file.Index, number: int, phase: str) -> None:
        """One phase: its records not done yet, written. The checkpoint's tracker follows the
        phase under way; a phase before it was done, but for its failed lines, which are
        written again with a tracker of their own."""
        current = self.checkpoint.phase == number
        tracker = self.checkpoint.tracker if current else Tracker()
        progress = Progress(plural(phase), phase_size(index, phase), self.options.progress)
        try:
            units = self._units(index, phase, number, tracker, progress)
            self._write_all(units, number, tracker, progress)
        finally:  # on Ctrl-C too
            progress.close()

    def _write_all(self, units: Iterator[Unit], number: int, tracker: Tracker, progress: Progress) -> None:
        """Write the units through the lanes, checkpointing every CHECKPOINT_SECONDS."""
        lanes = Lanes(self.options.concurrency, 4 * self.options.concurrency)
        saved_at = time.monotonic()
        try:
            for unit in units:
                if self.options.stop.is_set():
                    break
                lanes.submit(unit.channel, functools.partial(self._write_unit, number, unit, tracker, progress))
                if time.monotonic() - saved_at > CHECKPOINT_SECONDS:
                    self._save(progress)
                    saved_at = time.monotonic()
        except KeyboardInterrupt:
            self.options.stop.set()  # before the close: the units waiting are not started
            raise
        finally:
            lanes.close()  # those under way finish

    def _write_unit(self, number: int, unit: Unit, tracker: Tracker, progress: Progress) -> None:
        """A unit not started when the run was stopped is left open in the tracker: not done."""
        if self.options.stop.is_set():
            return
        self._write(number, unit)
        tracker.done([record.line for record in unit.records])
        progress.worked(len(unit.records))

    def _save(self, progress: Progress) -> None:
        """Checkpoint what is done, and show the rate the pacer allows."""
        self.checkpoint.save()
        rate = self.pacer.allowed_rate()
        progress.note(f"allowed {rate:.0f}/s" if rate else "")

    def _units(self, index, phase: str, number: int, tracker: Tracker, progress: Progress) -> Iterator[Unit]:
        """The phase's records, grouped in Stream's batch sizes; those done before skipped."""
        record_type = "message" if phase == "reply" else phase
        where = (lambda record: is_reply(record.item) == (phase == "reply")) if record_type == "message" else None

        def fresh() -> Iterator[Record]:
            for record in import_file.records(self.path, index, record_type, self.report.refused, where):
                if self.options.stop.is_set():
                    return
                if self.checkpoint.is_done(number, record.line):
                    self.summary.done_before += 1
                    progress.skipped()
                    continue
                tracker.read(record.line)
                yield record

        if phase == "user":
            yield from self._user_units(fresh())
        elif phase == "member":
            for _, batch in import_file.by_channel(fresh(), STREAM_BATCH_SIZE, 10 * STREAM_BATCH_SIZE):
                yield self._members_unit(batch)
        else:
            for record in fresh():
                channel = import_file.cid(record.item, "message") if record_type == "message" else None
                yield Unit([record], functools.partial(WRITERS[record_type], self.mirror, record.item), channel=channel)

    def _user_units(self, records: Iterator[Record]) -> Iterator[Unit]:
        for batch in import_file.chunks(records, STREAM_BATCH_SIZE):
            active = [record for record in batch if not is_inactive(record.item)]
            yield from (Unit([record], refuse_inactive) for record in batch if is_inactive(record.item))
            if active:
                yield self._users_unit(active)

    def _users_unit(self, batch: list[Record]) -> Unit:
        users = {record.item["id"]: user_object(record.item) for record in batch}
        versions = {record.item["id"]: version for record in batch if (version := version_of(record.item)) is not None}

        def write() -> bool:
            # Every user is written, but those a newer live write changed since: the mirror's
            # sync state is a hint, the history is the truth as of its `updated_at`.
            self.mirror.import_users(users, versions)
            return True

        return Unit(batch, write, lambda: [self._users_unit([record]) for record in batch])

    def _members_unit(self, batch: list[Record]) -> Unit:
        """Members of one channel, 100 a call."""
        item = batch[0].item
        if import_file.is_distinct(item, "member"):
            return Unit(batch, refuse_distinct)
        user_ids = [record.item["user_id"] for record in batch]

        # The batch's newest membership: when the channel's newest version is newer, none is added.
        versions = [version for record in batch if (version := version_of(record.item)) is not None]
        version = max(versions, key=parse_version, default=None)

        def write() -> bool:
            return self.mirror.import_members(item["channel_type"], item["channel_id"], user_ids, version)

        return Unit(batch, write, lambda: [self._members_unit([record]) for record in batch])

    def _write(self, phase_number: int, unit: Unit) -> None:
        """Write one unit, with retries; its outcome goes to the summary, the report and the
        checkpoint (a failed record is retried by --resume; any other is done)."""
        try:
            arrived = retrying(unit.write)
        except StreamError as error:
            if error.status == 400 and unit.one_by_one is not None and len(unit.records) > 1:
                for single in unit.one_by_one():
                    self._write(phase_number, single)
                return
            self._not_written(phase_number, unit, error)
            return
        except Exception as error:  # noqa: BLE001 -- even a bug of ours fails its record, not the run
            self._not_written(phase_number, unit, error)
            return
        for record in unit.records:
            self.checkpoint.set_failed(phase_number, record.line, False)
        with self._lock:
            if arrived:
                self.summary.mirrored += len(unit.records)
            else:
                self.summary.already_there += len(unit.records)
        self._count_failure(False)

    def _not_written(self, phase_number: int, unit: Unit, error: Exception) -> None:
        failed = is_failure(error)
        reason = failure_reason(error)
        for record in unit.records:
            entry = Refusal(record.line, record.type, reason)
            self.checkpoint.set_failed(phase_number, record.line, failed)
            if failed:
                self.report.failed(entry)
            else:
                self.report.refused(entry, when_written=True)
        self._count_failure(failed)

    def _count_failure(self, failed: bool) -> None:
        with self._lock:
            self._failures_in_a_row = self._failures_in_a_row + 1 if failed else 0
            if self._failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.options.stop.set()


def is_failure(error: Exception) -> bool:
    """Failed (--resume retries it), not refused: Stream is down, refuses our credentials or
    permissions (401, 403), or does not hold a channel, message or user the record refers to
    (an earlier record failed); or an error of ours. Refused: the record itself is wrong."""
    if isinstance(error, (Refused, InvalidRequest)):  # an updated_at of another kind than the live versions
        return False
    if isinstance(error, StreamError):
        return error.status in (401, 403) or error.is_missing()
    return True


def failure_reason(error: Exception) -> str:
    if isinstance(error, (Refused, GaveUp)):
        return str(error)
    if isinstance(error, StreamError):
        verb = "does not hold what it refers to" if error.is_missing() else "refused it"
        return f"Stream {verb}: {describe(error)}"
    return f"error: {error!r}"


# --- From the import format to the live API ----------------------------------------------


def version_of(item: dict[str, Any]) -> str | None:
    """A record's version: its `updated_at`, when it is an RFC 3339 timestamp (the import format
    also lets through naive times, which compare with nothing: those records are unversioned)."""
    updated_at = item.get("updated_at")
    try:
        parse_version(updated_at)
    except InvalidRequest:
        return None
    return updated_at


def user_object(item: dict[str, Any]) -> dict[str, Any]:
    """A user record as an upsert: what the live API keeps of a user (name, image, role,
    teams, language and custom fields; mutes, push settings and times are the importer's)."""
    return {name: value for name, value in item.items() if name not in USER_IMPORT_ONLY}


def is_inactive(item: dict[str, Any]) -> bool:
    return bool(item.get("deleted_at") or item.get("deactivated_at"))


def refuse_inactive() -> bool:
    # Deleted and deactivated users cannot send their history over the live API; Stream's
    # importer keeps them as the file says.
    raise Refused("deleted and deactivated users are imported by --via import only")


def refuse_distinct() -> bool:
    # The live API derives a distinct channel's id from its members, and stream-cli another
    # way: the file's references to it cannot be followed over the live API.
    raise Refused("distinct channels (addressed by member ids) are imported by --via import only")


def phase_size(index: import_file.Index, phase: str) -> int:
    if phase == "message":
        return index.counts["message"] - index.replies_count
    return index.replies_count if phase == "reply" else index.counts[phase]


def is_reply(item: dict[str, Any]) -> bool:
    """A message that refers to another: sent after the others, as Stream needs the parent first."""
    return bool(item.get("parent_id") or item.get("quoted_message_id"))


def write_channel(mirror: Mirror, item: dict[str, Any]) -> bool:
    if import_file.is_distinct(item, "channel"):
        refuse_distinct()
    data = {name: value for name, value in item.items() if name not in CHANNEL_IMPORT_ONLY}
    if item.get("created_at"):
        data[ORIGINAL_CREATED_AT] = item["created_at"]
    return mirror.import_channel(item["type"], item["id"], item["created_by"], data, version_of(item))


def message_object(item: dict[str, Any]) -> dict[str, Any]:
    """A message record as the live API's message: its id (derived when the file has none),
    text and fields, the original time in a custom field."""
    message = {name: value for name, value in item.items() if name not in MESSAGE_IMPORT_ONLY}
    message["id"] = import_file.message_id(item)
    if item.get("type") == "system":
        message["type"] = "system"
    if item.get("mentioned_users_ids"):
        message["mentioned_users"] = item["mentioned_users_ids"]
    if item.get("created_at"):
        message[ORIGINAL_CREATED_AT] = item["created_at"]
    if item.get("attachments"):
        message["attachments"] = [attachment_object(attachment) for attachment in item["attachments"]]
    return message


def attachment_object(attachment: dict[str, Any]) -> dict[str, Any]:
    """The import format keeps an attachment's custom fields beside its own; the live API
    wants them under `custom` (Stream's spec: Attachment requires `custom`)."""
    known = {name: value for name, value in attachment.items() if name in ATTACHMENT_FIELDS}
    custom = {name: value for name, value in attachment.items() if name not in ATTACHMENT_FIELDS}
    return {**known, "custom": {**attachment.get("custom", {}), **custom}}


def write_message(mirror: Mirror, item: dict[str, Any]) -> bool:
    if import_file.is_distinct(item, "message"):
        refuse_distinct()
    return mirror.import_message(
        item["channel_type"],
        item["channel_id"],
        message_object(item),
        item["user"],
        deleted=item.get("type") == "deleted",
        version=version_of(item),
    )


def write_reaction(mirror: Mirror, item: dict[str, Any]) -> bool:
    reaction = {name: value for name, value in item.items() if name not in ("message_id", "user_id")}
    mirror.import_reaction(item["message_id"], reaction, item["user_id"])
    return True


WRITERS = {"channel": write_channel, "message": write_message, "reaction": write_reaction}


def run_live(path: str, mirror: Mirror, pacer: Pacer, options: Options) -> Summary:
    return LiveRun(path, mirror, pacer, options).run()


# --- Stream's importer ----------------------------------------------------------------------

IMPORT_DONE = "completed"


def import_failed(state: str) -> bool:
    # Stream's import task states: uploaded, analyzing, importing, completed; analyze_failed
    # and failed end it (https://getstream.io/chat/docs/python/import/, "Import Flow").
    return state.endswith("failed")


def write_parts(
    path: str, index: import_file.Index, report: Report, directory: str, part_bytes: int
) -> Iterator[tuple[str, int]]:
    """The file's valid records as import files of at most `part_bytes`: `(part, records)`.

    Users first, then channels, members, messages, reactions, devices: each part refers only
    to itself and to parts imported before it. A message without an id gets the backfill's
    derived id, so that `verify` finds it. One part exists on disk at a time."""
    number, size, count, file = 0, 0, 0, None
    for record_type in import_file.RECORD_TYPES:
        for record in import_file.records(path, index, record_type, report.refused):
            item = record.item
            if record_type == "message":
                item = {**item, "id": import_file.message_id(item)}
            line = (json.dumps({"type": record_type, "item": item}, ensure_ascii=False) + "\n").encode()
            if file is not None and size + len(line) > part_bytes:
                file.close()
                yield file.name, count
                file = None
            if file is None:
                number += 1
                file = open(os.path.join(directory, f"part-{number:04d}.jsonl"), "wb")  # noqa: SIM115 -- across yields
                size, count = 0, 0
            file.write(line)
            size, count = size + len(line), count + 1
    if file is not None:
        file.close()
        yield file.name, count


class ImportRun(Run):
    via = "import"

    def __init__(self, path: str, client: StreamChat, options: Options) -> None:
        super().__init__(path, options)
        self.client = client
        self.uploads = requests.Session()

    def _run(self, index: import_file.Index) -> None:
        progress = Progress("import", sum(index.counts.values()), self.options.progress)
        try:
            with tempfile.TemporaryDirectory(prefix="stream-import-") as directory:
                parts = write_parts(self.path, index, self.report, directory, self.options.part_bytes)
                for number, (part, count) in enumerate(parts, start=1):
                    if number <= self.checkpoint.parts_done:
                        self.summary.done_before += count
                        progress.skipped(count)
                    elif self.options.stop.is_set():
                        return
                    else:
                        self._import_part(number, part, count, progress)
                        progress.worked(count)
                    os.remove(part)
                    if self.summary.failed:
                        return
        finally:
            progress.close()

    def _import_part(self, number: int, part: str, count: int, progress: Progress) -> None:
        task = self.checkpoint.task
        if not task or task.get("part") != number:
            task = {"part": number, "id": self._upload(part)}
            self.checkpoint.task = task
            self.checkpoint.save()
        state = self._follow(task["id"], progress)
        if state == IMPORT_DONE:
            self.summary.mirrored += count
            self.checkpoint.parts_done, self.checkpoint.task = number, None
        elif state is not None:
            self.report.failed(
                Refusal(0, None, f"part {number} ({count} records): Stream's import task {task['id']} ended {state}"),
                records=count,
            )
            self.checkpoint.task = None

    def _upload(self, part: str) -> str:
        """Upload one part as Stream's CLI does: an upload URL, a PUT of the file, the task."""
        target = retrying(lambda: self.client.create_import_url(os.path.basename(part)))

        def put() -> None:
            with open(part, "rb") as file:
                response = self.uploads.put(
                    target["upload_url"], data=file, timeout=600, headers={"Content-Type": "application/json"}
                )
            if response.status_code >= 500:
                raise requests.ConnectionError(f"the upload answered {response.status_code}")
            response.raise_for_status()

        retrying(put)
        task = retrying(lambda: self.client.create_import(target["path"], "upsert"))
        return task["import_task"]["id"]

    def _follow(self, task_id: str, progress: Progress) -> str | None:
        """Poll the import task until it ends: its last state, or None when stopped."""
        delay = 0.25
        while not self.options.stop.is_set():
            state = retrying(lambda: self.client.get_import(task_id))["import_task"]["state"]
            progress.note(state)
            if state == IMPORT_DONE or import_failed(state):
                return state
            # Stream's CLI polls every 5 s; a small part is done sooner, so start sooner.
            self.options.stop.wait(min(delay, self.options.poll_seconds))
            delay *= 2
        return None


def run_import(path: str, client: StreamChat, options: Options) -> Summary:
    return ImportRun(path, client, options).run()


# --- The check alone --------------------------------------------------------------------------


def check(path: str) -> tuple[Summary, dict[str, int]]:
    """Validate the file as stream-cli's validate-import does, without calling Stream: the
    summary (refused lines in the report) and the number of valid records of each type."""
    summary = Summary()
    report = Report(report_path(path), summary)
    try:
        index = import_file.index_file(path, report.refused)
        valid = {
            record_type: sum(1 for _ in import_file.records(path, index, record_type, report.refused))
            for record_type in import_file.RECORD_TYPES
        }
    finally:
        report.close()
    return summary, valid
