"""A webhook body as Stream signs it: inflated within a bound, then its signature checked.

Stream may gzip a delivery; `X-Signature` covers the inflated JSON. The SDK's
`verify_and_parse_webhook` inflates a gzip body whole before it looks at the signature, so an
unsigned 1 MB body of compressed zeros would cost a worker a gigabyte. Here the body is
inflated in bounded steps and refused past `limit` bytes, and only then verified, with the
SDK's constant-time check over the inflated bytes.
"""

import ipaddress
import json
import zlib

from stream_chat.webhook import GZIP_MAGIC, verify_signature

from stream_backend.settings import Networks

GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's way of saying "a gzip header and trailer"
# A gzip file may be several members one after the other, and each costs a new inflater: a
# 1 MB body of one-byte members would cost ~70 times the CPU of one member, all before the
# signature is checked. Stream sends one; a proxy re-compressing in parts, a few.
MAX_GZIP_MEMBERS = 4


class BodyTooLarge(Exception):
    """The body inflates to more than the limit."""


class CorruptBody(Exception):
    """The body says it is gzip but is not a whole gzip stream."""


def is_gzip(body: bytes, content_encoding: str | None) -> bool:
    """Gzip when the header says so, or when the bytes do (as the SDK decides: a proxy may
    have dropped the header)."""
    return body[:2] == GZIP_MAGIC or (content_encoding or "").strip().lower() in ("gzip", "x-gzip")


def inflate(body: bytes, limit: int) -> bytes:
    """The gzip `body` inflated, never holding more than `limit` + 1 inflated bytes, in at
    most MAX_GZIP_MEMBERS members."""
    inflated = bytearray()
    rest = body
    members = 0
    while rest:  # a gzip file may hold several members, one after the other
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise CorruptBody(f"the gzip stream has more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(GZIP_WBITS)
        try:
            while not inflater.eof:
                chunk = inflater.decompress(rest, limit + 1 - len(inflated))
                inflated += chunk
                if len(inflated) > limit:
                    raise BodyTooLarge(f"the body inflates to over {limit} bytes")
                rest = inflater.unconsumed_tail
                if not chunk and not rest and not inflater.eof:  # an empty member ends with no output
                    raise CorruptBody("the gzip stream is truncated")
        except zlib.error as error:
            raise CorruptBody(f"the gzip stream is corrupt ({error})") from None
        rest = inflater.unused_data
    return bytes(inflated)


def signed_json(body: bytes, content_encoding: str | None, signature: str, secret: str, limit: int) -> bytes | None:
    """The JSON bytes Stream signed, or None when `signature` does not match them.
    Raises BodyTooLarge or CorruptBody for a gzip body that cannot be read within `limit`,
    CorruptBody for a signed body that is not UTF-8."""
    if is_gzip(body, content_encoding):
        body = inflate(body, limit)
    if not verify_signature(body, signature, secret):
        return None
    try:  # JSON between systems is UTF-8 (RFC 8259), and it is handed over as it is
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptBody("the body is not UTF-8") from None
    return body


def event_of(signed: bytes) -> dict | None:
    """The event a signed body holds: a JSON object with a string `type`, or None."""
    try:
        event = json.loads(signed)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def address_allowed(remote_addr: str | None, allowed: Networks | None) -> bool:
    """Whether `remote_addr` is in one of the `allowed` networks; any address when None."""
    if allowed is None:
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:203.0.113.7 is IPv4
    return any(address in network for network in allowed)
