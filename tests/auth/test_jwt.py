"""JWT bearer tokens against a JWKS file or URL (keys made here): each way a
token can be wrong is refused with UNAUTHENTICATED, and a rotated key is
picked up from the set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lrod.auth.credentials import Credentials
from lrod.auth.errors import AuthConfigError
from lrod.auth.jwt_tokens import JwtAuthenticator, JwtSettings
from lrod.domain.errors import Unauthenticated

ISSUER = "https://issuer.test"
AUDIENCE = "lrod"


class Key:
    def __init__(self, kid: str, kind: str = "rsa") -> None:
        self.kid = kid
        self.private: Any = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.alg = "RS256" if kind == "rsa" else "ES256"

    def jwk(self) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        )
        data = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self, claims: dict[str, Any] | None = None, kid: str | None = None, **extra: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-billing", "exp": now + 300, "iat": now}
        body.update(claims or {})
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = (
        b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


def _write_jwks(path: Path, *keys: Key) -> None:
    path.write_text(json.dumps({"keys": [k.jwk() for k in keys]}))


def _credentials(token: str) -> Credentials:
    return Credentials(token, None, "ipv4:127.0.0.1:1")


@pytest.fixture
def key() -> Key:
    return Key("k1")


@pytest.fixture
def jwks_file(tmp_path: Path, key: Key) -> Path:
    path = tmp_path / "jwks.json"
    _write_jwks(path, key, Key("k-ec", "ec"))
    return path


@pytest.fixture
def authenticator(jwks_file: Path) -> JwtAuthenticator:
    settings = JwtSettings(
        jwks=str(jwks_file),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=("RS256", "ES256"),
        leeway_seconds=5,
    )
    return JwtAuthenticator(settings)


async def _reason(authenticator: JwtAuthenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await authenticator.authenticate(_credentials(token))
    assert token not in refused.value.message
    return refused.value.reason


async def test_a_valid_token_names_the_principal_and_its_roles(
    authenticator: JwtAuthenticator, key: Key
) -> None:
    principal = await authenticator.authenticate(_credentials(key.sign(roles=["admin"])))
    assert principal is not None
    assert principal.name == "svc-billing"
    assert principal.is_admin
    ec_key = Key("k-ec", "ec")
    # Same kid, another EC key: its signature does not verify.
    assert await _reason(authenticator, ec_key.sign()) == "INVALID_TOKEN"


async def test_time_claims_are_checked_with_a_small_leeway(
    authenticator: JwtAuthenticator, key: Key
) -> None:
    now = int(time.time())
    assert await _reason(authenticator, key.sign(exp=now - 60)) == "TOKEN_EXPIRED"
    assert await _reason(authenticator, key.sign(nbf=now + 60)) == "TOKEN_NOT_YET_VALID"
    # Within the leeway (5 s): accepted.
    assert await authenticator.authenticate(_credentials(key.sign(exp=now - 2))) is not None
    assert await _reason(authenticator, key.sign(exp=None)) == "INVALID_TOKEN"


async def test_wrong_issuer_audience_signature_and_kid_are_refused(
    authenticator: JwtAuthenticator, key: Key
) -> None:
    assert await _reason(authenticator, key.sign(iss="https://elsewhere")) == "INVALID_TOKEN"
    assert await _reason(authenticator, key.sign(aud="another-service")) == "INVALID_TOKEN"
    impostor = Key("k1")  # the right kid, a key the set does not hold
    assert await _reason(authenticator, impostor.sign()) == "INVALID_TOKEN"
    assert await _reason(authenticator, Key("k-unknown").sign()) == "INVALID_TOKEN"


async def test_alg_none_and_hs256_with_the_public_key_are_refused(
    authenticator: JwtAuthenticator, key: Key
) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300}
    none_token = _unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, claims, None)
    assert await _reason(authenticator, none_token) == "INVALID_TOKEN"
    confused = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims, key.public_pem())
    assert await _reason(authenticator, confused) == "INVALID_TOKEN"
    # An RS256-declared key refuses an ES256 header even if the kid exists.
    wrong_family = _unsigned({"alg": "ES256", "typ": "JWT", "kid": "k1"}, claims, b"x")
    assert await _reason(authenticator, wrong_family) == "INVALID_TOKEN"


def test_symmetric_algorithms_and_none_cannot_be_configured(jwks_file: Path) -> None:
    for algorithms in (("HS256",), ("none",), ()):
        with pytest.raises(AuthConfigError):
            JwtSettings(
                jwks=str(jwks_file), issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms
            )


async def test_a_rotated_key_is_picked_up_from_the_jwks_file(jwks_file: Path, key: Key) -> None:
    settings = JwtSettings(jwks=str(jwks_file), issuer=ISSUER, audience=AUDIENCE)
    authenticator = JwtAuthenticator(settings)
    rotated = Key("k2")
    assert await _reason(authenticator, rotated.sign()) == "INVALID_TOKEN"
    _write_jwks(jwks_file, rotated)
    authenticator.reload()  # what SIGHUP does; without it the file's change is seen within 1 s
    assert await authenticator.authenticate(_credentials(rotated.sign())) is not None
    assert await _reason(authenticator, key.sign()) == "INVALID_TOKEN"


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    served: dict[str, Any] = {"keys": [], "fetches": 0}

    async def jwks(_request: web.Request) -> web.Response:
        served["fetches"] += 1
        return web.json_response({"keys": served["keys"]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/jwks.json", served
    finally:
        await runner.cleanup()


async def test_a_jwks_url_is_cached_and_fetched_again_for_an_unknown_kid(
    jwks_server: tuple[str, dict[str, Any]], key: Key
) -> None:
    url, served = jwks_server
    served["keys"] = [key.jwk()]
    authenticator = JwtAuthenticator(
        JwtSettings(jwks=url, issuer=ISSUER, audience=AUDIENCE, refetch_interval=0.0)
    )
    await authenticator.start()
    for _ in range(3):
        assert await authenticator.authenticate(_credentials(key.sign())) is not None
    assert served["fetches"] == 1  # cached
    rotated = Key("k2")
    served["keys"] = [rotated.jwk()]
    principal = await authenticator.authenticate(_credentials(rotated.sign()))
    assert principal is not None
    assert served["fetches"] == 2
