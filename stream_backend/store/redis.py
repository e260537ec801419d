"""A Redis client from a `redis://` URL, with timeouts. redis-py is imported only here and only
when a Redis store is used: the package's core does not need it (`pip install
stream-backend[redis]`)."""

from typing import Any

from stream_backend.errors import SettingsError


def connect(url: str, timeout: float) -> Any:
    """A client for `url` whose every command fails after `timeout` seconds, decoding answers."""
    try:
        import redis
    except ImportError:
        raise SettingsError(
            f"{url.split('://')[0]}:// needs the redis package: pip install 'stream-backend[redis]'"
        ) from None
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis command raises when the store cannot answer."""
    import redis

    return (redis.RedisError,)
