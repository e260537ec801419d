"""Browser origins as CORS_ORIGINS names them: what an entry may be, and the exact pattern it
matches. The settings check the entries (`problem`); the web layer hands the patterns to
flask-cors (`pattern`), which matches a compiled pattern from the origin's start only, so each
one ends with `\\Z` here.

An entry is an origin, `scheme://host[:port]` (`https://app.example.com`,
`http://localhost:3000`, `capacitor://localhost`), or `scheme://*.domain[:port]`: one or more
labels under that domain (`https://*.example.com` allows `https://api.example.com` and
`https://a.b.example.com`, not `https://example.com` nor `https://eexample.com`). A browser
sends its origin in lower case, without a path and without the scheme's default port, so an
entry with a path or a default port could never match: it is refused rather than ignored.
"""

import re

# A DNS label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ENTRY = re.compile(
    rf"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<wildcard>\*\.)?"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?",
)
DEFAULT_PORTS = {"http": "80", "https": "443"}


def problem(entry: str) -> str | None:
    """What is wrong with one CORS_ORIGINS entry, or None when it is a usable one."""
    match = _ENTRY.fullmatch(entry.lower())
    if match is None:
        return (
            f"{entry!r} is not an origin: write scheme://host[:port] (https://app.example.com) "
            "or scheme://*.domain (https://*.example.com), without a path or a trailing slash"
        )
    if match["port"] is not None and DEFAULT_PORTS.get(match["scheme"]) == match["port"]:
        return f"{entry!r} names the default port, which browsers leave out of their Origin: drop :{match['port']}"
    if match["wildcard"] and ("." not in match["host"] or match["host"].startswith("[")):
        return f"{entry!r} allows every site under a top-level domain: name your own domain (scheme://*.example.com)"
    return None


def pattern(entry: str) -> re.Pattern:
    """The pattern that matches exactly the origins `entry` allows (an entry `problem` accepts)."""
    match = _ENTRY.fullmatch(entry.lower())
    assert match is not None, f"{entry!r} was not checked"
    if not match["wildcard"]:
        return re.compile(re.escape(entry.lower()) + r"\Z", re.IGNORECASE)
    port = f":{match['port']}" if match["port"] else ""
    return re.compile(
        rf"{re.escape(match['scheme'])}://(?:{_LABEL}\.)+{re.escape(match['host'] + port)}\Z", re.IGNORECASE
    )
