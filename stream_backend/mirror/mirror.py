"""The mirror: what the primary chat system says, written into Stream (dual-write).

`Mirror(client, state, origin_key, versions)` takes its collaborators as arguments and knows
nothing of HTTP: the routes in app.py call it, and a Python primary backend can import and call
it directly, built with `Mirror.connect(api_key, api_secret, ...)` (docs/python.md). `state`
(mirror/state.py) is what we believe Stream already has, shared by every worker, so that a
repeated sync skips calls that would change nothing; it is a hint, never the truth: when Stream
says a user or channel we relied on is gone, the sync runs again with `trust_state=False`.
`versions` (mirror/versions.py) is the newest version applied to each object the primary
versioned: each operation takes its versioned objects' locks, leaves the stale ones unwritten
(its answer says which, `"stale": true`), and records what it applied.

Every failure raises one of errors.StreamBackendError's kinds. The public operations, stable
for callers of their own (a backfill, a primary backend):

    sync_channel(ChannelSync)                       upsert the members, get or create, add the missing
    sync_message(MessageSync)                       the same (skipped when known), then send
    update_channel(type, id, ChannelUpdate)         set/unset custom data; members made exact
    update_message(id, fields, user_id, version)    partial update
    delete_message(id, hard, version) / delete_channel(type, id, hard, version) / delete_user(id, hard, version)
    forget(event)                                   a webhook event: forget what it touches
    upsert_users(users), get_or_create_channel(ChannelSync), add_members(channel, ids),
    send_message(channel, MessageSync)              the steps, 100 users or members a call

Limits are Stream's (../shared/docs/stream-facts.md): 100 users per upsert, 100 members per
call, a reused message id answered 400 "already exists".
"""

import copy
from collections.abc import Mapping
from typing import Any

from stream_chat import StreamChat

from stream_backend.errors import MembersAreFixed, MessageIdTaken, StreamError
from stream_backend.mirror import versions as v
from stream_backend.mirror.inputs import ChannelSync, ChannelUpdate, MessageSync
from stream_backend.mirror.origin import ORIGIN_FIELD, derive_origin_key, is_primary_message, origin_mark
from stream_backend.mirror.state import SyncState, open_sync_state
from stream_backend.mirror.versions import VersionedWrite, Versions, VersionValue, open_versions
from stream_backend.stream.client import DEFAULT_TIMEOUT_SECONDS, build_client
from stream_backend.stream.rules import DISTINCT_PREFIX, STREAM_BATCH_SIZE

# Webhook events after which what we believed of a user or channel may be wrong (edited in a
# chat client or Stream's dashboard): forgotten, so that the primary's next sync rewrites it.
USER_EVENTS = frozenset({"user.updated", "user.deleted"})
CHANNEL_EVENTS = frozenset(
    {"channel.updated", "channel.deleted", "channel.truncated", "member.added", "member.removed", "member.updated"}
)


