"""JWT bearer tokens (OIDC-style service tokens), verified with PyJWT against
a JWKS file or URL.

The rules: the token's `alg` must be one of an explicit list of asymmetric
algorithms (never `none`, never HMAC: a public key is never used as a shared
secret) and must fit its key's type; its `kid` must name a key of the set
(an unknown kid makes a URL set be fetched again, at most once per
`refetch_interval`, which is how a rotated key is picked up); `iss`, `aud`
and `exp` are required and checked, `nbf` when present, with a small leeway.
The principal is one claim (`sub` by default), its roles another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import jwt

from lrod.auth.credentials import Credentials
from lrod.auth.errors import AuthConfigError, credentials_rejected
from lrod.auth.principal import Principal
from lrod.auth.watched_file import WatchedFile

log = logging.getLogger("lrod.auth")

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
# Key type (JWK kty) each algorithm needs.
_KEY_TYPE = {alg: ("RSA" if alg[0] in "RP" else "EC") for alg in ASYMMETRIC} | {"EdDSA": "OKP"}
MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class JwtSettings:
    jwks: str  # a file path, or an http(s):// URL
    issuer: str
    audience: str
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    leeway_seconds: float = 30.0
    principal_claim: str = "sub"
    roles_claim: str = "roles"
    # A URL set is fetched again after this long, and on an unknown kid at
    # most once per refetch_interval.
    cache_seconds: float = 300.0
    refetch_interval: float = 30.0
    fetch_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise AuthConfigError("JWT: give at least one accepted algorithm")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC]
        if refused:
            raise AuthConfigError(
                f"JWT: {', '.join(refused)} not accepted: only asymmetric algorithms"
                f" ({', '.join(sorted(ASYMMETRIC))})"
            )
        if not self.issuer or not self.audience:
            raise AuthConfigError("JWT: an issuer and an audience are required")


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    key_type: str
    # The JWK's own `alg`, when it names one: then only that one fits.
    alg: str | None


def parse_jwks(data: bytes) -> dict[str, _Key]:
    """The set's asymmetric keys by kid; keys without a kid, symmetric keys
    and keys of unknown types are left out."""
    try:
        document = json.loads(data)
        raw_keys = document["keys"]
        assert isinstance(raw_keys, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise AuthConfigError("not a JWKS document ({'keys': [...]})") from None
    keys: dict[str, _Key] = {}
    for raw in raw_keys:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
            continue
        if raw.get("kty") not in ("RSA", "EC", "OKP") or raw.get("use", "sig") != "sig":
            continue
        try:
            alg = raw.get("alg") if isinstance(raw.get("alg"), str) else None
            keys[raw["kid"]] = _Key(jwt.PyJWK(raw), raw["kty"], alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            log.warning("JWKS: key %r is not usable; left out", raw["kid"])
    return keys


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class JwtAuthenticator:
    kind = "bearer"

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._url = settings.jwks if settings.jwks.startswith(("http://", "https://")) else None
        self._file = None if self._url else WatchedFile(settings.jwks, parse_jwks)
        self._keys: dict[str, _Key] = {}
        self._fetched = float("-inf")
        self._fetching: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Fetch a URL set once at start, so a wrong URL is seen at once."""
        if self._url is not None:
            await self._fetch()
            if not self._keys:
                raise AuthConfigError(f"JWKS {self._url}: no usable keys")

    def reload(self) -> None:
        if self._file is not None:
            self._file.reload_if_changed(force=True)
        else:
            self._fetched = float("-inf")

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        token = credentials.token
        if not token or not _looks_like_jwt(token):
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise credentials_rejected("JWT header does not decode", "INVALID_TOKEN") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise credentials_rejected(
                f"JWT algorithm {str(alg)[:20]!r} not accepted", "INVALID_TOKEN"
            )
        if not isinstance(kid, str):
            raise credentials_rejected("JWT without kid", "INVALID_TOKEN")
        key = await self._key(kid)
        if key is None:
            raise credentials_rejected(f"JWT kid {kid[:64]!r} unknown", "INVALID_TOKEN")
        if key.key_type != _KEY_TYPE[alg] or key.alg not in (None, alg):
            raise credentials_rejected(
                f"JWT algorithm {alg} does not fit key {kid[:64]!r}", "INVALID_TOKEN"
            )
        return self._verify(token, key.jwk, alg)

    def _verify(self, token: str, key: jwt.PyJWK, alg: str) -> Principal:
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise credentials_rejected(
                "JWT expired", "TOKEN_EXPIRED", "The token has expired."
            ) from None
        except jwt.ImmatureSignatureError:
            raise credentials_rejected(
                "JWT not yet valid", "TOKEN_NOT_YET_VALID", "The token is not valid yet."
            ) from None
        except jwt.InvalidIssuerError:
            raise credentials_rejected("JWT issuer wrong", "INVALID_TOKEN") from None
        except jwt.InvalidAudienceError:
            raise credentials_rejected("JWT audience wrong", "INVALID_TOKEN") from None
        except jwt.InvalidSignatureError:
            raise credentials_rejected("JWT signature wrong", "INVALID_TOKEN") from None
        except jwt.MissingRequiredClaimError as error:
            raise credentials_rejected(f"JWT without {error.claim}", "INVALID_TOKEN") from None
        except jwt.InvalidTokenError as error:
            raise credentials_rejected(
                f"JWT refused ({type(error).__name__})", "INVALID_TOKEN"
            ) from None
        name = claims.get(s.principal_claim)
        if not isinstance(name, str) or not name or len(name) > 255:
            raise credentials_rejected(f"JWT without a usable {s.principal_claim}", "INVALID_TOKEN")
        roles = claims.get(s.roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list):
            roles = []
        return Principal(name, frozenset(r for r in roles if isinstance(r, str)), via="jwt")

    async def _key(self, kid: str) -> _Key | None:
        if self._file is not None:
            return self._file.value.get(kid)
        age = time.monotonic() - self._fetched
        if age >= self.settings.cache_seconds or (
            kid not in self._keys and age >= self.settings.refetch_interval
        ):
            await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        """One fetch at a time; callers arriving meanwhile share it. A failed
        fetch keeps the keys there were."""
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch_once())
        fetching = self._fetching
        try:
            await asyncio.shield(fetching)
        finally:
            if self._fetching is fetching and fetching.done():
                self._fetching = None

    async def _fetch_once(self) -> None:
        assert self._url is not None
        self._fetched = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.settings.fetch_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._url) as response,
            ):
                response.raise_for_status()
                data = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(data) > MAX_JWKS_BYTES:
                raise AuthConfigError("larger than 1 MiB")
            self._keys = parse_jwks(data)
            log.info("fetched JWKS %s: %d keys", self._url, len(self._keys))
        except (aiohttp.ClientError, TimeoutError, AuthConfigError) as error:
            log.error(
                "fetching JWKS %s failed (%s); keeping %d keys",
                self._url,
                type(error).__name__,
                len(self._keys),
            )
