"""Listen addresses, and the safe default: a listener on an address other
than loopback serves only with authentication, unless the operator said so
on purpose (--insecure). An address with no host (`8080`,
`:8080`) means loopback, never every interface: all interfaces are asked
for by name (`0.0.0.0:8080`, `[::]:8080`)."""

from __future__ import annotations

import ipaddress
import logging

from lrod.auth.errors import AuthConfigError

log = logging.getLogger("lrod")

LOOPBACK = "127.0.0.1"


class UnsafeListener(AuthConfigError):
    """A non-loopback listener without authentication, not allowed."""


def split_address(address: str) -> tuple[str, int]:
    """(host, port); a missing host is loopback. Raises ValueError."""
    text = address.strip()
    if text.isdigit():
        host, port = "", text
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{address!r} is not host:port")
    host = host.strip("[]") or LOOPBACK
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r}: the port must be 0-65535")
    return host, int(port)


def grpc_address(address: str) -> str:
    """The address in grpc's spelling, with the loopback default applied."""
    host, port = split_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listeners(
    listeners: dict[str, str],
    authenticated: bool,
    allow_unauthenticated: bool,
    warn: bool = True,
) -> None:
    """Refuse (or, when allowed on purpose, warn about) every listener that
    is reachable beyond this machine and serves without authentication."""
    if authenticated:
        return
    exposed = [
        f"{what} {address}"
        for what, address in listeners.items()
        if not is_loopback(split_address(address)[0])
    ]
    if not exposed:
        return
    if not allow_unauthenticated:
        raise UnsafeListener(
            f"refusing to serve {', '.join(exposed)} without authentication: configure"
            " --auth-token-file, --auth-jwks or --auth-client-san, bind 127.0.0.1,"
            " or pass --insecure to serve anyone who can reach the port"
        )
    if not warn:
        return
    log.warning(
        "serving without authentication on %s: anyone who can reach it may submit,"
        " read and cancel every operation",
        ", ".join(exposed),
        extra={"audit": "unauthenticated_listener"},
    )
