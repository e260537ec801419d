"""stream_backend: a primary chat system mirrored into Stream Chat, as a package.

    from stream_backend import Mirror, parse_message

    mirror = Mirror.connect(api_key, api_secret, state="sqlite:///var/mirror.sqlite3")
    channel, sent = mirror.sync_message(parse_message(body))

The names below are the public API: typed, documented (docs/python.md), and kept stable. Every
other module is internal to the package and to the HTTP service beside it (app.py), and may
change. Every exception raised is a `StreamBackendError`.
"""

from stream_backend.errors import (
    InvalidRequest,
    MembersAreFixed,
    MessageIdTaken,
    ObjectBusy,
    QueueFull,
    SettingsError,
    StoreUnavailable,
    StreamBackendError,
    StreamError,
    StreamTimeout,
    StreamUnavailable,
    StreamUnreachable,
    VersionConflict,
    VersionsUnavailable,
)
from stream_backend.mirror.bodies import parse_channel, parse_channel_update, parse_message, parse_message_update
from stream_backend.mirror.inputs import ChannelSync, ChannelUpdate, MessageSync, MessageUpdate
from stream_backend.mirror.mirror import Mirror

__version__ = "1.0.0"

__all__ = [
    "ChannelSync",
    "ChannelUpdate",
    "InvalidRequest",
    "MembersAreFixed",
    "MessageIdTaken",
    "MessageSync",
    "MessageUpdate",
    "Mirror",
    "ObjectBusy",
    "QueueFull",
    "SettingsError",
    "StoreUnavailable",
    "StreamBackendError",
    "StreamError",
    "StreamTimeout",
    "StreamUnavailable",
    "StreamUnreachable",
    "VersionConflict",
    "VersionsUnavailable",
    "parse_channel",
    "parse_channel_update",
    "parse_message",
    "parse_message_update",
]
