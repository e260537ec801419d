"""TOKEN_AUTH=jwt with AUTH_JWKS_URL: session JWTs signed by an identity provider (RS256,
ES256), checked against its keys as a real local JWKS server serves them
(tools/identity_stand_in.py, in a thread)."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from app import create_app
from stream_backend.errors import SettingsError
from stream_backend.web.jwks import ProviderKeys, ProviderUnreachable

from identity_stand_in import IdentityProvider, serving
from live import free_port
from support.examples import API_SECRET, PRIMARY_SYNC_SECRET

ISSUER = "https://identity.stand-in.invalid/"


@pytest.fixture
def provider():
    provider = IdentityProvider(ISSUER)
    provider.add_key("RSA")
    provider.add_key("EC")
    return provider


@pytest.fixture
def jwks_url(provider):
    with serving(provider) as url:
        yield url


@pytest.fixture
def jwks_environ(environ, jwks_url):
    return {
        **environ,
        "TOKEN_AUTH": "jwt",
        "AUTH_JWKS_URL": jwks_url,
        "AUTH_JWT_ISSUER": ISSUER,
        "SYNC_API_TOKEN": "sync-api-token-" + "t" * 32,
        "PRIMARY_SYNC_SECRET": PRIMARY_SYNC_SECRET,
    }


@pytest.fixture
def jwks_client(jwks_environ):
    return create_app(jwks_environ).test_client()


def token_for(client, session_jwt, body=None):
    return client.post("/generate-token", json=body or {}, headers={"Authorization": f"Bearer {session_jwt}"})


def issued_user(response):
    return jwt.decode(response.get_json()["token"], API_SECRET, algorithms=["HS256"])["user_id"]


def unsigned(header, claims):
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode(header)}.{encode(claims)}"


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_a_session_jwt_signed_by_the_providers_key_gets_a_token_for_its_sub(jwks_client, provider, kind):
    kid = next(kid for kid in provider.private_keys if kid.startswith(kind.lower()))

    response = token_for(jwks_client, provider.session_jwt("tommaso", kid=kid))

    assert response.status_code == 200, response.get_json()
    assert issued_user(response) == "tommaso"


def test_a_session_jwt_signed_by_another_key_is_a_401(jwks_client, provider):
    impostor = IdentityProvider(ISSUER)
    kid = impostor.add_key("RSA")
    published_kid = next(iter(provider.private_keys))
    # Another key, under the kid the provider publishes: the signature does not verify.
    forged = jwt.encode(
        {"sub": "tommaso", "iss": ISSUER, "exp": int(time.time()) + 600},
        impostor.private_keys[kid][0],
        algorithm="RS256",
        headers={"kid": published_kid},
    )

    response = token_for(jwks_client, forged)

    assert response.status_code == 401
    assert "not valid" in response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_a_kid_the_provider_does_not_publish_is_a_401(jwks_client):
    impostor = IdentityProvider(ISSUER)
    impostor.add_key("EC")

    response = token_for(jwks_client, impostor.session_jwt("tommaso"))

    assert response.status_code == 401
    assert "Unable to find a signing key" in response.get_json()["error"]


def test_a_rotated_key_is_fetched_when_a_token_first_names_its_kid(jwks_environ, provider):
    client = create_app(jwks_environ).test_client()
    client.application.extensions["session_keys"].cooldown_duration = 0  # the rotation comes at once here
    assert token_for(client, provider.session_jwt("tommaso")).status_code == 200
    fetches = provider.fetches

    new_kid = provider.add_key("EC")
    response = token_for(client, provider.session_jwt("tommaso", kid=new_kid))

    assert response.status_code == 200
    assert provider.fetches == fetches + 1  # one fetch, for the kid it did not hold
    assert token_for(client, provider.session_jwt("thierry", kid=new_kid)).status_code == 200
    assert provider.fetches == fetches + 1  # held since


def test_the_keys_are_fetched_once_for_many_tokens(jwks_client, provider):
    for user in ("tommaso", "thierry", "ana"):
        assert token_for(jwks_client, provider.session_jwt(user)).status_code == 200

    assert provider.fetches == 1


def test_made_up_kids_do_not_make_the_service_hammer_the_provider(jwks_client, provider):
    impostor = IdentityProvider(ISSUER)
    for _ in range(5):
        impostor.add_key("EC")
    token_for(jwks_client, provider.session_jwt("tommaso"))

    forged = [impostor.session_jwt("tommaso", kid=kid) for kid in impostor.private_keys]
    answers = [token_for(jwks_client, session_jwt).status_code for session_jwt in forged]

    assert answers == [401] * 5
    assert provider.fetches == 1  # within the cooldown, no fetch for an unknown kid


def test_a_key_the_provider_withdrew_stops_verifying_once_the_keys_are_fetched_again(jwks_environ, provider):
    client = create_app(jwks_environ).test_client()
    kid = next(iter(provider.private_keys))
    assert token_for(client, provider.session_jwt("tommaso", kid=kid)).status_code == 200

    provider.withdraw(kid)
    keys = client.application.extensions["session_keys"]
    keys.jwk_set_cache.lifespan = 0.001  # the lifespan passes
    time.sleep(0.01)

    assert token_for(client, provider.session_jwt("tommaso", kid=kid)).status_code == 401


def test_hs256_signed_with_the_providers_public_key_is_a_401(jwks_client, provider):
    """The algorithm comes from the key (RS256), never from the token's header."""
    kid = next(kid for kid in provider.private_keys if kid.startswith("rsa"))
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    claims = {"sub": "tommaso", "iss": ISSUER, "exp": int(time.time()) + 600}
    signing_input = unsigned(header, claims)
    signature = hmac.new(provider.public_key_pem(kid), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    response = token_for(jwks_client, forged)

    assert response.status_code == 401
    assert "alg" in response.get_json()["error"]


def test_an_unsigned_alg_none_token_is_a_401(jwks_client, provider):
    kid = next(iter(provider.private_keys))
    forged = unsigned({"alg": "none", "kid": kid}, {"sub": "tommaso", "iss": ISSUER, "exp": int(time.time()) + 600})

    response = token_for(jwks_client, forged + ".")

    assert response.status_code == 401


def test_a_symmetric_key_in_the_providers_set_is_never_used(environ, jwks_environ, provider):
    secret = "a-shared-secret-in-a-public-key-set-" + "x" * 16
    provider.jwks = lambda: {  # a provider that (wrongly) publishes an HMAC key
        "keys": [{"kty": "oct", "kid": "oct-1", "k": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")}]
    }
    client = create_app(jwks_environ).test_client()
    claims = {"sub": "tommaso", "iss": ISSUER, "exp": int(time.time()) + 600}
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "oct-1"})

    response = token_for(client, forged)

    assert response.status_code == 401
    assert "not a public key" in response.get_json()["error"]


def test_the_issuer_audience_and_expiry_are_checked(jwks_environ, provider):
    client = create_app({**jwks_environ, "AUTH_JWT_AUDIENCE": "chat-app"}).test_client()

    assert token_for(client, provider.session_jwt("tommaso", aud="chat-app")).status_code == 200
    assert token_for(client, provider.session_jwt("tommaso", aud="billing")).status_code == 401
    another_issuer = provider.session_jwt("tommaso", aud="chat-app", iss="https://evil.example/")
    assert token_for(client, another_issuer).status_code == 401
    assert token_for(client, provider.session_jwt("tommaso", aud="chat-app", expires_in=-60)).status_code == 401


def test_a_body_user_id_other_than_the_sub_is_a_403(jwks_client, provider):
    response = token_for(jwks_client, provider.session_jwt("tommaso"), {"user_id": "thierry"})

    assert response.status_code == 403


def test_a_provider_that_cannot_be_reached_is_a_clear_401(jwks_environ, provider):
    client = create_app({**jwks_environ, "AUTH_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json"}).test_client()

    response = token_for(client, provider.session_jwt("tommaso"))

    assert response.status_code == 401
    assert response.get_json() == {
        "error": "The session JWT could not be checked: the identity provider's keys (AUTH_JWKS_URL) are out of reach."
    }


def test_a_provider_that_is_down_is_asked_once_then_left_alone_for_a_pause(jwks_environ, provider):
    provider.available = False
    client = create_app(jwks_environ).test_client()

    answers = [token_for(client, provider.session_jwt("tommaso")).status_code for _ in range(3)]

    assert answers == [401, 401, 401]
    assert provider.fetches == 1  # the others fail at once, without waiting on the provider


def test_keys_fetched_before_an_outage_keep_verifying_through_it(jwks_environ, provider):
    client = create_app(jwks_environ).test_client()
    assert token_for(client, provider.session_jwt("tommaso")).status_code == 200
    keys = client.application.extensions["session_keys"]
    keys.jwk_set_cache.lifespan = 0.001  # the keys' lifespan passes while the provider is down
    time.sleep(0.01)
    provider.available = False

    response = token_for(client, provider.session_jwt("thierry"))

    assert response.status_code == 200
    assert provider.fetches == 2  # it was asked, and the last good keys answered


def test_a_fetch_that_hangs_is_bounded_by_its_timeout():
    import socket

    with socket.socket() as listener:  # accepts, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        keys = ProviderKeys(f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json", timeout=0.3)
        token = jwt.encode({"sub": "tommaso"}, "k" * 32, algorithm="HS256", headers={"kid": "any"})
        started = time.monotonic()

        with pytest.raises(ProviderUnreachable):
            keys.signing_key(token)

    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "change, says",
    [
        ({"AUTH_JWKS_URL": "http://idp.example.com/jwks.json"}, "AUTH_JWKS_URL must be an https:// URL"),
        ({"AUTH_JWKS_URL": "file:///etc/passwd"}, "AUTH_JWKS_URL must be an https:// URL"),
        ({"AUTH_JWT_SECRET": "k" * 32}, "not both"),
        ({"AUTH_JWKS_URL": ""}, "AUTH_JWT_SECRET (at least 32 characters"),
    ],
)
def test_the_jwks_settings_are_checked_at_start_up(jwks_environ, change, says):
    with pytest.raises(SettingsError) as refused:
        create_app({**jwks_environ, **change})

    assert says in str(refused.value)
