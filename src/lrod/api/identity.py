"""Who is calling, on gRPC: the authentication step of the servicer methods
(`CallGate.policy`, the AuthPolicy of lrod.api.calls: the one wrapper of
each method runs the step before the method) and `caller(context)`, which
the methods use to scope what they touch.

The caller is set once per call by the step, in a context variable: each
grpc.aio call runs in its own task, so the value never leaks from one call
to another. With authentication off there is no step at all and every
caller is ANONYMOUS (the zero-config loopback default)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import grpc

from lrod.auth import audit
from lrod.auth.credentials import Credentials, bearer_token
from lrod.auth.principal import ANONYMOUS, Principal
from lrod.auth.seam import ANONYMOUS_ONLY, Authentication, authorize
from lrod.domain.errors import LrodError

__all__ = ["ANONYMOUS", "CALLER", "CallGate", "Principal", "caller"]

CALLER: ContextVar[Principal] = ContextVar("lrod_caller", default=ANONYMOUS)

# The services whose methods authenticate; health and reflection stay open
# (probes, grpcurl).
AUTHENTICATED_SERVICES = ("/lrod.v1.JobService/", "/google.longrunning.Operations/")


def caller(context: grpc.aio.ServicerContext) -> Principal:
    return CALLER.get()


def _metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


class CallGate:
    """Authenticates and authorizes one call through the seam; refusals
    are audited (one line each, never the token)."""

    def __init__(self, authentication: Authentication = ANONYMOUS_ONLY) -> None:
        self.authentication = authentication
        self._certificates = authentication.certificates

    def policy(
        self, method: str
    ) -> Callable[[grpc.aio.ServicerContext], Awaitable[Principal]] | None:
        """The step for `method` ("/lrod.v1.JobService/Submit"), asked once
        per method at start-up; None: no step (open, or auth is off)."""
        if not self.authentication.required or not method.startswith(AUTHENTICATED_SERVICES):
            return None
        name = method.rsplit("/", 1)[-1]

        async def authenticate(context: grpc.aio.ServicerContext) -> Principal:
            return await self.admit(context, name)

        return authenticate

    def credentials(self, context: grpc.aio.ServicerContext) -> Credentials:
        certificate = None
        if self._certificates:
            pem = context.auth_context().get("x509_pem_cert")
            if pem:
                certificate = ssl.PEM_cert_to_DER_cert(pem[0].decode())
        return Credentials(
            bearer_token(_metadata_value(context, "authorization")), certificate, context.peer()
        )

    async def admit(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        principal = None
        try:
            principal = await self.authentication.authenticate(self.credentials(context))
            authorize(principal, method)
        except LrodError as error:
            audit.refused(error, method=method, peer=context.peer(), principal=principal)
            raise
        return principal
