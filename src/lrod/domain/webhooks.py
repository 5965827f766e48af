"""Completion webhooks as plain rules: what a target URL may be, which
addresses a delivery may connect to, and when a failed delivery is tried
again. No I/O here."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from lrod.domain.errors import FieldViolation

MAX_URL_LENGTH = 2048

# Standard Webhooks' recommended schedule after the first attempt: 5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 10 h (eight attempts over about 27.6 hours).
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
# Each delay is drawn from [delay * (1 - JITTER), delay * (1 + JITTER)].
JITTER = 0.2

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Delivery:
    """The completion webhook of one operation (its outbox row)."""

    operation_id: str
    webhook_id: str
    url: str
    state: DeliveryState
    attempts: int
    next_attempt_time: datetime | None
    last_status: int | None = None
    last_error: str | None = None
    create_time: datetime | None = None
    end_time: datetime | None = None


def webhook_id(operation_id: str) -> str:
    """Stable across retries, so receivers can deduplicate."""
    return f"msg_{operation_id}"


@dataclass(frozen=True)
class AddressRules:
    """Which targets a webhook may reach. Loopback, private, link-local
    (cloud metadata such as 169.254.169.254), multicast, reserved and
    unspecified addresses are refused unless an allowed network holds the
    address or the host name is allowed by name."""

    allow_http: bool = False
    networks: tuple[IpNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, allow: Iterable[str], allow_http: bool = False) -> AddressRules:
        """`allow`: host names and addresses or networks (`127.0.0.1`,
        `10.0.0.0/8`, `::1`, `hooks.internal`). ValueError if malformed."""
        networks: list[IpNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if not _HOST_CHARS.issuperset(entry.lower()) or entry.startswith("."):
                    raise ValueError(f"not a host name, address or network: {entry!r}") from None
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_http, tuple(networks), frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def address_allowed(self, address: str | IpAddress, host: str = "") -> bool:
        """May a delivery to `host` connect to `address`?"""
        if host and self.host_allowed(host):
            return True
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.networks):
            return True
        return ip.is_global and not ip.is_multicast


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def url_violations(url: str, rules: AddressRules, field: str = "notification.url") -> list[str]:
    """Why `url` cannot be a webhook target (empty: it can). A host given as
    an address is checked here; a name is checked where it resolves, at each
    delivery (the address actually connected to)."""
    if len(url) > MAX_URL_LENGTH:
        return [f"at most {MAX_URL_LENGTH} characters"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ["must be an absolute http(s) URL"]
    del port
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.netloc.endswith(":"):
        return ["must be an absolute http(s) URL, e.g. https://hooks.example.com/lrod"]
    if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return ["must not contain spaces or control characters"]
    if parts.username is not None or parts.password is not None:
        return ["must not carry credentials"]
    if scheme == "http" and not rules.allow_http:
        return ["must use https (this server does not allow http targets)"]
    address = literal_address(parts.hostname)
    if address is not None and not rules.address_allowed(address):
        return ["must not be a loopback, private, link-local, multicast or reserved address"]
    return []


def target_violations(url: str, rules: AddressRules) -> list[FieldViolation]:
    return [
        FieldViolation("notification.url", problem, "INVALID_NOTIFICATION_URL")
        for problem in url_violations(url, rules)
    ]


@dataclass(frozen=True)
class Schedule:
    """The bounded retry schedule: `delays[n-1]` (with jitter) after the n-th
    failed attempt; after the last one the delivery is marked failed."""

    delays: Sequence[float] = DEFAULT_SCHEDULE
    jitter: float = JITTER

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Comma-separated seconds, e.g. `5,300,1800`."""
        delays = tuple(float(part) for part in text.split(",") if part.strip())
        if any(d < 0 for d in delays):
            raise ValueError("delays must not be negative")
        return cls(delays)

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def next_attempt(
        self, attempts: int, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """After `attempts` failed attempts: when to try again, or None
        (give up)."""
        if attempts > len(self.delays):
            return None
        delay = self.delays[attempts - 1]
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return now + timedelta(seconds=delay * spread)
