"""Audit lines: one per refused call and one per admin action, on the
`lrod.audit` logger, with structured fields (never a token)."""

from __future__ import annotations

import logging

from lrod.auth.errors import CredentialsRejected
from lrod.auth.principal import Principal
from lrod.domain.errors import LrodError

log = logging.getLogger("lrod.audit")


def refused(error: LrodError, *, method: str, peer: str, principal: Principal | None) -> None:
    detail = error.detail if isinstance(error, CredentialsRejected) else error.message
    log.warning(
        "refused %s: %s",
        method,
        error.reason,
        extra={
            "audit": "refused",
            "method": method,
            "peer": peer,
            "principal": principal.name if principal is not None else None,
            "reason": error.reason,
            "detail": detail,
        },
    )


def admin_action(principal: Principal, action: str, target: str, owner: str | None = None) -> None:
    log.info(
        "admin %s %s %s",
        principal.name,
        action,
        target,
        extra={
            "audit": "admin",
            "principal": principal.name,
            "action": action,
            "target": target,
            "owner": owner,
        },
    )
