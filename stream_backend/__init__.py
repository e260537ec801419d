"""stream_backend: a primary chat system mirrored into Stream Chat, as a package.

    from stream_backend import Mirror, parse_message

    mirror = Mirror.connect(api_key, api_secret, state="sqlite:///var/mirror.sqlite3")
    channel, sent = mirror.sync_message(parse_message(body))

The names below are the public API: typed, documented (docs/python.md), and kept stable. Every
other module is internal to the package and to the HTTP service beside it (app.py), and may
change. Every exception raised is a `StreamBackendError`.

The exceptions are imported at once; the rest when first asked for (PEP 562), so that
importing one module of the package (the gunicorn master reading the settings) does not load
the SDK and its HTTP stack before the gevent worker has patched them.
"""

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from stream_backend.mirror.bodies import parse_channel, parse_channel_update, parse_message, parse_message_update
    from stream_backend.mirror.inputs import ChannelSync, ChannelUpdate, MessageSync, MessageUpdate
    from stream_backend.mirror.mirror import Mirror

_LAZY = {
    **dict.fromkeys(
        ("parse_channel", "parse_channel_update", "parse_message", "parse_message_update"),
        "stream_backend.mirror.bodies",
    ),
    **dict.fromkeys(("ChannelSync", "ChannelUpdate", "MessageSync", "MessageUpdate"), "stream_backend.mirror.inputs"),
    "Mirror": "stream_backend.mirror.mirror",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'stream_backend' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


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
