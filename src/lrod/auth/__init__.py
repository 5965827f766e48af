"""Who is calling, for every transport: principals and roles, the
authenticators (token file, JWT against a JWKS, client certificates) and the
one seam that transports go through (lrod.auth.seam)."""

from lrod.auth.credentials import Credentials, bearer_token
from lrod.auth.principal import ADMIN, ANONYMOUS, Principal
from lrod.auth.seam import Authentication, Authenticator, authorize

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "Authentication",
    "Authenticator",
    "Credentials",
    "Principal",
    "authorize",
    "bearer_token",
]