def batches(items: list, size: int = STREAM_BATCH_SIZE) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class Mirror:
    def __init__(
        self, client: StreamChat, state: SyncState, origin_key: bytes, versions: Versions | None = None
    ) -> None:
        self.client, self.state, self.origin_key = client, state, origin_key
        # Without a store of versions, a versioned write is refused (SettingsError).
        self.versions = versions or Versions(None, None)

    @classmethod
    def connect(
        cls,
        api_key: str,
        api_secret: str,
        *,
        state: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> "Mirror":
        """A mirror for the Stream app of `api_key`: its client built with `timeout` (seconds
        per call) against `base_url` (default: Stream's API), its origin key derived from
        `api_secret`, and its state at `state`: None (none: every sync takes the full path),
        `"sqlite:///<path>"` or `"redis://..."` (shared with the service's workers, if they
        use the same), where the versions of versioned writes are kept too."""
        client = build_client(api_key, api_secret, base_url=base_url, timeout=timeout)
        return cls(client, open_sync_state(state), derive_origin_key(api_secret), open_versions(state))

    # --- Operations ---------------------------------------------------------------------

    def sync_channel(self, sync: ChannelSync):
        """Upsert the members, get or create their channel and add the members it lacks:
        `(channel, Stream's state)`. Stream is always asked, so the answer is its state; but
        of a stale channel (a newer version applied) nothing is written or asked, and the
        state is its ids. Stale parts are named in the state's `"stale_objects"`."""
        channel_name = self._channel_name(sync)
        with self.versions.writing(self._channel_wants(sync, channel_name)) as write:
            try:
                channel, state = self._sync_channel(sync, write, channel_name, trust_state=True)
            except StreamError as error:
                if not error.is_missing():
                    raise
                channel, state = self._sync_channel(sync, write, channel_name, trust_state=False)
        return channel, {**state, **write.answer()}

    def sync_message(self, sync: MessageSync):
        """The channel's work (skipped when the state knows the channel has these members),
        then the message: `(channel, Stream's answer)`. Stale parts are left unwritten: a new
        message is sent even when its sender's name is stale, but not into a channel deleted
        since the request's channel version, nor from a sender deleted since (with their
        messages).

        The users and the channel are written under their locks, released before the send:
        the messages of a busy channel wait for each other only while its versions are
        checked, not during each other's send."""
        channel_name = self._channel_name(sync.channel)
        try:
            return self._sync_message(sync, channel_name, trust_state=True)
        except StreamError as error:
            if not error.is_missing():
                raise
        # Deleted elsewhere: forget what we relied on and take the full path, which recreates it
        # (unless a newer delete of the primary's is why: the versions are read again).
        self.state.forget_users(sync.users)
        return self._sync_message(sync, channel_name, trust_state=False)

    def update_channel(self, channel_type: str, channel_id: str, update: ChannelUpdate) -> dict[str, Any]:
        """Set the custom data given (a None value removes the field; others are kept) and,
        when members are given, make them exactly the channel's members. Stream's 404 for an
        unknown channel comes first, before anything is written. A stale channel is left as it
        is (its members' users are still upserted when they are not stale themselves)."""
        if update.members is not None and channel_id.startswith(DISTINCT_PREFIX):
            raise MembersAreFixed(f"{channel_type}:{channel_id} is a distinct channel: its members define it")
        name = v.channel_object(channel_type, channel_id)
        wants = v.wanted([(name, update.version, "version"), *self._user_wants(update.member_versions)])
        with self.versions.writing(wants) as write:
            if not write.is_stale(name):
                answer = self._update_channel(channel_type, channel_id, update, write)
            else:
                self.upsert_users(write.fresh(update.members or {}))
                answer = {"channel": {"cid": f"{channel_type}:{channel_id}", "type": channel_type, "id": channel_id}}
        return {**answer, **write.answer()}

    def update_message(
        self, message_id: str, fields: dict[str, Any], user_id: str, version: VersionValue | None = None
    ) -> dict[str, Any]:
        """Set some fields of a message (a partial update), as `user_id`; nothing when
        `version` is stale."""
        name = v.message_object(message_id)
        with self.versions.writing(v.wanted([(name, version, "message.version")])) as write:
            if write.is_stale(name):
                return {"message": {"id": message_id}, **write.answer()}
            return dict(self.client.update_message_partial(message_id, {"set": fields}, user_id))

    def delete_message(self, message_id: str, hard: bool, version: VersionValue | None = None) -> dict[str, Any]:
        """Delete a message; with a `version`, a tombstone: a create or update of a version as old
        or older changes nothing."""
        name = v.message_object(message_id)
        with self._deleting(name, version, hard) as write:
            if write.is_stale(name):
                return {"message": {"id": message_id}, **write.answer()}
            return self._deleted_repeatably(
                lambda: self.client.delete_message(message_id, hard=hard),
                already_deleted={"message": {"id": message_id}},
            )

    def delete_channel(
        self, channel_type: str, channel_id: str, hard: bool, version: VersionValue | None = None
    ) -> dict[str, Any]:
        channel = self.client.channel(channel_type, channel_id)
        name = v.channel_object(channel_type, channel_id)
        with self._deleting(name, version, hard) as write:
            if write.is_stale(name):
                return {"channel": {"cid": channel.cid}, **write.answer()}
            self.state.forget_channel(channel_type, channel_id)
            answer = self._deleted_repeatably(
                lambda: channel.delete(hard=hard), already_deleted={"channel": {"cid": channel.cid}}
            )
            # Again: another worker may have remembered it between the first forget and the delete.
            self.state.forget_channel(channel_type, channel_id)
        return answer

    def delete_user(self, user_id: str, hard: bool, version: VersionValue | None = None) -> dict[str, Any]:
        """Delete a user (soft: Stream keeps the record, marked deleted); `hard` also deletes
        their messages. Stream marks the user deleted at once and deletes the messages in a
        task (`task_id`). A soft delete of a user Stream does not show, or shows deleted,
        answers `already_deleted`; a hard one always asks Stream to delete the messages, which
        a soft delete before it left in place."""
        name = v.user_object(user_id)
        with self._deleting(name, version, hard) as write:
            if write.is_stale(name):
                return {"user": {"id": user_id}, **write.answer()}
            self.state.forget_users([user_id])
            if not hard and self._user_is_gone(user_id):
                return {"user": {"id": user_id}, "already_deleted": True}
            options = {"messages": "hard"} if hard else {}
            answer = self.client.delete_users([user_id], "soft", **options)
            # Again: another worker may have remembered them between the first forget and the delete.
            self.state.forget_users([user_id])
        return {"user": {"id": user_id}, "task_id": answer["task_id"]}

    def forget(self, event: dict[str, Any]) -> None:
        """A webhook event: forget what it touches (USER_EVENTS, CHANNEL_EVENTS), so that the
        primary's next sync rewrites it, whether or not the event is also handed over. A store
        that cannot forget raises errors.StoreUnavailable: Stream must send it again."""
        if event.get("type") in USER_EVENTS:
            user = event.get("user")
            if isinstance(user, dict) and isinstance(user.get("id"), str):
                self.state.forget_users([user["id"]], strict=True)
        elif event.get("type") in CHANNEL_EVENTS:
            channel_type, channel_id = event.get("channel_type"), event.get("channel_id")
            if isinstance(channel_type, str) and isinstance(channel_id, str):
                self.state.forget_channel(channel_type, channel_id, strict=True)

    # --- Steps --------------------------------------------------------------------------

    def upsert_users(self, users: dict[str, dict[str, str]], trust_state: bool = True) -> None:
        """Create or update in Stream the `users` it may not have as they are (all of them
        with `trust_state=False`), at most `STREAM_BATCH_SIZE` a call."""
        to_upsert = self.state.users_to_upsert(users) if trust_state else users
        for batch in batches(list(to_upsert.values())):
            self.client.upsert_users(batch)
            self.state.remember_users({user["id"]: user for user in batch})

    def get_or_create_channel(self, sync: ChannelSync):
        """Get or create the channel `sync.type:sync.id` (without an id: the distinct channel of
        its members), then add the members it lacks: `(channel, Stream's state)`. The members
        must exist in Stream.

        Custom data goes in the channel's data, where Stream stores it; `channel.create`'s
        keyword options would land at the top level of the query and be ignored. Members go as
        `{"user_id": ...}` objects, as Stream's spec requires: 100 with the channel, the rest
        (channels with an id only) in `add_members`.
        """
        first = [{"user_id": member_id} for member_id in list(sync.members)[:STREAM_BATCH_SIZE]]
        # Without an id (None), the SDK asks Stream for the distinct channel of the members.
        channel = self.client.channel(sync.type, sync.id, data={**sync.custom_data, "members": first})  # type: ignore[arg-type]
        state: dict[str, Any] = dict(channel.create(sync.creator_id))
        # An existing channel keeps its data and members: what differs from the sync is written.
        changed = {name: value for name, value in sync.custom_data.items() if state["channel"].get(name) != value}
        if changed:
            state = {**state, **channel.update_partial(changed, [])}
        members = {member["user_id"] for member in state.get("members", [])}
        # A distinct channel whose member was removed in Stream keeps its id: the member is added back.
        missing = [member_id for member_id in sync.members if member_id not in members]
        if missing:
            state = {**state, **self.add_members(channel, missing)}
            members = {member["user_id"] for member in state.get("members", [])}.union(missing)
        # What Stream answered, and what we added: never what the request hoped for.
        self.state.remember_channel(
            sync.type,
            channel.id,
            members,
            custom_data=sync.custom_data,
            distinct_members=None if sync.id else sync.members,
        )
        return channel, state

    def add_members(self, channel, user_ids: list[str]) -> dict[str, Any]:
        """Add members to a channel, 100 a call: Stream's last answer (channel, members)."""
        answer: dict[str, Any] = {}
        for batch in batches(user_ids):
            # Not `channel.add_members`: it sends `"message": null`, which Stream's spec refuses.
            answer = self.client.post(channel.url, data={"add_members": [{"user_id": user_id} for user_id in batch]})
            answer = {key: answer[key] for key in ("channel", "members") if key in answer}
        return answer

    def send_message(self, channel, sync: MessageSync) -> dict[str, Any]:
        """Send the message; when Stream already has its id, answer the stored message if it is
        an earlier attempt of ours (its mark verifies), else raise MessageIdTaken.

        A primary system's outbox retries after any timeout, and Stream answers a reused id
        with 400 "already exists" (StreamError.is_duplicate_message). A retry whose text
        differs from the stored message's updates it: Stream holds what the primary said last.
        """
        sender_id = sync.sender["id"]
        message = {
            "id": sync.message_id,
            "text": sync.text,
            ORIGIN_FIELD: origin_mark(self.origin_key, sync.message_id, channel.cid, sender_id),
        }
        try:
            return channel.send_message(message, user_id=sender_id)
        except StreamError as error:
            if not error.is_duplicate_message():
                raise
        # With show_deleted_message: Stream reads a soft-deleted message only so
        # (docs/stream-behaviour.md, B31), and an earlier attempt may have been deleted since.
        stored = self.client.get_message(sync.message_id, show_deleted_message=True)
        if not self._is_earlier_attempt(stored["message"], channel.cid, sender_id):
            raise MessageIdTaken(sync.message_id, channel.cid)
        if stored["message"].get("text") != sync.text:
            return self.update_message(sync.message_id, {"text": sync.text}, sender_id)
        return stored

    # --- Helpers ------------------------------------------------------------------------

    def _sync_channel(self, sync: ChannelSync, write: VersionedWrite, channel_name: str | None, trust_state: bool):
        self.upsert_users(write.fresh(sync.members), trust_state)
        if channel_name and write.is_stale(channel_name):
            return self._stale_channel(sync.type, channel_name)
        channel, state = self.get_or_create_channel(sync)
        self.versions.learned(write, channel_name or "", sync.type, channel.id)
        return channel, state

    def _sync_message(self, sync: MessageSync, channel_name: str | None, trust_state: bool):
        """The message's lock first, held to the end, then its users' and channel's while they
        are written: a message never waits for a channel's lock while holding one, so no two
        requests wait for each other; and a lock that cannot be had leaves Stream untouched."""
        name = v.message_object(sync.message_id)
        with self.versions.writing(v.wanted([(name, sync.version, "message.version")])) as write:
            around_wants = self._around_message_wants(sync, channel_name)
            warm = self._warm_channel(sync, around_wants, channel_name) if trust_state and around_wants else None
            if warm is not None:
                channel, around = warm
            else:
                with self.versions.writing(around_wants) as around:
                    channel = self._message_channel(sync, around, channel_name, trust_state)
            if self._is_orphan(sync, around, channel_name):
                write.skip(name)
            sent = {"message": {"id": sync.message_id}} if write.is_stale(name) else self.send_message(channel, sync)
        return channel, {**sent, **v.answer(around, write)}

    def _warm_channel(self, sync: MessageSync, wants: dict[str, v.Wanted], channel_name: str | None):
        """The warm path of a versioned message: when its users and channel are at the versions
        applied (or stale) and the state knows Stream holds them, nothing of them is written,
        so their locks are not taken (a version never moves back): `(channel, their versions)`.
        None when something of them may be written: the path with their locks."""
        around = self.versions.peek(wants)
        if not around.is_applied_already():
            return None
        to_upsert = self.state.users_to_upsert(around.fresh(sync.users))
        if any(v.user_object(user_id) in wants for user_id in to_upsert):
            return None
        if channel_name and around.is_stale(channel_name):
            channel = self._stale_channel(sync.channel.type, channel_name)[0]
        elif (channel := self._known_channel(sync.channel)) is None:
            return None
        self.upsert_users(to_upsert, trust_state=False)  # users without versions, as without versions
        return channel, around

    def _message_channel(self, sync: MessageSync, around: VersionedWrite, channel_name: str | None, trust_state: bool):
        """The users upserted and the channel got or created (skipped when known, or stale)."""
        self.upsert_users(around.fresh(sync.users), trust_state)
        if channel_name and around.is_stale(channel_name):
            return self._stale_channel(sync.channel.type, channel_name)[0]
        channel = self._known_channel(sync.channel) if trust_state else None
        if channel is None:
            channel, _ = self.get_or_create_channel(sync.channel)
        self.versions.learned(around, channel_name or "", sync.channel.type, channel.id)
        return channel

    def _update_channel(
        self, channel_type: str, channel_id: str, update: ChannelUpdate, write: VersionedWrite
    ) -> dict[str, Any]:
        channel = self.client.channel(channel_type, channel_id)
        to_set = {name: value for name, value in update.custom_data.items() if value is not None}
        to_unset = [name for name, value in update.custom_data.items() if value is None]
        answer = channel.update_partial(to_set, to_unset)
        members = self._member_ids(channel, answer)
        added: list[str] = []
        removed: list[str] = []
        if update.members is not None:
            to_upsert = write.fresh(update.members)
            try:
                added, removed = self._make_members(channel, members, to_upsert, update.members, trust_state=True)
            except StreamError as error:
                if not error.is_missing():
                    raise
                added, removed = self._make_members(channel, members, to_upsert, update.members, trust_state=False)
            members = set(update.members)
        if update.custom_data:  # the data a later sync gives may differ from this: it compares
            self.state.remember_channel(channel_type, channel_id, members)
        else:
            self.state.remember_members(channel_type, channel_id, members)
        return {"channel": answer["channel"], "members": sorted(members), "added": added, "removed": removed}

    def _make_members(
        self,
        channel,
        current: set[str],
        to_upsert: dict[str, dict[str, str]],
        members: dict[str, dict[str, str]],
        trust_state: bool,
    ) -> tuple[list[str], list[str]]:
        """Upsert `to_upsert`, add the `members` the channel lacks, remove the others: (added, removed)."""
        self.upsert_users(to_upsert, trust_state)
        added = [user_id for user_id in members if user_id not in current]
        removed = sorted(current - set(members))
        self.add_members(channel, added)
        for batch in batches(removed):
            self.client.post(channel.url, data={"remove_members": batch})
        return added, removed

    # --- Versions -----------------------------------------------------------------------

    def _channel_name(self, sync: ChannelSync) -> str | None:
        """The versioned object of the channel, or None when the request gives it no version."""
        if sync.version is None:
            return None
        return self.versions.channel_name(sync.type, sync.id, sync.members)

    def _channel_wants(self, sync: ChannelSync, channel_name: str | None) -> dict[str, v.Wanted]:
        channel = (channel_name or "", sync.version, "channel.version")
        return v.wanted([*self._user_wants(sync.member_versions), channel])

    def _around_message_wants(self, sync: MessageSync, channel_name: str | None) -> dict[str, v.Wanted]:
        """The versioned objects of a message's users and channel."""
        return v.wanted(
            [
                (channel_name or "", sync.channel.version, "channel.version"),
                *self._user_wants(sync.user_versions, sender_id=sync.sender["id"]),
            ]
        )

    @staticmethod
    def _user_wants(versions: Mapping[str, VersionValue], sender_id: str | None = None):
        """`(object, version, field)` of each user's version, the field as the body names it."""
        return [
            (v.user_object(user_id), value, "user.version" if user_id == sender_id else f"members.{user_id}.version")
            for user_id, value in versions.items()
        ]

    def _deleting(self, name: str, version: VersionValue | None, hard: bool):
        deleted = v.HARD_DELETED if hard else v.DELETED
        return self.versions.writing(v.wanted([(name, version, "version")], deleted))

    @staticmethod
    def _is_orphan(sync: MessageSync, around: VersionedWrite, channel_name: str | None) -> bool:
        """Whether the message must not be sent: into a channel deleted after the request's
        channel version (a send would bring the channel back), or from a sender deleted after
        the request's sender version with their messages: in the primary, it went with them."""
        sender = v.user_object(sync.sender["id"])
        return bool(channel_name and around.is_gone(channel_name)) or around.is_gone(sender, v.HARD_DELETED)

    def _stale_channel(self, channel_type: str, channel_name: str):
        """A stale channel, not asked to Stream: `(channel, its ids)`."""
        channel = self.client.channel(channel_type, v.channel_id_of(channel_name))
        return channel, {"channel": {"cid": channel.cid, "type": channel_type, "id": channel.id}}

    def _known_channel(self, sync: ChannelSync):
        """The channel to send to, without asking Stream, when the state knows it has all of
        `sync.members` and `sync.custom_data`; else None. A distinct channel's id is known by
        its members, and what it holds by its id (forgotten by webhooks) like any channel."""
        channel_id, known = sync.id, None
        if sync.id is None:
            channel_id, known = self.state.distinct_channel(sync.type, sync.members) or (None, None)
        else:
            known = self.state.channel(sync.type, sync.id)
        if known is None or not known.has(sync.members, sync.custom_data):
            return None
        return self.client.channel(sync.type, channel_id)  # type: ignore[arg-type]

    def _user_is_gone(self, user_id: str) -> bool:
        """Whether Stream shows no such user, or shows them deleted (`deleted_at`): either
        way a soft delete has nothing to do."""
        users = self.client.query_users({"id": {"$eq": user_id}})["users"]
        return not users or bool(users[0].get("deleted_at"))

    def _member_ids(self, channel, answer: dict[str, Any]) -> set[str]:
        """Every member id of the channel: from Stream's answer when it lists them all, else
        paged with query_members, 100 a page."""
        members = {member["user_id"] for member in answer.get("members", [])}
        if len(members) >= answer.get("channel", {}).get("member_count", 0):
            return members
        members, offset = set(), 0
        while True:
            page = channel.query_members({}, limit=STREAM_BATCH_SIZE, offset=offset)
            members.update(member["user_id"] for member in page)
            if len(page) < STREAM_BATCH_SIZE:
                return members
            offset += STREAM_BATCH_SIZE

    def _is_earlier_attempt(self, stored: dict[str, Any], cid: str, sender_id: str) -> bool:
        """Whether the message Stream holds under our id is ours: its mark verifies for its id,
        cid and sender (is_primary_message), and those are this channel and this sender."""
        return (
            is_primary_message(self.origin_key, stored)
            and stored.get("cid") == cid
            and (stored.get("user") or {}).get("id") == sender_id
        )

    @staticmethod
    def _deleted_repeatably(delete, already_deleted: dict[str, Any]) -> dict[str, Any]:
        """Run a Stream delete. Stream's not-found means an earlier attempt (or someone else)
        deleted it: outboxes retry deletes, so that is answered as done, with `already_deleted`."""
        try:
            return dict(delete())
        except StreamError as error:
            if not error.is_not_found():
                raise
        return {**already_deleted, "already_deleted": True}

    # --- History (backfill) -------------------------------------------------------------
    # What `backfill` needs beyond the live operations: history sends no push notifications
    # and raises no unread counts (`skip_push`, `silent`), keeps its original times in custom
    # fields (Stream's live API stamps a write with its arrival time), and arrives deleted
    # when it was deleted. Each write is safe to repeat, as the backfill retries and resumes.

    def with_client(self, client: StreamChat) -> "Mirror":
        """This mirror (its state and origin key) writing through another Stream client,
        such as one paced for a long run."""
        twin = copy.copy(self)
        twin.client = client
        return twin

    def import_users(self, users: dict[str, dict[str, Any]], versions: Mapping[str, VersionValue]) -> None:
        """Upsert every user of a history (the state is a hint; the history is the truth), but
        those whose version in `versions` (their `updated_at`) is stale."""
        with self.versions.writing(v.wanted(self._user_wants(versions))) as write:
            self.upsert_users(write.fresh(users), trust_state=False)

    def import_channel(
        self,
        channel_type: str,
        channel_id: str,
        creator_id: str,
        data: dict[str, Any],
        version: VersionValue | None = None,
    ) -> bool:
        """Get or create the channel `channel_type:channel_id` with `data`, without members;
        False, and nothing done, when `version` is stale (a newer live write, or a delete)."""
        name = v.channel_object(channel_type, channel_id)
        with self.versions.writing(v.wanted([(name, version, "channel.updated_at")])) as write:
            if write.is_stale(name):
                return False
            self.client.channel(channel_type, channel_id, data=dict(data)).create(creator_id)
        return True

    def import_members(
        self, channel_type: str, channel_id: str, user_ids: list[str], version: VersionValue | None = None
    ) -> bool:
        """Add members to a channel, `STREAM_BATCH_SIZE` a call; adding a member twice is a
        no-op. False, and nothing done, when `version` is older than the channel's newest."""
        name = v.channel_object(channel_type, channel_id)
        # A membership is the channel's: checked against its version, never recorded as it.
        with self.versions.writing(v.wanted([(name, version, "member.updated_at")])) as write:
            if write.is_stale(name):
                return False
            write.skip(name)
            url = self.client.channel(channel_type, channel_id).url
            for batch in batches([{"user_id": user_id} for user_id in user_ids]):
                self.client.post(url, data={"add_members": batch})
        return True

    def import_message(
        self,
        channel_type: str,
        channel_id: str,
        message: dict[str, Any],
        user_id: str,
        deleted: bool = False,
        version: VersionValue | None = None,
    ) -> bool:
        """Send a message of the history, quietly, and delete it when it was deleted.
        True when it arrived now; False when Stream already had it (as it should be now), or
        a newer version of it (`version` stale)."""
        name = v.message_object(message["id"])
        wants = v.wanted([(name, version, "message.updated_at")], v.DELETED if deleted else v.LIVE)
        with self.versions.writing(wants) as write:
            if write.is_stale(name):
                return False
            return self._import_message(channel_type, channel_id, message, user_id, deleted)

    def _import_message(
        self, channel_type: str, channel_id: str, message: dict[str, Any], user_id: str, deleted: bool
    ) -> bool:
        channel = self.client.channel(channel_type, channel_id)
        mark = origin_mark(self.origin_key, message["id"], channel.cid, user_id)
        message = {**message, "silent": True, ORIGIN_FIELD: mark}
        try:
            channel.send_message(message, user_id=user_id, skip_push=True)
            arrived, stored_deleted = True, False
        except StreamError as error:
            if not error.is_duplicate_message():
                raise
            stored = self.client.get_message(message["id"], show_deleted_message=True)["message"]
            arrived, stored_deleted = False, stored.get("type") == "deleted"
        if deleted and not stored_deleted:
            self.delete_message(message["id"], hard=False)
        return arrived

    def import_reaction(self, message_id: str, reaction: dict[str, Any], user_id: str) -> None:
        """Add a reaction to a message, without a push; Stream keeps one per type and user."""
        self.client.post(
            f"messages/{message_id}/reaction", data={"reaction": {**reaction, "user_id": user_id}, "skip_push": True}
        )
