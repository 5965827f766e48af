"""Who is calling: a principal with roles. Plain data, no transport here."""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN = "admin"
ANONYMOUS_NAME = "anonymous"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `name` is also the owner of every operation
    it submits; `via` says how it was authenticated (for audit lines)."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    via: str = "anonymous"

    @property
    def owner(self) -> str:
        return self.name

    @property
    def is_admin(self) -> bool:
        """Operators: may read, list, wait on, watch and cancel every owner's
        operations (each such action is logged)."""
        return ADMIN in self.roles


# Every caller when authentication is off (loopback without configuration).
ANONYMOUS = Principal(ANONYMOUS_NAME)
