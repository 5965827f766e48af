"""The one authentication seam: every transport (gRPC, the HTTP door, the
console) turns its request into Credentials and asks this for the Principal.

With no authenticator configured every caller is ANONYMOUS (the zero-config
loopback default); otherwise a caller without credentials is refused
(CREDENTIALS_REQUIRED), and credentials that no authenticator accepts are
refused too (INVALID_CREDENTIALS and friends), never treated as anonymous.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Protocol

from lrod.auth.credentials import Credentials
from lrod.auth.errors import credentials_rejected, credentials_required, permission_denied
from lrod.auth.principal import ADMIN, ANONYMOUS, Principal

READONLY = "readonly"
# Calls that change state: refused (PERMISSION_DENIED) to a `readonly` principal.
CHANGING_METHODS = frozenset({"Submit", "BatchSubmit", "CancelOperation", "DeleteOperation"})


class Authenticator(Protocol):
    # "bearer" (judges tokens) or "certificate" (judges client certificates).
    kind: str

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        """The principal, or None when these credentials are not of this
        kind; raises Unauthenticated when they are but fail."""
        ...

    def reload(self) -> None:
        """Re-read the files behind it now (SIGHUP)."""
        ...


class Authentication:
    def __init__(
        self, authenticators: Sequence[Authenticator] = (), admins: Collection[str] = ()
    ) -> None:
        self.authenticators = tuple(authenticators)
        # Principals made admins by name, whatever authenticated them.
        self.admins = frozenset(admins)

    @property
    def required(self) -> bool:
        """False: every caller is ANONYMOUS (no authenticator configured)."""
        return bool(self.authenticators)

    def reload(self) -> None:
        for authenticator in self.authenticators:
            authenticator.reload()

    async def authenticate(self, credentials: Credentials) -> Principal:
        if not self.authenticators:
            return ANONYMOUS
        # A call that carries a token is judged by it alone (an unknown
        # token never falls back to the client certificate).
        bearer = credentials.token is not None
        if bearer or credentials.peer_certificate is not None:
            for authenticator in self.authenticators:
                if getattr(authenticator, "kind", "bearer") != (
                    "bearer" if bearer else "certificate"
                ):
                    continue
                principal = await authenticator.authenticate(credentials)
                if principal is not None:
                    if principal.name in self.admins and ADMIN not in principal.roles:
                        principal = replace(principal, roles=principal.roles | {ADMIN})
                    return principal
        if bearer:
            raise credentials_rejected("token not recognised")
        if credentials.peer_certificate is not None and self.certificates:
            raise credentials_rejected("client certificate not mapped", "CERTIFICATE_NOT_MAPPED")
        raise credentials_required()

    @property
    def certificates(self) -> bool:
        """Whether a client certificate can authenticate a caller."""
        return any(getattr(a, "kind", "bearer") == "certificate" for a in self.authenticators)


def authorize(principal: Principal, method: str) -> None:
    """What an authenticated caller may call: everything on its own
    operations, unless it is `readonly`."""
    if READONLY in principal.roles and method in CHANGING_METHODS:
        raise permission_denied(f"call {method} (the principal is read-only)")


ANONYMOUS_ONLY = Authentication()
