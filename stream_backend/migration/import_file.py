"""Stream's import file, read one line at a time and checked as Stream's importer checks it.

The format is Stream's own (https://getstream.io/chat/docs/python/import/, "File Format"): JSON
Lines of `{"type": "user" | "channel" | "member" | "message" | "reaction" | "device", "item":
{...}}`. The rules below are those of stream-cli's `validate-import`
(github.com/GetStream/stream-cli, pkg/cmd/chat/imports/validator/items.go and index.go): a
first pass checks each item's own fields and indexes its id, a second checks references
(the message's user and channel, the member's channel, ...) against that index. So one export
serves Stream's importer, `backfill --via import` and `backfill` over the live API.

Memory stays flat in the file's length except for the index: 8 bytes of digest per record,
in sorted arrays, never the records themselves.
"""

import bisect
import hashlib
import heapq
import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The record types, in the order their references need them (users before the channels they
# create, channels before their members and messages, messages before their reactions).
# Devices are in Stream's format too; they are validated, and only Stream's importer takes them.
RECORD_TYPES = ("user", "channel", "member", "message", "reaction", "device")

# items.go: validUserIDRe `^[@\w-]*$`, at most 255; channel ids at most 64, with the same
# characters (and `!` under stream-cli's --lighter-validation-id, as distinct ids have).
USER_ID = re.compile(r"[@\w-]+", re.ASCII)
CHANNEL_ID = re.compile(r"[@\w!-]+", re.ASCII)
REACTION_TYPE = re.compile(r"[\w+:.-]+", re.ASCII)
MAX_ID_LENGTH = 255
MAX_CHANNEL_ID_LENGTH = 64
MAX_REACTION_TYPE_LENGTH = 30
# index.go: DefaultMaxMessageLength, the channel type's max_message_length unless changed.
MAX_MESSAGE_LENGTH = 20_000
MESSAGE_TYPES = ("regular", "deleted", "system", "reply")
PUSH_PROVIDERS = ("firebase", "huawei", "apn", "xiaomi")
# Stream's import limit per file is 300 MB; a longer line is refused before it is parsed.
MAX_LINE_BYTES = 1024 * 1024

# Fields stream-cli refuses as custom data (items.go, *ReservedFields).
RESERVED = {
    "user": {"app_pk", "online", "pk", "user_pk", "last_active"},
    "channel": {"last_message_at", "cid", "created_by_pk", "members", "config", "app_pk", "pk"},
    "message": {
        "tmp_id",
        "app_pk",
        "latest_reactions",
        "own_reactions",
        "reactions_count",
        "reply_count",
        "command",
        "pk",
        "quoted_message",
        "pinned_by",
    },
    "reaction": {"app_pk", "pk", "user", "user_pk"},
}


class Refused(ValueError):
    """A line Stream's importer would refuse, with the reason it would give."""


@dataclass(frozen=True)
class Record:
    line: int  # 1-based line number in the file
    type: str
    item: dict[str, Any]


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """`(line number, raw line)` for each non-blank line, one at a time. A line over
    `MAX_LINE_BYTES` is read no further than that (its start is given, which `parse` refuses):
    memory stays bounded whatever a line's length."""
    with open(path, "rb") as file:
        number = 0
        while raw := file.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                _skip_rest_of_line(file)
            if raw.strip():
                yield number, raw


def _skip_rest_of_line(file, chunk_bytes: int = 64 * 1024) -> None:
    while chunk := file.readline(chunk_bytes):
        if chunk.endswith(b"\n"):
            return


def parse(number: int, raw: bytes) -> Record:
    """One line as a Record whose own fields are valid, or Refused."""
    if len(raw) > MAX_LINE_BYTES:
        raise Refused(f"line is over {MAX_LINE_BYTES} bytes")
    try:
        document = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except Refused:
        raise
    except (ValueError, RecursionError):
        raise Refused("not a JSON object: malformed JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("item"), dict):
        raise Refused('not a {"type": ..., "item": {...}} record')
    record_type = document.get("type")
    if record_type not in RECORD_TYPES:
        raise Refused(f"invalid item type {record_type!r}")
    item = document["item"]
    CHECKS[record_type](item)
    return Record(number, record_type, item)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    # JSON has no infinity, but Python reads 1e999 as one; sent on, it would not be JSON.
    number = float(text)
    if not math.isfinite(number):
        raise Refused(f"number {text[:40]} is out of range")
    return number


# --- Field checks (stream-cli's validateFields) ------------------------------------------


def _id(item: dict, field: str, label: str, pattern=USER_ID, max_length=MAX_ID_LENGTH) -> None:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise Refused(f"{label} required")
    if len(value) > max_length:
        raise Refused(f"{label} max length exceeded ({max_length})")
    if not pattern.fullmatch(value):
        raise Refused(f"{label} invalid ({value[:80]!r})")


def _time(item: dict, field: str, label: str, required: bool = False) -> None:
    value = item.get(field)
    if value is None:
        if required:
            raise Refused(f"{label} required")
        return
    if not isinstance(value, str):
        raise Refused(f"{label} must be an RFC 3339 time")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"{label} must be an RFC 3339 time, not {value[:40]!r}") from None


def _reserved(item: dict, record_type: str) -> None:
    for field in sorted(RESERVED[record_type].intersection(item)):
        raise Refused(f"{record_type}.{field} is a reserved field")


def _string_list(item: dict, field: str, label: str) -> list:
    value = item.get(field) or []
    if not isinstance(value, list) or not all(isinstance(entry, str) and entry for entry in value):
        raise Refused(f"{label} must be a list of ids")
    return value


def _channel_address(item: dict, prefix: str, id_field: str, members_field: str) -> None:
    """A channel by `type` and either its id or (a distinct channel) its members' ids."""
    channel_type = item.get("channel_type" if prefix != "channel" else "type")
    if not isinstance(channel_type, str) or not channel_type:
        raise Refused(f"{prefix}.{'type' if prefix == 'channel' else 'channel_type'} required")
    member_ids = _string_list(item, members_field, f"{prefix}.{members_field}")
    if bool(item.get(id_field)) == bool(member_ids):
        raise Refused(f"either {prefix}.{id_field} or {prefix}.{members_field} required")
    if item.get(id_field):
        _id(item, id_field, f"{prefix}.{id_field}", CHANNEL_ID, MAX_CHANNEL_ID_LENGTH)


def check_user(item: dict) -> None:
    _id(item, "id", "user.id")
    _reserved(item, "user")
    for field in ("created_at", "updated_at", "deleted_at", "deactivated_at"):
        _time(item, field, f"user.{field}")
    _string_list(item, "teams", "user.teams")


def check_channel(item: dict) -> None:
    _channel_address(item, "channel", "id", "member_ids")
    _id(item, "created_by", "channel.created_by")
    _reserved(item, "channel")
    _time(item, "created_at", "channel.created_at")


def check_member(item: dict) -> None:
    _channel_address(item, "member", "channel_id", "channel_member_ids")
    _id(item, "user_id", "member.user_id")


def check_message(item: dict) -> None:
    if item.get("id") is not None:
        _id(item, "id", "message.id")
    _channel_address(item, "message", "channel_id", "channel_member_ids")
    _id(item, "user", "message.user")
    message_type = item.get("type", "regular")
    if message_type not in MESSAGE_TYPES:
        raise Refused(f"message.type invalid ({', '.join(MESSAGE_TYPES)} allowed)")
    for field in ("created_at", "updated_at", "deleted_at", "pinned_at", "pin_expires"):
        _time(item, field, f"message.{field}")
    deleted = item.get("deleted_at") is not None
    if message_type == "deleted" and not deleted:
        raise Refused('message.type "deleted" while message.deleted_at is null')
    if deleted and message_type != "deleted":
        raise Refused(f'message.deleted_at set while message.type is "{message_type}"')
    if bool(item.get("pinned_by_id")) != (item.get("pinned_at") is not None):
        raise Refused("message.pinned_at and message.pinned_by_id go together")
    text = item.get("text", "")
    if not isinstance(text, str):
        raise Refused("message.text must be a string")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise Refused(f"message.text max length exceeded ({MAX_MESSAGE_LENGTH})")
    attachments = item.get("attachments") or []
    if not isinstance(attachments, list) or not all(isinstance(a, dict) and a.get("type") for a in attachments):
        raise Refused("attachment.type required")
    if not all(isinstance(attachment.get("custom", {}), dict) for attachment in attachments):
        raise Refused("attachment.custom must be an object")
    _string_list(item, "mentioned_users_ids", "message.mentioned_users_ids")
    _reserved(item, "message")


def check_reaction(item: dict) -> None:
    _id(item, "message_id", "reaction.message_id")
    _id(item, "type", "reaction.type", REACTION_TYPE, MAX_REACTION_TYPE_LENGTH)
    _id(item, "user_id", "reaction.user_id")
    _time(item, "created_at", "reaction.created_at", required=True)
    _reserved(item, "reaction")


def check_device(item: dict) -> None:
    _id(item, "id", "device.id", re.compile(r".+"))
    _id(item, "user_id", "device.user_id")
    _time(item, "created_at", "device.created_at", required=True)
    if item.get("push_provider_type") not in PUSH_PROVIDERS:
        raise Refused(f"device.push_provider_type invalid ({', '.join(PUSH_PROVIDERS)} allowed)")


CHECKS = {
    "user": check_user,
    "channel": check_channel,
    "member": check_member,
    "message": check_message,
    "reaction": check_reaction,
    "device": check_device,
}


# --- Ids and the index (stream-cli's index.go) -------------------------------------------


def cid(item: dict, record_type: str) -> str:
    """The channel a record belongs to: `type:id`, or for a distinct channel `type:` and its
    sorted member ids (Stream derives that channel's id from them)."""
    if record_type == "channel":
        channel_type, channel_id, member_ids = item["type"], item.get("id"), item.get("member_ids")
    else:
        channel_type, channel_id, member_ids = (
            item["channel_type"],
            item.get("channel_id"),
            item.get("channel_member_ids"),
        )
    return f"{channel_type}:{channel_id}" if channel_id else f"{channel_type}:[{','.join(sorted(member_ids or []))}]"


def is_distinct(item: dict, record_type: str) -> bool:
    return not item.get("id" if record_type == "channel" else "channel_id")


def message_id(item: dict) -> str:
    """The message's id; one left out (Stream's importer makes one up) is derived from the
    message itself, so that a re-run sends the same id and Stream answers "already exists"."""
    if item.get("id"):
        return item["id"]
    source = json.dumps([cid(item, "message"), item.get("user"), item.get("created_at"), item.get("text")])
    return "import-" + hashlib.blake2b(source.encode(), digest_size=16).hexdigest()


def key(record: Record) -> str:
    """What makes a record unique in the file (index.go's *PK functions)."""
    item = record.item
    if record.type == "user":
        return item["id"]
    if record.type == "channel":
        return cid(item, "channel")
    if record.type == "member":
        return f"{cid(item, 'member')}/{item['user_id']}"
    if record.type == "message":
        return message_id(item)
    if record.type == "reaction":
        return f"{item['message_id']}/{item['type']}/{item['user_id']}"
    return item["id"]


def _digest(kind: str, value: str) -> int:
    # 8 bytes: a false "duplicate" among a million ids has odds of about 1 in 30 million.
    return int.from_bytes(hashlib.blake2b(f"{kind}\0{value}".encode(), digest_size=8).digest(), "big", signed=True)


class Digests:
    """A set of 8-byte digests in 8 bytes each (a Python set takes about 70): appended while
    the file is read, then sorted once (`freeze`) and searched by bisection."""

    RUN = 1 << 16  # sorted a run at a time, then merged: the sort never holds all as Python ints

    def __init__(self) -> None:
        self._sorted = array("q")
        self.duplicated: set[int] = set()  # digests present more than once

    def add(self, digest: int) -> None:
        self._sorted.append(digest)

    def freeze(self) -> None:
        unsorted, self._sorted = self._sorted, array("q")
        runs = [array("q", sorted(unsorted[start : start + self.RUN])) for start in range(0, len(unsorted), self.RUN)]
        del unsorted
        previous = None
        for digest in heapq.merge(*runs):
            if digest == previous:
                self.duplicated.add(digest)
            else:
                self._sorted.append(digest)
            previous = digest

    def __contains__(self, digest: int) -> bool:
        at = bisect.bisect_left(self._sorted, digest)
        return at < len(self._sorted) and self._sorted[at] == digest


class Index:
    """The ids in the file, as digests, for duplicates and references."""

    def __init__(self) -> None:
        self._ids = {record_type: Digests() for record_type in RECORD_TYPES}
        self._replies = Digests()  # messages with a parent: threads are one level deep
        self.counts = dict.fromkeys(RECORD_TYPES, 0)
        self.replies_count = 0  # messages that refer to another, sent after the others

    def add(self, record: Record) -> None:
        """Index a record whose own fields are valid."""
        self._ids[record.type].add(_digest(record.type, key(record)))
        self.counts[record.type] += 1
        if record.type == "message" and record.item.get("parent_id"):
            self._replies.add(_digest("message", message_id(record.item)))
        if record.type == "message" and (record.item.get("parent_id") or record.item.get("quoted_message_id")):
            self.replies_count += 1

    def freeze(self) -> None:
        """The file is read: sort the ids, and find those given twice."""
        for digests in (*self._ids.values(), self._replies):
            digests.freeze()

    def has(self, record_type: str, value: str) -> bool:
        return _digest(record_type, value) in self._ids[record_type]

    def is_duplicated(self, record: Record) -> bool:
        return _digest(record.type, key(record)) in self._ids[record.type].duplicated

    def check_references(self, record: Record) -> None:
        """Refused when the record names a user, channel or message the file does not hold
        (stream-cli's validateReferences)."""
        item = record.item
        users = {
            "channel": [item.get("created_by")],
            "member": [item.get("user_id")],
            "message": [item.get("user"), *(item.get("mentioned_users_ids") or [])],
            "reaction": [item.get("user_id")],
            "device": [item.get("user_id")],
        }.get(record.type, [])
        if record.type in ("member", "message") and not self.has("channel", cid(item, record.type)):
            raise Refused(f"channel {cid(item, record.type)[:140]!r} doesn't exist")
        if (
            record.type == "member"
            and is_distinct(item, "member")
            and item["user_id"] not in item["channel_member_ids"]
        ):
            raise Refused(f"user {item['user_id']!r} is not among the distinct channel's channel_member_ids")
        for user_id in users:
            if user_id and not self.has("user", user_id):
                raise Refused(f"user {user_id!r} doesn't exist")
        if record.type == "message" and item.get("parent_id"):
            if _digest("message", item["parent_id"]) in self._replies:
                raise Refused("only one level thread is supported")
            if not self.has("message", item["parent_id"]):
                raise Refused(f"message parent_id {item['parent_id']!r} doesn't exist")
        if record.type == "reaction" and not self.has("message", item["message_id"]):
            raise Refused(f"message_id {item['message_id']!r} doesn't exist")


@dataclass
class Refusal:
    line: int
    type: str | None
    reason: str


def index_file(path: str, on_refused) -> Index:
    """The first pass: every line's own fields, and the index of what the file holds.
    `on_refused(Refusal)` hears of each line refused here."""
    index = Index()
    for number, raw in read_lines(path):
        try:
            index.add(parse(number, raw))
        except Refused as refusal:
            on_refused(Refusal(number, _type_of(raw), str(refusal)))
    index.freeze()
    return index


def records(path: str, index: Index, record_type: str, on_refused=None, where=None) -> Iterator[Record]:
    """The valid records of one type (and for which `where(record)` holds, if given), in file
    order: a later pass. Lines refused in the first pass are left out again (silently: they
    were reported then). Refused here, through `on_refused`: a record naming what the file
    does not hold, and the later copies of a record given twice (the first is kept)."""
    first_copies: set[int] = set()
    for number, raw in read_lines(path):
        if _type_of(raw) not in (record_type, None):
            continue
        try:
            record = parse(number, raw)
        except Refused:
            continue
        if record.type != record_type:
            continue
        wanted = where is None or where(record)
        try:
            if index.is_duplicated(record):
                digest = _digest(record.type, key(record))
                if digest in first_copies:
                    raise Refused(f"duplicate {record.type} {key(record)[:120]!r}")
                first_copies.add(digest)
            if wanted:
                index.check_references(record)
        except Refused as refusal:
            if on_refused and wanted:
                on_refused(Refusal(number, record_type, str(refusal)))
            continue
        if wanted:
            yield record


def _type_of(raw: bytes) -> str | None:
    """The record type of a raw line, cheaply when the line says it plainly; None if unsure."""
    match = _TYPE.search(raw)
    return match.group(1).decode() if match else None


_TYPE = re.compile(rb'^\s*\{\s*"type"\s*:\s*"([a-z]+)"')


# --- Grouping records for Stream's batch calls -------------------------------------------


def chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """Records `size` at a time, in file order."""
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def by_channel(records: Iterator[Record], size: int, max_held: int) -> Iterator[tuple[str, list[Record]]]:
    """Records (members or messages) grouped by channel, `size` at most a group and
    `max_held` at most held: a channel's records need not be adjacent, and memory stays flat."""
    pending: dict[str, list[Record]] = {}
    held = 0
    for record in records:
        channel = cid(record.item, record.type)
        batch = pending.setdefault(channel, [])
        batch.append(record)
        held += 1
        if len(batch) == size:
            held -= size
            yield channel, pending.pop(channel)
        elif held >= max_held:
            yield from pending.items()
            pending, held = {}, 0
    yield from pending.items()
