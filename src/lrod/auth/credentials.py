"""What a transport hands the authentication seam: the bearer token (if any),
the verified client certificate (if any) and the peer, nothing else."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509

BEARER = "bearer "


@dataclass(frozen=True)
class Credentials:
    # The bearer token of an `Authorization: Bearer ...` header, or None.
    token: str | None
    # The client certificate the TLS layer verified (DER), or None.
    peer_certificate: bytes | None
    # The peer's address, for audit lines only.
    peer: str

    def __repr__(self) -> str:
        # A token never reaches a log line or an error, repr included.
        token = "<hidden>" if self.token else None
        cert = "<certificate>" if self.peer_certificate else None
        return f"Credentials(token={token}, peer_certificate={cert}, peer={self.peer!r})"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an Authorization header value, '' for another scheme or
    an empty token (refused, never anonymous), None without a header."""
    if authorization is None:
        return None
    if authorization[: len(BEARER)].lower() != BEARER:
        return ""
    return authorization[len(BEARER) :].strip()


@functools.lru_cache(maxsize=1024)
def subject_alt_names(der: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The URI and DNS names of a certificate's subjectAltName (cached: a
    client presents the same certificate on every call)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return (), ()
    names = extension.value
    return (
        tuple(names.get_values_for_type(x509.UniformResourceIdentifier)),
        tuple(names.get_values_for_type(x509.DNSName)),
    )
