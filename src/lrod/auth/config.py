"""The security settings of a server process and what they build: the
authentication seam and the TLS files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from lrod.auth.errors import AuthConfigError
from lrod.auth.jwt_tokens import JwtAuthenticator, JwtSettings
from lrod.auth.mtls import CertificateAuthenticator, SanKind
from lrod.auth.seam import Authentication, Authenticator
from lrod.auth.tokens import TokenFileAuthenticator
from lrod.listen import check_listeners
from lrod.settings import SecuritySettings, Settings
from lrod.tls import ServerTls, TlsSettings


@dataclass(frozen=True)
class AuthSettings:
    token_file: Path | None = None
    jwt: JwtSettings | None = None
    # With mTLS: take the principal from the client certificate's URI or DNS SAN.
    client_certificates: SanKind | None = None
    # Principals made admins by name (token files and JWT roles can say so too).
    admins: Sequence[str] = ()
    tls: TlsSettings | None = None
    # Serve a non-loopback address without authentication, on purpose.
    allow_unauthenticated: bool = False
    # Names the HTTP door's Host header may carry (empty: loopback names
    # and the bound address; "*": any).
    http_allowed_hosts: Sequence[str] = field(default_factory=tuple)

    @property
    def authenticates(self) -> bool:
        return bool(self.token_file or self.jwt or self.client_certificates)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def auth_settings(flags: SecuritySettings) -> AuthSettings:
    """The flags checked and turned into what the server uses."""
    tls = None
    if flags.tls_cert or flags.tls_key:
        if not (flags.tls_cert and flags.tls_key):
            raise AuthConfigError("--tls-cert and --tls-key go together")
        tls = TlsSettings(
            Path(flags.tls_cert),
            Path(flags.tls_key),
            Path(flags.tls_client_ca) if flags.tls_client_ca else None,
        )
    elif flags.tls_client_ca:
        raise AuthConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    jwt = None
    if flags.auth_jwks:
        if not (flags.auth_jwt_issuer and flags.auth_jwt_audience):
            raise AuthConfigError("--auth-jwks needs --jwt-issuer and --jwt-audience")
        jwt = JwtSettings(
            jwks=flags.auth_jwks,
            issuer=flags.auth_jwt_issuer,
            audience=flags.auth_jwt_audience,
            algorithms=_names(flags.auth_jwt_algorithms),
            leeway_seconds=flags.auth_jwt_leeway,
            principal_claim=flags.auth_jwt_principal_claim,
            roles_claim=flags.auth_jwt_roles_claim,
        )
    san = flags.auth_client_san
    if san is not None and san not in ("uri", "dns"):
        raise AuthConfigError("--auth-client-san takes `uri` or `dns`")
    if san is not None and (tls is None or not tls.mutual):
        raise AuthConfigError("--auth-client-san needs --tls-client-ca")
    return AuthSettings(
        token_file=Path(flags.auth_token_file) if flags.auth_token_file else None,
        jwt=jwt,
        client_certificates=cast(SanKind | None, san),
        admins=_names(flags.admins),
        tls=tls,
        allow_unauthenticated=flags.allow_unauthenticated,
        http_allowed_hosts=_names(flags.http_allowed_hosts),
    )


def build_authentication(settings: AuthSettings) -> tuple[Authentication, list[JwtAuthenticator]]:
    """The seam, and the JWT authenticators whose start() fetches their JWKS."""
    authenticators: list[Authenticator] = []
    jwts: list[JwtAuthenticator] = []
    if settings.token_file is not None:
        authenticators.append(TokenFileAuthenticator(settings.token_file))
    if settings.jwt is not None:
        jwt = JwtAuthenticator(settings.jwt)
        jwts.append(jwt)
        authenticators.append(jwt)
    if settings.client_certificates is not None:
        authenticators.append(CertificateAuthenticator(settings.client_certificates))
    return Authentication(authenticators, admins=settings.admins), jwts


def check_settings_listeners(
    settings: Settings, authentication: Authentication, warn: bool = True
) -> None:
    listeners = {}
    if settings.serve_api:
        listeners["gRPC"] = settings.address
        if settings.http_address is not None:
            listeners["HTTP"] = settings.http_address
    # Not the metrics listener: it serves counts by job type, no operation
    # and nothing a caller can change (docs/security.md).
    check_listeners(
        listeners, authentication.required, settings.security.allow_unauthenticated, warn
    )


def check_security(settings: Settings) -> None:
    """What Service.start checks first (the flags fit together, the files
    load, the safe default holds), for `serve --processes` to check once
    before it starts any process. Raises AuthConfigError."""
    authentication, _ = build_authentication(auth_settings(settings.security))
    check_settings_listeners(settings, authentication, warn=False)
    tls = auth_settings(settings.security).tls
    if tls is not None:
        ServerTls(tls)
