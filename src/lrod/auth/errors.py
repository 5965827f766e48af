"""The refusals of the authentication seam. Their messages are fixed texts:
never the token, never a library's exception text."""

from __future__ import annotations

from lrod.domain.errors import PermissionDenied, Unauthenticated
from lrod.settings import ConfigurationError


class AuthConfigError(ConfigurationError, ValueError):
    """A token file, JWKS or TLS file that cannot be used (at start: the
    server refuses to start; on a reload: the old one is kept)."""


def credentials_required() -> Unauthenticated:
    return Unauthenticated(
        "This server requires credentials: send `authorization: Bearer TOKEN`"
        " or a client certificate.",
        reason="CREDENTIALS_REQUIRED",
    )


class CredentialsRejected(Unauthenticated):
    """Credentials that were presented and failed. `detail` says why, for
    the audit line only (the caller gets the fixed message and reason)."""

    def __init__(self, reason: str, detail: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.detail = detail


def credentials_rejected(
    detail: str, reason: str = "INVALID_CREDENTIALS", message: str = ""
) -> CredentialsRejected:
    return CredentialsRejected(reason, detail, message or "The credentials were not accepted.")


def permission_denied(what: str) -> PermissionDenied:
    return PermissionDenied(f"The caller may not {what}.", reason="PERMISSION_DENIED")
