"""What this worker process knows Stream already has, so that a repeated sync skips the calls
that would change nothing.

- users: id -> a digest of the user object last upserted; a user whose object is unchanged is
  not upserted again, a changed name or image is.
- channels: a digest of the channel's sync request (type, id, creator, custom data, members)
  -> the channel's id, which Stream derives for a distinct channel. A channel synced before with
  the same data is not fetched again before a message is sent to it.

It is a hint, never the truth: when Stream answers that a user or channel does not exist
(deleted elsewhere, or by another worker), the caller forgets and takes the full path once.
Each map keeps its `size` most recently used entries, so memory is bounded: a user entry
holds its id and 16 bytes of digest, a channel entry 16 bytes and an id of at most 64.
"""

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any


class LRUMap:
    """A thread-safe map that keeps its `size` most recently used entries (none for 0)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: Any) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def discard_values(self, value: Any) -> None:
        with self._lock:
            for key in [key for key, held in self._entries.items() if held == value]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).digest()


class SyncCache:
    def __init__(self, size: int) -> None:
        self.users = LRUMap(size)
        self.channels = LRUMap(size)

    def users_to_upsert(self, users: dict[str, dict]) -> dict[str, dict]:
        """The users whose object Stream may not have yet."""
        return {user_id: user for user_id, user in users.items() if self.users.get(user_id) != _digest(user)}

    def remember_users(self, users: dict[str, dict]) -> None:
        for user_id, user in users.items():
            self.users.put(user_id, _digest(user))

    def forget(self, user_ids, channel) -> None:
        """Forget these users and the channel sync `channel`: Stream no longer has them."""
        for user_id in user_ids:
            self.users.discard(user_id)
        self.channels.discard(self._channel_key(channel))

    def channel_id(self, sync) -> str | None:
        """The id of the channel `sync` (a payloads.ChannelSync) created before, if known."""
        known = self.channels.get(self._channel_key(sync))
        return known[1] if known else None

    def remember_channel(self, sync, channel_id: str) -> None:
        self.channels.put(self._channel_key(sync), (sync.type, channel_id))

    def forget_channel_by_id(self, channel_type: str, channel_id: str) -> None:
        self.channels.discard_values((channel_type, channel_id))

    @staticmethod
    def _channel_key(sync) -> bytes:
        return _digest([sync.type, sync.id, sync.creator_id, sync.custom_data, sorted(sync.members)])
