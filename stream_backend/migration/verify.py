"""Verify: does Stream hold what an import-format file says? Read-only, in batches.

For each user in the file, that Stream has it; for each channel, that it exists and has the
file's members; for each message, that it is in the same channel with the same text, and
deleted when the file says deleted. It works the same after `backfill` over the live API,
after `backfill --via import`, or after an import made with Stream's own tools.

Stream's query calls take many ids at once, within their page limits (Stream's spec): users
100 a call (QueryUsersPayload.limit), channels 30 (query channels' page), a channel's members
100, a channel's messages 50 (`GET /channels/{type}/{id}/messages`, `ids` maxItems). The
differences are written as JSON Lines; nothing here knows of Flask.
"""

import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stream_chat import StreamChat

from stream_backend.errors import StreamError
from stream_backend.migration import import_file
from stream_backend.migration.import_file import Record
from stream_backend.migration.pacing import retrying
from stream_backend.migration.progress import Progress, plural

USERS_PER_QUERY = 100
CHANNELS_PER_QUERY = 30
MEMBERS_PER_QUERY = 100
MESSAGES_PER_QUERY = 50
# Records held while grouping them by channel, at most: memory stays flat.
MAX_HELD = 1000


def differences_path(path: str) -> str:
    return f"{path}.differences.jsonl"


@dataclass
class VerifySummary:
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("user", "channel", "member", "message"), 0))
    not_checked: int = 0  # records of distinct channels (addressed by member ids)
    differences: int = 0

    def lines(self) -> list[str]:
        lines = [f"checked {count} {kind}s" for kind, count in self.checked.items()]
        if self.not_checked:
            lines.append(f"not checked: {self.not_checked} records of distinct channels (no id in the file)")
        lines.append(f"differences: {self.differences}")
        return lines


