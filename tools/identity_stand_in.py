"""A local identity provider, for tests and demos only: it serves its public keys as a JWKS, as
Auth0, Firebase, Cognito or Clerk do, and mints session JWTs signed with them. It authenticates
nobody: anyone who asks gets a token for any user.

    .venv/bin/python tools/identity_stand_in.py --port 8766 --sub tommaso

serves `http://127.0.0.1:8766/.well-known/jwks.json` (AUTH_JWKS_URL) and prints a session JWT
for `tommaso`; `GET /token?sub=<user id>` mints another. Its keys (one RSA, one EC P-256) are
made at start and live in memory: a restart is a rotation. Tests drive `IdentityProvider`
directly: add and withdraw keys, sign with any of them, and take the provider down.
"""

import argparse
import json
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

JWKS_PATH = "/.well-known/jwks.json"


class IdentityProvider:
    """Signing keys by `kid`, the JWKS that publishes them, and tokens signed with them."""

    def __init__(self, issuer: str = "https://identity.stand-in.invalid/") -> None:
        self.issuer = issuer
        self.private_keys: dict[str, tuple[object, str]] = {}  # kid -> (private key, algorithm)
        self.withdrawn: dict[str, tuple[object, str]] = {}  # signed with, no longer published
        self.available = True  # False: the JWKS answers 503, as a provider having an outage
        self.fetches = 0  # how often the JWKS was fetched

    def add_key(self, kind: str = "RSA") -> str:
        """A new key, published from now on: "RSA" (RS256) or "EC" (ES256, P-256). Its kid."""
        kid = f"{kind.lower()}-{secrets.token_hex(4)}"
        if kind == "RSA":
            self.private_keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        else:
            self.private_keys[kid] = (ec.generate_private_key(ec.SECP256R1()), "ES256")
        return kid

    def withdraw(self, kid: str) -> None:
        """Stop publishing `kid` (tokens can still be signed with it, as a leaked key would)."""
        self.withdrawn[kid] = self.private_keys.pop(kid)

    def jwks(self) -> dict:
        keys = []
        for kid, (private_key, algorithm) in self.private_keys.items():
            exporter = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
            jwk = exporter.to_jwk(private_key.public_key(), as_dict=True)  # type: ignore[attr-defined]
            keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})
        return {"keys": keys}

    def public_key_pem(self, kid: str) -> bytes:
        """The public key of `kid` in PEM, as an attacker would find it in the JWKS."""
        from cryptography.hazmat.primitives import serialization

        private_key, _ = {**self.withdrawn, **self.private_keys}[kid]
        return private_key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def session_jwt(self, sub: str, kid: str | None = None, expires_in: int = 600, **claims) -> str:
        """A session JWT for `sub`, signed with `kid` (default: the first key published)."""
        kid = kid or next(iter(self.private_keys))
        private_key, algorithm = {**self.withdrawn, **self.private_keys}[kid]
        now = int(time.time())
        payload = {"sub": sub, "iss": self.issuer, "iat": now, "exp": now + expires_in, **claims}
        return jwt.encode(payload, private_key, algorithm=algorithm, headers={"kid": kid})  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: "IdentityServer"

    def do_GET(self) -> None:
        provider = self.server.provider
        url = urlsplit(self.path)
        if url.path == JWKS_PATH:
            provider.fetches += 1
            if not provider.available:
                self._send(503, {"error": "the identity provider is down"})
                return
            self._send(200, provider.jwks())
        elif url.path == "/token":
            sub = parse_qs(url.query).get("sub", ["tommaso"])[-1]
            self._send(200, {"token": provider.session_jwt(sub)})
        else:
            self._send(404, {"error": f"no {url.path} here"})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


class IdentityServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], provider: IdentityProvider) -> None:
        super().__init__(address, _Handler)
        self.provider = provider


@contextmanager
def serving(provider: IdentityProvider):
    """`provider` on a free loopback port, in a thread; yields its JWKS URL."""
    server = IdentityServer(("127.0.0.1", 0), provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{JWKS_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--sub", default="tommaso", help="the user of the session JWT printed at start")
    args = parser.parse_args()
    provider = IdentityProvider(issuer=f"http://127.0.0.1:{args.port}/")
    provider.add_key("RSA")
    provider.add_key("EC")
    server = IdentityServer(("127.0.0.1", args.port), provider)
    print(f"AUTH_JWKS_URL=http://127.0.0.1:{args.port}{JWKS_PATH}", file=sys.stderr)
    print(f"AUTH_JWT_ISSUER={provider.issuer}", file=sys.stderr)
    print(f"SESSION_JWT={provider.session_jwt(args.sub, expires_in=3600)}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
