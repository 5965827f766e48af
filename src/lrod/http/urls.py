"""Absolute URLs for Location headers: under the configured public base URL,
or else built from the request, believing X-Forwarded-Proto and
X-Forwarded-Host only from configured trusted proxies."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from aiohttp import web

from lrod.settings import HttpSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A host, or host:port, as a Host header may carry it: nothing else is echoed.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def parse_networks(text: str) -> tuple[Network, ...]:
    """ "10.0.0.1, 192.168.0.0/16" as networks; ValueError names a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


@dataclass(frozen=True)
class PublicUrls:
    base: str | None
    proxies: tuple[Network, ...]
    read_timeout: float

    @classmethod
    def of(cls, settings: HttpSettings) -> PublicUrls:
        base = settings.public_url.rstrip("/") if settings.public_url else None
        return cls(base, parse_networks(settings.trusted_proxies), settings.read_timeout)

    def absolute(self, request: web.Request, path: str) -> str:
        if self.base is not None:
            return self.base + path
        scheme = "https" if request.secure else "http"
        host = request.headers.get("Host", "")
        if self._from_proxy(request):
            proto = _first(request.headers.get("X-Forwarded-Proto", "")).lower()
            if proto in ("http", "https"):
                scheme = proto
            forwarded = _first(request.headers.get("X-Forwarded-Host", ""))
            if forwarded:
                host = forwarded
        if not _HOST.fullmatch(host):
            host = _listening(request)
        return f"{scheme}://{host}{path}"

    def _from_proxy(self, request: web.Request) -> bool:
        if not self.proxies or not request.remote:
            return False
        try:
            peer = ipaddress.ip_address(request.remote)
        except ValueError:
            return False
        return any(peer in network for network in self.proxies)


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def _listening(request: web.Request) -> str:
    """The address the request came in on, when its Host cannot be used."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return "localhost"
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
