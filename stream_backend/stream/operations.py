"""The name of each call to Stream's API that this package makes: Stream's own operationId for
it in Stream's OpenAPI spec (`SendMessage`, `GetOrCreateChannel`, ...), so that metrics label
calls by a few names, never by paths full of ids. A call not in the table is `other`."""

import re

# (method, path under the API's base URL, operationId), as the SDK sends them.
_OPERATIONS = [
    ("GET", r"app", "GetApp"),
    ("POST", r"users", "UpdateUsers"),
    ("GET", r"users", "QueryUsers"),
    ("POST", r"users/delete", "DeleteUsers"),
    ("POST", r"channels", "QueryChannels"),
    ("POST", r"channels/[^/]+/query", "GetOrCreateDistinctChannel"),
    ("POST", r"channels/[^/]+/[^/]+/query", "GetOrCreateChannel"),
    ("POST", r"channels/[^/]+/[^/]+", "UpdateChannel"),
    ("PATCH", r"channels/[^/]+/[^/]+", "UpdateChannelPartial"),
    ("DELETE", r"channels/[^/]+/[^/]+", "DeleteChannel"),
    ("POST", r"channels/[^/]+/[^/]+/message", "SendMessage"),
    ("GET", r"channels/[^/]+/[^/]+/messages", "GetManyMessages"),
    ("GET", r"members", "QueryMembers"),
    ("GET", r"messages/[^/]+", "GetMessage"),
    ("POST", r"messages/[^/]+", "UpdateMessage"),
    ("PUT", r"messages/[^/]+", "UpdateMessagePartial"),
    ("DELETE", r"messages/[^/]+", "DeleteMessage"),
    ("POST", r"messages/[^/]+/reaction", "SendReaction"),
    ("POST", r"import_urls", "CreateImportURL"),
    ("POST", r"imports", "CreateImport"),
    ("GET", r"imports", "ListImports"),
    ("GET", r"imports/[^/]+", "GetImport"),
]
OPERATIONS = [(method, re.compile(path), name) for method, path, name in _OPERATIONS]


def operation(method: str, relative_url: str) -> str:
    """Stream's name for the call `method relative_url` (`POST channels/messaging/general/message`)."""
    path = relative_url.strip("/").split("?")[0]
    for known_method, pattern, name in OPERATIONS:
        if known_method == method.upper() and pattern.fullmatch(path):
            return name
    return "other"
