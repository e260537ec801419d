"""The mirror: what the primary chat system says, written into Stream (dual-write).

`Mirror(client, state, origin_key)` takes its collaborators as arguments and knows nothing of
HTTP: the routes in app.py call it, and a Python primary backend can import and call it
directly. `state` (sync_cache.SyncCache) is what we believe Stream already has, so that a
repeated sync skips calls that would change nothing; it is a hint, never the truth.

Limits are Stream's (../shared/docs/stream-facts.md): 100 users per upsert, 100 members per
call, a reused message id answered 400 "already exists".
"""

import copy
import hashlib
import hmac
from typing import Any, Callable

from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

import stream_errors
from payloads import ChannelSync, MessageSync
from sync_cache import SyncCache

# Stream's limit on users per upsert call, and on members added per call.
STREAM_BATCH_SIZE = 100

# Messages the mirror sends carry a custom field that marks them as the primary system's, so
# that their `message.new` webhook is not fed back to it (see handover.py). The mark is an
# HMAC of the message id: no state is shared, and no chat client can forge it. It adds 51
# bytes to the message's 5 KB of custom data.
ORIGIN_FIELD = "primary_origin"


def batches(items: list, size: int = STREAM_BATCH_SIZE) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def origin_mark(origin_key: bytes, message_id: str) -> str:
    return hmac.new(origin_key, f"primary-origin:{message_id}".encode(), hashlib.sha256).hexdigest()[:32]


def is_primary_message(origin_key: bytes, message: dict[str, Any]) -> bool:
    """Whether `message` (as in a webhook event) carries a valid mark of the mirror's."""
    mark, message_id = message.get(ORIGIN_FIELD), message.get("id")
    return (isinstance(mark, str) and isinstance(message_id, str)
            and hmac.compare_digest(mark.encode(), origin_mark(origin_key, message_id).encode()))


