"""The service's settings, read from the environment once and checked together: a process
with a missing or malformed setting does not start (errors.SettingsError names every problem).
.env.example documents each one; docs/configuration.md is generated from it."""

import base64
import binascii
import functools
import ipaddress
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_backend import origins
from stream_backend.errors import SettingsError
from stream_backend.mirror.state import DEFAULT_TTL_SECONDS
from stream_backend.mirror.versions import DEFAULT_KEEP_SECONDS

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The longest attempt of a delivery to the primary system: Standard Webhooks advises 15 to 30 s
# (https://www.standardwebhooks.com), and a lane's lease (handover/delivery.py) outlasts it.
MAX_PRIMARY_SYNC_TIMEOUT_SECONDS = 30
# A request to Stream may take STREAM_CHAT_TIMEOUT, and the slowest sync makes four in a row
# (a user deleted elsewhere: send, upsert, create, send): four must end well inside
# gunicorn's 30 s worker timeout.
MAX_STREAM_TIMEOUT_SECONDS = 6
# HS256 keys and shared tokens shorter than the hash are guessable (RFC 7518, section 3.2).
MIN_SECRET_LENGTH = 32
# Standard Webhooks secrets are 24 to 64 random bytes, base64 after `whsec_`.
MIN_SYNC_SECRET_BYTES = 24
# The project folder (the checkout the service runs from): default paths are inside it,
# whatever the working directory.
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    stream_api_key: str
    stream_api_secret: str
    stream_chat_url: str | None  # None: the SDK's default, Stream's own API
    stream_timeout: float
    token_auth: str  # "open" or "jwt"
    auth_jwt_secret: str | None  # the app's own HS256 key for session JWTs
    auth_jwks_url: str | None  # or its identity provider's public keys (RS256, ES256, ...)
    auth_jwt_audience: str | None
    auth_jwt_issuer: str | None
    sync_api_token: str | None  # set: the sync routes need it as a bearer token
    metrics_token: str | None  # set: GET /metrics is served, to this bearer token only
    token_ttl_seconds: int
    cors_origins: str | tuple[str, ...]  # "*", or entries origins.problem accepts, in lower case
    max_body_bytes: int
    sync_state_ttl_seconds: int
    versions_keep_seconds: int  # how long an object's newest version is kept after its last write
    primary_sync_url: str | None  # None: accepted webhook events are logged, not handed over
    primary_sync_timeout: float  # seconds an attempt may take
    primary_sync_retry_schedule: tuple[float, ...] | None  # seconds between attempts; None: the default's
    primary_sync_keep_days: float  # how long failed events are kept
    primary_sync_max_pending: int  # events waiting for the primary, at most; past it the webhook answers 503
    primary_sync_threads: int  # delivery threads of each web process; 0: another process delivers
    webhook_db: str
    redis_url: str | None  # set: webhook deliveries are deduplicated in Redis, not SQLite
    primary_sync_secret: str | None  # set: hand-overs are signed the Standard Webhooks way
    webhook_allowed_ips: "Networks | None"  # who may call the webhook; None: anyone
    trusted_proxy_count: int  # proxies whose X-Forwarded-For is believed; 0: none
    log_level: str  # a Python log level's name: DEBUG, INFO, WARNING, ERROR or CRITICAL
    log_format: str  # "text" or "json" (one JSON object a line)

    @property
    def store_location(self) -> str:
        """Where the shared state lives: Redis when REDIS_URL is set, else the SQLite file."""
        return self.redis_url or f"sqlite:///{self.webhook_db}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], serving: bool = True) -> "Settings":
        """The settings in `environ`, checked together. `serving=False`: for a command
        (`backfill`, `verify`), which serves no route: TOKEN_AUTH and the secrets that go with
        it are not needed."""
        problems = []
        missing = [name for name in ("STREAM_API_KEY", "STREAM_API_SECRET") if not environ.get(name)]
        if missing:
            problems.append(f"{' and '.join(missing)} must be set (your app's keys, from Stream's dashboard)")
        number = functools.partial(_number, environ, problems)
        # The SDK's own default is 6 s; it also reads STREAM_CHAT_TIMEOUT and STREAM_CHAT_URL
        # itself, so these names keep one meaning whoever reads them.
        settings = cls(
            stream_api_key=environ.get("STREAM_API_KEY", ""),
            stream_api_secret=environ.get("STREAM_API_SECRET", ""),
            stream_chat_url=environ.get("STREAM_CHAT_URL") or None,
            stream_timeout=number("STREAM_CHAT_TIMEOUT", 6.0, float),
            token_auth=environ.get("TOKEN_AUTH", ""),
            auth_jwt_secret=environ.get("AUTH_JWT_SECRET") or None,
            auth_jwks_url=environ.get("AUTH_JWKS_URL") or None,
            auth_jwt_audience=environ.get("AUTH_JWT_AUDIENCE") or None,
            auth_jwt_issuer=environ.get("AUTH_JWT_ISSUER") or None,
            sync_api_token=environ.get("SYNC_API_TOKEN") or None,
            metrics_token=environ.get("METRICS_TOKEN") or None,
            token_ttl_seconds=number("TOKEN_TTL_SECONDS", 3600, int),
            cors_origins=_origins(environ.get("CORS_ORIGINS", "*"), problems),
            max_body_bytes=number("MAX_BODY_BYTES", 1024 * 1024, int),
            sync_state_ttl_seconds=number("SYNC_STATE_TTL_SECONDS", DEFAULT_TTL_SECONDS, int, strict=False),
            versions_keep_seconds=number("VERSIONS_KEEP_SECONDS", DEFAULT_KEEP_SECONDS, int),
            primary_sync_url=environ.get("PRIMARY_SYNC_URL") or None,
            primary_sync_timeout=number("PRIMARY_SYNC_TIMEOUT", 15.0, float),
            primary_sync_retry_schedule=_seconds_list(environ, "PRIMARY_SYNC_RETRY_SCHEDULE", problems),
            primary_sync_keep_days=number("PRIMARY_SYNC_KEEP_DAYS", 7, float),
            primary_sync_max_pending=number("PRIMARY_SYNC_MAX_PENDING", 100_000, int),
            primary_sync_threads=number("PRIMARY_SYNC_THREADS", 4, int, strict=False),
            webhook_db=environ.get("WEBHOOK_DB") or str(ROOT / "var" / "webhooks.sqlite3"),
            redis_url=environ.get("REDIS_URL") or None,
            primary_sync_secret=environ.get("PRIMARY_SYNC_SECRET") or None,
            webhook_allowed_ips=_networks(environ.get("WEBHOOK_ALLOWED_IPS", ""), problems),
            trusted_proxy_count=number("TRUSTED_PROXY_COUNT", 0, int, strict=False),
            log_level=(environ.get("LOG_LEVEL") or "INFO").upper(),
            log_format=(environ.get("LOG_FORMAT") or "text").lower(),
        )
        problems.extend(settings.problems(serving))
        if problems:
            raise SettingsError("; ".join(problems) + ". See .env.example for every setting.")
        return settings

    def problems(self, serving: bool = True) -> list[str]:
        """What is wrong in how the settings go together (for serving, or for a command)."""
        problems = self._auth_problems() + self._secret_problems() if serving else []
        problems += self._timing_problems() + self._store_problems()
        if self.log_level not in LOG_LEVELS:
            problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            problems.append(f"LOG_FORMAT must be text or json, not {self.log_format!r}")
        return problems

    def _auth_problems(self) -> list[str]:
        """TOKEN_AUTH, and what TOKEN_AUTH=jwt requires besides."""
        problems = []
        if self.token_auth not in ("open", "jwt"):
            problems.append(
                "TOKEN_AUTH must be set: 'jwt' (a token only for the user of the caller's "
                "own session JWT) or 'open' (a token for any user, to anyone: workshops only)"
            )
        if self.token_auth == "jwt":
            problems.extend(self._session_key_problems())
            if not self.sync_api_token:
                problems.append("SYNC_API_TOKEN must be set with TOKEN_AUTH=jwt: the sync routes must not be open")
            if not self.primary_sync_secret:
                problems.append(
                    "PRIMARY_SYNC_SECRET must be set with TOKEN_AUTH=jwt: the primary system "
                    "must be able to tell our hand-overs from anyone's POST"
                )
        return problems

    def _session_key_problems(self) -> list[str]:
        """With TOKEN_AUTH=jwt, how session JWTs are checked: one of AUTH_JWT_SECRET (the app
        signs its own) and AUTH_JWKS_URL (an identity provider signs them)."""
        if self.auth_jwt_secret and self.auth_jwks_url:
            return ["set AUTH_JWT_SECRET or AUTH_JWKS_URL, not both: session JWTs are checked one way"]
        if self.auth_jwks_url:
            if not _fetchable(self.auth_jwks_url):
                return [
                    "AUTH_JWKS_URL must be an https:// URL (http:// only on this machine: localhost, "
                    f"127.0.0.1, [::1]), not {self.auth_jwks_url!r}"
                ]
            return []
        if not self.auth_jwt_secret or len(self.auth_jwt_secret) < MIN_SECRET_LENGTH:
            return [
                f"AUTH_JWT_SECRET (at least {MIN_SECRET_LENGTH} characters: the key your app signs its session "
                "JWTs with, HS256) or AUTH_JWKS_URL (your identity provider's keys) must be set with TOKEN_AUTH=jwt"
            ]
        return []

    def _secret_problems(self) -> list[str]:
        """Shared secrets too short to be unguessable."""
        problems = []
        if self.primary_sync_secret and _sync_secret_bytes(self.primary_sync_secret) < MIN_SYNC_SECRET_BYTES:
            problems.append(
                f"PRIMARY_SYNC_SECRET must be 'whsec_' and the base64 of at least "
                f"{MIN_SYNC_SECRET_BYTES} random bytes (python3 -c 'import base64, secrets; "
                'print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())\')'
            )
        for name, token in (("SYNC_API_TOKEN", self.sync_api_token), ("METRICS_TOKEN", self.metrics_token)):
            if token and len(token) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{name} must be at least {MIN_SECRET_LENGTH} characters "
                    "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return problems

    def _timing_problems(self) -> list[str]:
        """Timeouts and the URL they apply to: each exchange must end inside the time its caller waits."""
        problems = []
        if self.stream_timeout and self.stream_timeout > MAX_STREAM_TIMEOUT_SECONDS:
            problems.append(
                f"STREAM_CHAT_TIMEOUT must be at most {MAX_STREAM_TIMEOUT_SECONDS} s, "
                "so that a sync ends inside gunicorn's 30 s worker timeout"
            )
        if self.primary_sync_url and not self.primary_sync_url.startswith(("http://", "https://")):
            problems.append("PRIMARY_SYNC_URL must be an http:// or https:// URL")
        # Standard Webhooks advises 15 to 30 s an attempt; a lane's lease (a minute) outlasts it.
        if self.primary_sync_timeout and self.primary_sync_timeout > MAX_PRIMARY_SYNC_TIMEOUT_SECONDS:
            problems.append(f"PRIMARY_SYNC_TIMEOUT must be at most {MAX_PRIMARY_SYNC_TIMEOUT_SECONDS} s an attempt")
        return problems

    def _store_problems(self) -> list[str]:
        """REDIS_URL, when set, must be a URL redis-py can use (whether Redis answers is for
        the start-up check and /readyz to say: it may come up after the service)."""
        if self.redis_url is None:
            return []
        parts = urllib.parse.urlsplit(self.redis_url)
        try:
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            return ["REDIS_URL has a port that is not a number"]
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            return ["REDIS_URL must be redis://host:6379/0 (rediss:// over TLS, unix:///path.sock for a socket)"]
        return []


