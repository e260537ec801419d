"""A webhook body as Stream signs it: inflated within a bound, then its signature checked.

Stream may gzip a delivery; `X-Signature` covers the inflated JSON. The SDK's
`verify_and_parse_webhook` inflates a gzip body whole before it looks at the signature, so an
unsigned 1 MB body of compressed zeros would cost a worker a gigabyte. Here the body is
inflated in bounded steps and refused past `limit` bytes, and only then verified, with the
SDK's constant-time check over the inflated bytes.
"""

import zlib

from stream_chat.webhook import GZIP_MAGIC, verify_signature

GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's way of saying "a gzip header and trailer"


class BodyTooLarge(Exception):
    """The body inflates to more than the limit."""


class CorruptBody(Exception):
    """The body says it is gzip but is not a whole gzip stream."""


def is_gzip(body: bytes, content_encoding: str | None) -> bool:
    """Gzip when the header says so, or when the bytes do (as the SDK decides: a proxy may
    have dropped the header)."""
    return body[:2] == GZIP_MAGIC or (content_encoding or "").strip().lower() in ("gzip", "x-gzip")


def inflate(body: bytes, limit: int) -> bytes:
    """The gzip `body` inflated, never holding more than `limit` + 1 inflated bytes."""
    inflated = bytearray()
    rest = body
    while rest:  # a gzip file may hold several members, one after the other
        inflater = zlib.decompressobj(GZIP_WBITS)
        try:
            while not inflater.eof:
                chunk = inflater.decompress(rest, limit + 1 - len(inflated))
                inflated += chunk
                if len(inflated) > limit:
                    raise BodyTooLarge(f"the body inflates to over {limit} bytes")
                rest = inflater.unconsumed_tail
                if not chunk and not rest:
                    raise CorruptBody("the gzip stream is truncated")
        except zlib.error as error:
            raise CorruptBody(f"the gzip stream is corrupt ({error})") from None
        rest = inflater.unused_data
    return bytes(inflated)


def signed_json(body: bytes, content_encoding: str | None, signature: str, secret: str,
                limit: int) -> bytes | None:
    """The JSON bytes Stream signed, or None when `signature` does not match them.
    Raises BodyTooLarge or CorruptBody for a gzip body that cannot be read within `limit`."""
    if is_gzip(body, content_encoding):
        body = inflate(body, limit)
    return body if verify_signature(body, signature, secret) else None