class Verifier:
    def __init__(
        self, path: str, client: StreamChat, out_path: str, concurrency: int = 8, progress: bool | None = None
    ) -> None:
        self.path, self.client, self.out_path, self.concurrency = path, client, out_path, concurrency
        self.progress = progress  # as backfill.Options.progress
        self.summary = VerifySummary()
        self._lock = threading.Lock()

    def run(self) -> VerifySummary:
        index = import_file.index_file(self.path, lambda refusal: None)  # backfill --check reports those
        with open(self.out_path, "w") as self._out:
            checks = [
                ("user", self._users),
                ("channel", self._channels),
                ("member", self._members),
                ("message", self._messages),
            ]
            for record_type, batches in checks:
                if not index.counts[record_type]:
                    continue
                progress = Progress(f"checking {plural(record_type)}", index.counts[record_type], self.progress)
                try:
                    self._run_batches(batches(self._checkable(index, record_type, progress)), progress)
                finally:
                    progress.close()
        return self.summary

    def _checkable(self, index, record_type: str, progress: Progress) -> Iterator[Record]:
        for record in import_file.records(self.path, index, record_type):
            if record_type != "user" and import_file.is_distinct(record.item, record_type):
                self.summary.not_checked += 1
                progress.skipped()
                continue
            self.summary.checked[record_type] += 1
            yield record

    def _run_batches(self, batches: Iterable[tuple[int, Callable[[], None]]], progress: Progress) -> None:
        """Run the checks (`(records, check)`) `concurrency` at a time; the first that fails
        (Stream still failing after every retry) stops the run, which then raises it: no check
        is silently lost."""
        slots = threading.BoundedSemaphore(self.concurrency * 2)
        errors: list[BaseException] = []

        def finished(done, records: int) -> None:
            if done.exception() is not None:
                errors.append(done.exception())
            else:
                progress.worked(records)
            slots.release()

        with ThreadPoolExecutor(self.concurrency) as pool:
            for records, batch in batches:
                slots.acquire()
                if errors:
                    break
                pool.submit(batch).add_done_callback(functools.partial(finished, records=records))
        if errors:
            raise errors[0]

    def differ(self, record: Record, problem: str, **details: Any) -> None:
        with self._lock:
            self.summary.differences += 1
            self._out.write(
                json.dumps(
                    {
                        "line": record.line,
                        "type": record.type,
                        "id": import_file.key(record),
                        "problem": problem,
                        **details,
                    }
                )
                + "\n"
            )

    # --- One check each ------------------------------------------------------------------

    # Each yields `(records, check)` for a batch: how many records the check covers, and the check.

    def _users(self, records: Iterator[Record]) -> Iterator[tuple[int, Callable[[], None]]]:
        for batch in import_file.chunks(records, USERS_PER_QUERY):

            def check(batch=batch):
                ids = [record.item["id"] for record in batch]
                found = retrying(
                    lambda: self.client.query_users(
                        {"id": {"$in": ids}}, limit=USERS_PER_QUERY, include_deactivated_users=True
                    )
                )
                present = {user["id"] for user in found["users"]}
                for record in batch:
                    if record.item["id"] not in present:
                        self.differ(record, "missing")

            yield len(batch), check

    def _channels(self, records: Iterator[Record]) -> Iterator[tuple[int, Callable[[], None]]]:
        for batch in import_file.chunks(records, CHANNELS_PER_QUERY):

            def check(batch=batch):
                cids = [import_file.cid(record.item, "channel") for record in batch]
                found = retrying(
                    lambda: self.client.query_channels(
                        {"cid": {"$in": cids}}, limit=CHANNELS_PER_QUERY, state=False, message_limit=0, member_limit=0
                    )
                )
                present = {channel["channel"]["cid"] for channel in found["channels"]}
                for record, cid in zip(batch, cids, strict=True):
                    if cid not in present:
                        self.differ(record, "missing")

            yield len(batch), check

    def _members(self, records: Iterator[Record]) -> Iterator[tuple[int, Callable[[], None]]]:
        for cid, batch in import_file.by_channel(records, MEMBERS_PER_QUERY, MAX_HELD):

            def check(cid=cid, batch=batch):
                channel = self.client.channel(*cid.split(":", 1))
                ids = [record.item["user_id"] for record in batch]
                present = {
                    member["user_id"]
                    for member in self._or_none(
                        lambda: retrying(lambda: channel.query_members({"id": {"$in": ids}}, limit=MEMBERS_PER_QUERY))
                    )
                }
                for record in batch:
                    if record.item["user_id"] not in present:
                        self.differ(record, "not a member", channel=cid)

            yield len(batch), check

    def _messages(self, records: Iterator[Record]) -> Iterator[tuple[int, Callable[[], None]]]:
        for cid, batch in import_file.by_channel(records, MESSAGES_PER_QUERY, MAX_HELD):

            def check(cid=cid, batch=batch):
                channel = self.client.channel(*cid.split(":", 1))
                ids = [import_file.message_id(record.item) for record in batch]
                found = self._or_none(lambda: retrying(lambda: channel.get_messages(ids))["messages"])
                stored = {message["id"]: message for message in found}
                for record, message_id in zip(batch, ids, strict=True):
                    self._compare_message(record, message_id, cid, stored.get(message_id))

            yield len(batch), check

    def _compare_message(self, record: Record, message_id: str, cid: str, stored: dict | None) -> None:
        item = record.item
        if stored is None:
            elsewhere = self._or_none(
                lambda: [retrying(lambda: self.client.get_message(message_id, show_deleted_message=True))["message"]]
            )
            if elsewhere and elsewhere[0].get("cid") != cid:
                self.differ(record, "in another channel", expected=cid, actual=elsewhere[0].get("cid"))
            else:
                self.differ(record, "missing", channel=cid)
            return
        deleted, stored_deleted = item.get("type") == "deleted", stored.get("type") == "deleted"
        if deleted != stored_deleted:
            self.differ(record, "not deleted" if deleted else "deleted in Stream", channel=cid)
        elif not deleted and stored.get("text", "") != item.get("text", ""):
            self.differ(
                record, "different text", channel=cid, expected=item.get("text", ""), actual=stored.get("text", "")
            )

    @staticmethod
    def _or_none(query: Callable[[], list]) -> list:
        """A query's answer, or nothing when Stream says the channel or message is not there."""
        try:
            return query()
        except StreamError as error:
            if not error.is_not_found():
                raise
        return []


def verify(
    path: str, client: StreamChat, out_path: str | None = None, concurrency: int = 8, progress: bool | None = None
) -> VerifySummary:
    return Verifier(path, client, out_path or differences_path(path), concurrency, progress).run()
