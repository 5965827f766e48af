"""With mTLS, the principal from the verified client certificate's
subjectAltName: its URI (a SPIFFE id, say) or its DNS name, as configured.
The TLS layer has already checked the chain against --tls-client-ca."""

from __future__ import annotations

from typing import Literal

from lrod.auth.credentials import Credentials, subject_alt_names
from lrod.auth.errors import credentials_rejected
from lrod.auth.principal import Principal

SanKind = Literal["uri", "dns"]


class CertificateAuthenticator:
    kind = "certificate"

    def __init__(self, san: SanKind = "uri") -> None:
        self.san = san

    def reload(self) -> None:
        """Nothing to re-read: the TLS layer reloads the CA."""

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        if credentials.peer_certificate is None:
            return None
        uris, names = subject_alt_names(credentials.peer_certificate)
        found = uris if self.san == "uri" else names
        if len(found) != 1:
            # None or several: which one is the caller would be a guess.
            raise credentials_rejected(
                f"client certificate has {len(found)} {self.san.upper()} SANs (need one)",
                "CERTIFICATE_NOT_MAPPED",
            )
        # Roles: by name, with --admin (the seam adds them).
        return Principal(found[0], frozenset(), via="certificate")