def _number(
    environ: Mapping[str, str],
    problems: list[str],
    name: str,
    default: float,
    kind: type,
    minimum: float = 0,
    strict: bool = True,
) -> Any:
    """The setting `name` as a `kind` above `minimum` (or at it, when not `strict`); its
    problem is added to `problems`."""
    raw = environ.get(name) or str(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        adjective = "positive" if strict else "non-negative"
        problems.append(f"{name} must be a {adjective} {kind.__name__}, not {raw!r}")
    return value


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _networks(raw: str, problems: list[str]) -> Networks | None:
    """A comma-separated list of addresses and CIDR ranges (`203.0.113.7, 2001:db8::/32`), or
    None when it is empty: then any address may call."""
    networks = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as error:
            problems.append(f"WEBHOOK_ALLOWED_IPS: {error}")
    return tuple(networks) or None


def _seconds_list(environ: Mapping[str, str], name: str, problems: list[str]) -> tuple[float, ...] | None:
    """A comma-separated list of non-negative seconds (`1, 5, 30`), or None when unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        seconds = tuple(float(part) for part in raw.split(","))
    except ValueError:
        seconds = ()
    if not seconds or not all(math.isfinite(value) and value >= 0 for value in seconds):
        problems.append(
            f"{name} must be a comma-separated list of seconds between attempts, such as '5,60,300', not {raw!r}"
        )
        return None
    return seconds


def _fetchable(url: str) -> bool:
    """Whether keys can be fetched from `url` safely: over https://, or over http:// from this
    machine itself (a local identity provider, tools/identity_stand_in.py)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")


def _sync_secret_bytes(secret: str) -> int:
    """How many bytes a `whsec_<base64>` secret holds; 0 when it is not one."""
    if not secret.startswith("whsec_"):
        return 0
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except binascii.Error:
        return 0


def _origins(raw: str, problems: list[str]) -> str | tuple[str, ...]:
    """`*`, or a comma-separated list of origins such as `https://app.example.com` and
    `https://*.example.com` (origins.py); each entry that is neither is added to `problems`."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if entries in ([], ["*"]):
        return "*"
    if "*" in entries:
        problems.append("CORS_ORIGINS: '*' allows every origin, so it stands alone, not in a list")
    for entry in entries:
        if entry != "*" and (problem := origins.problem(entry)):
            problems.append(f"CORS_ORIGINS: {problem}")
    return tuple(entry.lower() for entry in entries)
