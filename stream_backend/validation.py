"""How a body is read and checked, for every caller: the HTTP routes and the Python API.

- `parse_json` reads JSON bytes into an object Stream can store, refusing what `json.loads`
  takes but Stream cannot (NaN, nesting past MAX_JSON_DEPTH, lone surrogates, numbers beyond
  a double); `check_storable` runs the same rules on an object a Python caller built.
- The types below (`UserId`, `ChannelId`, ...) carry Stream's rules (stream/rules.py) as
  pydantic constraints; `validated(kind, value)` runs one and turns pydantic's first error into
  `InvalidRequest("<field>", "<problem>")`, the field's path as the client wrote it.
"""

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from stream_backend.errors import InvalidRequest
from stream_backend.stream.rules import (
    CHANNEL_ID_PATTERN,
    CHANNEL_TYPE_PATTERN,
    ID_PATTERN,
    MAX_CHANNEL_ID_LENGTH,
    MAX_CUSTOM_DATA_BYTES,
    MAX_ID_LENGTH,
)

# A character that is not whitespace (as Python's str.isspace() sees it, also in JavaScript).
NOT_BLANK_PATTERN = r"[^\s\x1c-\x1f\x85]"
# `?hard=true`: true or false in any case, 1 or 0.
FLAG_PATTERN = r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"

# What each pattern means, in the words of an error message.
PATTERN_RULES = {
    ID_PATTERN: "may contain only letters, digits, '@', '_' and '-'",
    CHANNEL_TYPE_PATTERN: "may contain only letters, digits, '_' and '-'",
    CHANNEL_ID_PATTERN: "may contain only letters, digits, '@', '!', '_' and '-'",
    NOT_BLANK_PATTERN: "must not be empty or only whitespace",
    FLAG_PATTERN: "must be true or false",
}


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON, as Stream counts custom data (a lone surrogate,
    which parse_json() refuses, would count 3 rather than fail here)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(errors="surrogatepass"))


def within_custom_data_limit(value: dict) -> dict:
    if json_size(value) > MAX_CUSTOM_DATA_BYTES:
        raise PydanticCustomError("too_large", f"is over Stream's {MAX_CUSTOM_DATA_BYTES} bytes of custom data")
    return value


# --- Types ---------------------------------------------------------------------------------

UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
    Field(description="A Stream user id: 1 to 255 letters, digits, `@`, `_` or `-`.", examples=["tommaso"]),
]
MessageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
    Field(
        description="The primary system's message id: 1 to 255 letters, digits, `@`, `_` or `-`.",
        examples=["123-456-789-01234"],
    ),
]
ChannelType = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CHANNEL_ID_LENGTH, pattern=CHANNEL_TYPE_PATTERN),
    Field(description="1 to 64 letters, digits, `_` or `-`.", examples=["messaging"]),
]
ChannelId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CHANNEL_ID_LENGTH, pattern=CHANNEL_ID_PATTERN),
    Field(description="1 to 64 letters, digits, `@`, `!`, `_` or `-`.", examples=["general"]),
]
Text = Annotated[
    str, StringConstraints(pattern=NOT_BLANK_PATTERN), Field(description="Not empty, not only whitespace.")
]
Flag = Annotated[
    str,
    StringConstraints(pattern=FLAG_PATTERN),
    AfterValidator(lambda value: value.lower() in ("true", "1")),  # -> bool
    Field(description="`true` or `false` (any case), `1` or `0`; absent is false."),
]


# --- The error adapter ----------------------------------------------------------------------

# pydantic's words for its own checks, in ours.
PROBLEMS = {
    "missing": "is required",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must not be empty",
    "too_long": "may have at most {max_length} entries",
    "extra_forbidden": "is not accepted here (a user object takes name and image)",  # only UserFields refuses
    "string_unicode": "must be valid Unicode text",
}


def validated(kind: Any, value: Any, field: str = "") -> Any:
    """`value` validated as `kind` (a model, or a type such as `UserId` for one value named
    `field`). The first problem raises InvalidRequest."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise InvalidRequest(
            _path(((field,) if field else ()) + tuple(first["loc"])) or "body", _problem(first)
        ) from None


_ADAPTERS: dict[int, TypeAdapter] = {}  # by id: the kinds are module-level models and types


def _adapter(kind: Any) -> TypeAdapter:
    if id(kind) not in _ADAPTERS:
        _ADAPTERS[id(kind)] = TypeAdapter(kind)
    return _ADAPTERS[id(kind)]


def _path(loc: tuple) -> str:
    """`("members", "thierry", "[key]")` -> `members.thierry`: keys a client chose are cut
    short enough to quote."""
    return ".".join(shorten(str(part)) for part in loc if part != "[key]")


def _problem(error: Any) -> str:
    context = error.get("ctx") or {}
    if error["type"] == "string_pattern_mismatch" and context.get("pattern") in PATTERN_RULES:
        return PATTERN_RULES[context["pattern"]]
    template = PROBLEMS.get(error["type"])
    return template.format(**context) if template else error["msg"]


def shorten(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else name[:limit] + "..."


# --- Bodies as JSON -------------------------------------------------------------------------

# Deeper than any real body (custom data included): the SDK and Stream recurse into it.
MAX_JSON_DEPTH = 32
# JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 encoder takes.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(raw: bytes | str) -> dict[str, Any]:
    """A body as a JSON object that Stream can store; InvalidRequest otherwise."""
    try:
        # NaN and Infinity are not JSON; Python would accept them and forward them to Stream.
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest("body", "must be JSON") from None
    return check_storable(body)


def check_storable(body: Any) -> dict[str, Any]:
    """`body`, when it is a JSON object Stream can store: no nesting deeper than
    MAX_JSON_DEPTH, no lone surrogates, no numbers out of a double's range (`1e400` parses to
    infinity; a Python caller may pass NaN), nothing but JSON's values. InvalidRequest names the field otherwise, before
    anything is validated or sent. Each value is queued with a tuple of keys, not a path
    string: a long key over many children would be copied once per child. The field's name
    is built only for the refusal, with long keys cut short."""
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    pending: list[tuple[Any, tuple]] = [(body, ())]
    while pending:  # a loop, not recursion: the depth is what is being checked
        value, keys = pending.pop()
        if isinstance(value, (dict, list)):
            if len(keys) >= MAX_JSON_DEPTH:
                raise InvalidRequest(_json_path(keys), f"is nested deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(key, str) and LONE_SURROGATE.search(key):
                    raise InvalidRequest(_json_path(keys), "has a key with a lone UTF-16 surrogate (not Unicode text)")
                pending.append((child, keys + (key,)))
        elif isinstance(value, str) and LONE_SURROGATE.search(value):
            raise InvalidRequest(_json_path(keys), "has a lone UTF-16 surrogate (not Unicode text)")
        elif isinstance(value, (int, float)) and not _finite(value):
            raise InvalidRequest(_json_path(keys), "is a number out of range (beyond a double's)")
        elif not isinstance(value, (str, int, float, type(None))):  # a Python caller's set, date, ...
            raise InvalidRequest(_json_path(keys), f"is not a JSON value ({type(value).__name__})")
    return body


def _json_path(keys: tuple) -> str:
    """`("members", "a", "tags", 0)` -> `members.a.tags[0]`, long keys cut short; `body` for ()."""
    path = ""
    for key in keys:
        path += f"[{key}]" if isinstance(key, int) else f".{shorten(str(key))}" if path else shorten(str(key))
    return path or "body"


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
