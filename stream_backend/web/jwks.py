"""The identity provider's public keys (AUTH_JWKS_URL), for session JWTs signed with RS256,
ES256 and their kin: Auth0, Firebase Auth, Amazon Cognito, Clerk, Supabase, any OpenID Connect
provider.

PyJWT's `PyJWKClient` fetches the provider's JWKS, keeps it for `KEYS_LIFESPAN_SECONDS`, and
fetches it again when a token names a `kid` it does not hold (a rotation), at most once per
`UNKNOWN_KID_COOLDOWN_SECONDS`, so that tokens with made-up kids cannot make us hammer the
provider. On top of it, `ProviderKeys` adds what a service needs when the provider has a bad
minute:

- a fetch waits at most `FETCH_TIMEOUT_SECONDS` (the token route answers well inside the 1 s
  the workshop's iOS sample waits, once the keys are held);
- after a failed fetch, none is tried for `FAILED_FETCH_PAUSE_SECONDS`: the requests meanwhile
  fail at once, rather than each waiting out its own timeout;
- keys fetched within `STALE_KEYS_SECONDS` keep verifying while the provider cannot be reached,
  so an outage of the provider does not log every chat user out; with none, the caller gets
  `ProviderUnreachable` (a 401 that says so).

The algorithm is the key's (its `alg`, or what its type and curve imply), never the token's:
a token whose header says HS256 (signed with the public key as an HMAC secret) or `none` does
not verify, and a symmetric (`oct`) key in the set is refused.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import InvalidTokenError, PyJWKClientConnectionError, PyJWTError

log = logging.getLogger("stream_backend.auth")

FETCH_TIMEOUT_SECONDS = 2.0
KEYS_LIFESPAN_SECONDS = 300.0
UNKNOWN_KID_COOLDOWN_SECONDS = 30.0
FAILED_FETCH_PAUSE_SECONDS = 5.0
STALE_KEYS_SECONDS = 3600.0

# Public-key signatures only: an HMAC key in a public key set would be a shared secret.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA"}
)


class ProviderUnreachable(Exception):
    """The provider's keys could not be fetched, and none recent enough are held."""


class ProviderKeys(PyJWKClient):
    """The signing keys at `url`, as PyJWKClient fetches and caches them, with a pause after a
    failed fetch and the last good key set kept for an outage (the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        lifespan: float = KEYS_LIFESPAN_SECONDS,
        cooldown: float = UNKNOWN_KID_COOLDOWN_SECONDS,
        pause: float = FAILED_FETCH_PAUSE_SECONDS,
        stale_for: float = STALE_KEYS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # cache_keys=False: PyJWKClient's per-kid cache never expires, so a key the provider
        # withdrew would verify forever; the key set's cache does expire.
        super().__init__(url, cache_keys=False, lifespan=lifespan, timeout=timeout, cooldown_duration=cooldown)
        self.pause, self.stale_for, self.clock = pause, stale_for, clock
        self._paused_until = 0.0
        self._last_good: tuple[float, Any] | None = None  # (when, the JWKS) of the last good fetch

    def signing_key(self, token: str) -> PyJWK:
        """The public key that `token`'s `kid` names. Raises ProviderUnreachable, or
        InvalidTokenError for a token no key of the provider's can verify."""
        try:
            key = self.get_signing_key_from_jwt(token)
        except PyJWKClientConnectionError as error:
            raise ProviderUnreachable(str(error)) from None
        except PyJWTError as error:  # a malformed token, an unknown kid, a set without signing keys
            raise InvalidTokenError(str(error)) from None
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS:
            raise InvalidTokenError(f"the provider's key {key.key_id!r} is not a public key ({key.algorithm_name})")
        return key

    def fetch_data(self) -> Any:
        """The provider's JWKS, fetched unless a recent fetch failed; the last good one, within
        `stale_for`, when it cannot be had."""
        if self.clock() < self._paused_until:
            return self._last_good_or_raise(PyJWKClientConnectionError("a fetch failed moments ago"))
        try:
            data = super().fetch_data()
        except (PyJWKClientConnectionError, json.JSONDecodeError, UnicodeDecodeError) as error:
            self._paused_until = self.clock() + self.pause
            log.warning("the identity provider's keys (AUTH_JWKS_URL) could not be fetched: %s", error)
            return self._last_good_or_raise(PyJWKClientConnectionError(str(error)))
        self._last_good = (self.clock(), data)
        return data

    def _last_good_or_raise(self, error: PyJWKClientConnectionError) -> Any:
        if self._last_good is None or self.clock() - self._last_good[0] > self.stale_for:
            raise error
        return self._last_good[1]
