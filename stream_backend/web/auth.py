"""Who may call: the caller's session JWT (TOKEN_AUTH=jwt) for a token, checked with
AUTH_JWT_SECRET (HS256) or the identity provider's keys at AUTH_JWKS_URL (web/jwks.py); the
shared SYNC_API_TOKEN for the sync routes; METRICS_TOKEN for /metrics. All as
`Authorization: Bearer`."""

import functools
import hmac
from typing import Any, NoReturn

import jwt
from flask import abort, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from stream_backend.errors import InvalidRequest
from stream_backend.validation import UserId, validated
from stream_backend.web.jwks import ProviderKeys, ProviderUnreachable

# Tokens are issued a few seconds in the past: Stream refuses a token whose `iat` is in the
# future (code 42), and servers' clocks drift. `iat` is kept because Stream's token
# revocation (`revoke_tokens_issued_before`) compares against it.
TOKEN_IAT_LEEWAY_SECONDS = 5


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str) -> NoReturn:
    raise Unauthorized(message, www_authenticate=WWWAuthenticate("bearer"))


def session_user() -> str:
    """The user of the caller's session JWT (TOKEN_AUTH=jwt): its `sub` claim.

    The JWT is signed by the app itself (HS256 with AUTH_JWT_SECRET) or by its identity
    provider (a key of AUTH_JWKS_URL's, whose own algorithm is the only one accepted), and
    must carry `sub` and `exp`; `aud` and `iss` are checked when AUTH_JWT_AUDIENCE and
    AUTH_JWT_ISSUER are set, and a JWT with an `aud` is refused when AUTH_JWT_AUDIENCE is not:
    it was meant for another service.
    """
    token = bearer_token()
    if token is None:
        unauthorized("An Authorization: Bearer <session JWT> header is required.")
    config = current_app.config["SETTINGS"]
    try:
        key, algorithm = _verifying_key(token, config.auth_jwt_secret)
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config.auth_jwt_audience,
            issuer=config.auth_jwt_issuer,
            leeway=TOKEN_IAT_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except ProviderUnreachable:
        unauthorized(
            "The session JWT could not be checked: the identity provider's keys (AUTH_JWKS_URL) are out of reach."
        )
    except jwt.ExpiredSignatureError:
        unauthorized("The session JWT has expired.")
    except jwt.InvalidTokenError as error:
        unauthorized(f"The session JWT is not valid: {error}.")
    try:
        return validated(UserId, claims["sub"], "sub")
    except InvalidRequest:
        abort(403, description="The session JWT's sub is not a Stream user id.")


def _verifying_key(token: str, secret: str | None) -> tuple[Any, str]:
    """The key that must have signed `token`, and its one algorithm: the provider's key for the
    token's `kid` when the app has ProviderKeys (AUTH_JWKS_URL), else the HS256 secret."""
    provider_keys: ProviderKeys | None = current_app.extensions.get("session_keys")
    if provider_keys is None:
        return secret, "HS256"
    key = provider_keys.signing_key(token)
    return key, key.algorithm_name


def requires_sync_token(view):
    """With SYNC_API_TOKEN set, the route needs `Authorization: Bearer <SYNC_API_TOKEN>`."""

    @functools.wraps(view)
    def guarded(**kwargs):
        expected = current_app.config["SETTINGS"].sync_api_token
        if expected is not None:
            check_bearer(expected, "SYNC_API_TOKEN")
        return view(**kwargs)

    return guarded


def requires_metrics_token(view):
    """The route is there only with METRICS_TOKEN set (404 otherwise), and needs
    `Authorization: Bearer <METRICS_TOKEN>`: metrics tell how the service is used."""

    @functools.wraps(view)
    def guarded(**kwargs):
        expected = current_app.config["SETTINGS"].metrics_token
        if expected is None:
            abort(404, description="Metrics are off: set METRICS_TOKEN to serve them.")
        check_bearer(expected, "METRICS_TOKEN")
        return view(**kwargs)

    return guarded


def check_bearer(expected: str, name: str) -> None:
    """A 401 unless the request's bearer token is `expected` (the setting `name`)."""
    given = bearer_token()
    if given is None:
        unauthorized(f"An Authorization: Bearer <{name}> header is required.")
    if not hmac.compare_digest(given.encode(), expected.encode()):  # constant-time
        unauthorized(f"The bearer token is not this service's {name}.")