class Mirror:
    def __init__(self, client: StreamChat, state: SyncCache, origin_key: bytes) -> None:
        self.client, self.state, self.origin_key = client, state, origin_key

    # --- Operations ---------------------------------------------------------------------

    def sync_channel(self, sync: ChannelSync):
        """Upsert the members, then get or create their channel: `(channel, Stream's state)`."""
        def mirror():
            self.upsert_users(sync.members)
            return self.get_or_create_channel(sync)

        return self._trusting_state(mirror, sync.members, sync)

    def sync_message(self, sync: MessageSync):
        """The channel's work, then the message: `(channel, Stream's answer)`."""
        def mirror():
            self.upsert_users(sync.users)
            channel = self.known_or_new_channel(sync.channel)
            return channel, self.send_message(channel, sync)

        return self._trusting_state(mirror, sync.users, sync.channel)

    def update_message(self, message_id: str, fields: dict[str, Any], user_id: str) -> dict[str, Any]:
        """Set some fields of a message (a partial update), as `user_id`."""
        return dict(self.client.update_message_partial(message_id, {"set": fields}, user_id))

    def delete_message(self, message_id: str, hard: bool) -> dict[str, Any]:
        return self._delete_repeatably(lambda: self.client.delete_message(message_id, hard=hard),
                                       already_deleted={"message": {"id": message_id}})

    def delete_channel(self, channel_type: str, channel_id: str, hard: bool) -> dict[str, Any]:
        channel = self.client.channel(channel_type, channel_id)
        self.state.forget_channel_by_id(channel_type, channel_id)
        return self._delete_repeatably(lambda: channel.delete(hard=hard),
                                       already_deleted={"channel": {"cid": channel.cid}})

    # --- Steps --------------------------------------------------------------------------

    def upsert_users(self, users: dict[str, dict[str, str]]) -> None:
        """Create or update in Stream the `users` it may not have as they are, at most
        `STREAM_BATCH_SIZE` a call."""
        for batch in batches(list(self.state.users_to_upsert(users).values())):
            self.client.upsert_users(batch)
            self.state.remember_users({user["id"]: user for user in batch})

    def get_or_create_channel(self, sync: ChannelSync):
        """Get or create the channel `sync.type:sync.id` (without an id: the distinct channel of
        its members). The members must exist in Stream.

        Custom data goes in the channel's data, where Stream stores it; `channel.create`'s
        keyword options would land at the top level of the query and be ignored. Members go as
        `{"user_id": ...}` objects, as Stream's spec requires, 100 with the channel and the rest
        (channels with an id only) 100 a call.
        """
        first, *more = batches([{"user_id": member_id} for member_id in sync.members])
        channel = self.client.channel(sync.type, sync.id, data={**sync.custom_data, "members": first})
        state = channel.create(sync.creator_id)
        for members in more:
            # Not `channel.add_members`: it sends `"message": null`, which Stream's spec refuses.
            self.client.post(channel.url, data={"add_members": members})
        self.state.remember_channel(sync, channel.id)
        return channel, state

    def known_or_new_channel(self, sync: ChannelSync):
        """The channel to send to: the one created for the same data before, without asking
        Stream, or else the one Stream gets or creates."""
        channel_id = self.state.channel_id(sync)
        if channel_id is not None:
            return self.client.channel(sync.type, channel_id)
        channel, _ = self.get_or_create_channel(sync)
        return channel

    def send_message(self, channel, sync: MessageSync) -> dict[str, Any]:
        """Send the message; when Stream already has its id, answer the stored message.

        A primary system's outbox retries after any timeout, and Stream answers a reused id
        with 400 "already exists" (stream_errors.is_duplicate_message). The stored message is
        returned as it is: a retry with other text does not change it (update_message does).
        """
        message = {"id": sync.message_id, "text": sync.text,
                   ORIGIN_FIELD: origin_mark(self.origin_key, sync.message_id)}
        try:
            return channel.send_message(message, user_id=sync.sender["id"])
        except StreamAPIException as error:
            if not stream_errors.is_duplicate_message(error):
                raise
        return self.client.get_message(sync.message_id)

    def _trusting_state(self, sync_to_stream: Callable, users, channel: ChannelSync):
        """Run `sync_to_stream`, which skips what the state says Stream has of `users` and
        `channel`. When Stream answers that a user or channel does not exist (deleted
        elsewhere), forget them and run it once more: the full path, which recreates them."""
        try:
            return sync_to_stream()
        except StreamAPIException as error:
            if not stream_errors.is_missing(error):
                raise
        self.state.forget(users, channel)
        return sync_to_stream()

    @staticmethod
    def _delete_repeatably(delete: Callable, already_deleted: dict[str, Any]) -> dict[str, Any]:
        """Run a Stream delete. Stream's not-found means an earlier attempt (or someone else)
        deleted it: outboxes retry deletes, so that is answered as done, with `already_deleted`."""
        try:
            return dict(delete())
        except StreamAPIException as error:
            if not stream_errors.is_not_found(error):
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

    def import_channel(self, channel_type: str, channel_id: str, creator_id: str, data: dict[str, Any]):
        """Get or create the channel `channel_type:channel_id` with `data`, without members."""
        channel = self.client.channel(channel_type, channel_id, data=dict(data))
        channel.create(creator_id)
        return channel

    def import_members(self, channel_type: str, channel_id: str, user_ids: list[str]) -> None:
        """Add members to a channel, `STREAM_BATCH_SIZE` a call; adding a member twice is a no-op."""
        url = self.client.channel(channel_type, channel_id).url
        for batch in batches([{"user_id": user_id} for user_id in user_ids]):
            self.client.post(url, data={"add_members": batch})

    def import_message(self, channel_type: str, channel_id: str, message: dict[str, Any], user_id: str,
                       deleted: bool = False) -> bool:
        """Send a message of the history, quietly, and delete it when it was deleted.
        True when it arrived now; False when Stream already had it (as it should be now)."""
        channel = self.client.channel(channel_type, channel_id)
        message = {**message, "silent": True, ORIGIN_FIELD: origin_mark(self.origin_key, message["id"])}
        try:
            channel.send_message(message, user_id=user_id, skip_push=True)
            arrived, stored_deleted = True, False
        except StreamAPIException as error:
            if not stream_errors.is_duplicate_message(error):
                raise
            stored = self.client.get_message(message["id"])["message"]
            arrived, stored_deleted = False, stored.get("type") == "deleted"
        if deleted and not stored_deleted:
            self.delete_message(message["id"], hard=False)
        return arrived

    def import_reaction(self, message_id: str, reaction: dict[str, Any], user_id: str) -> None:
        """Add a reaction to a message, without a push; Stream keeps one per type and user."""
        self.client.post(f"messages/{message_id}/reaction",
                         data={"reaction": {**reaction, "user_id": user_id}, "skip_push": True})
