"""The SSRF guard on the addresses a delivery connects to.

aiohttp connects to exactly the addresses its resolver returns (it never
resolves a name twice), so a resolver that drops refused addresses checks
the address actually connected to: a name that resolves to a public address
at Submit and to a private one at delivery (DNS rebinding) is refused.
Hosts given as addresses skip resolvers in aiohttp; `refused_reason` checks
them before the request."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from lrod.domain.webhooks import AddressRules, url_violations


class AddressRefused(OSError):
    """Every address of the target is one webhooks may not reach."""


class GuardedResolver(AbstractResolver):
    def __init__(self, rules: AddressRules, inner: AbstractResolver | None = None) -> None:
        self._rules = rules
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self._rules.address_allowed(r["host"], host)]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to addresses webhooks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def refused_reason(url: str, rules: AddressRules) -> str | None:
    """Checked again at each delivery (the rules may have changed since the
    Submit): a malformed or disallowed URL, or an address literal refused."""
    problems = url_violations(url, rules)
    return problems[0] if problems else None
