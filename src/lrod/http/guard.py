"""What the HTTP door checks before any route runs: the Host header (against
DNS rebinding), the Content-Type of state-changing requests (a web page can
send a form or text/plain anywhere without asking, but not JSON), and who is
calling, through the one authentication seam (lrod.auth.seam).

For the console and any other route on this door: `principal_of(request)`
is the caller (set by `authenticate` below for every route).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from lrod.auth import audit
from lrod.auth.credentials import Credentials, bearer_token
from lrod.auth.errors import CredentialsRejected
from lrod.auth.principal import Principal
from lrod.auth.seam import Authentication, authorize
from lrod.domain.errors import ERROR_DOMAIN, LrodError, Unauthenticated
from lrod.http.errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL = web.RequestKey("principal", Principal)
AUTHENTICATION = web.AppKey("authentication", Authentication)
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset[str])

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST = "*"

# The RPC each route stands for (for authorization and audit lines).
ROUTE_RPC = {
    "submit": "Submit",
    "list_operations": "ListOperations",
    "get_operation": "GetOperation",
    "get_result": "GetOperation",
    "watch": "WatchOperation",
    "cancel": "CancelOperation",
    "wait": "WaitOperation",
    "delete": "DeleteOperation",
    "job_types": "ListJobTypes",
    "batch_submit": "BatchSubmit",
}


def principal_of(request: web.Request) -> Principal:
    """The caller of this request, as the seam authenticated it."""
    return request[PRINCIPAL]


def default_allowed_hosts(bind_host: str, configured: Iterable[str] = ()) -> frozenset[str]:
    """The names the Host header may carry: the configured ones, else the
    loopback names plus the address bound to (when it is one address)."""
    names = {n.strip().lower().strip("[]") for n in configured if n.strip()}
    if names:
        return frozenset(names)
    names = set(LOOPBACK_NAMES)
    host = bind_host.strip("[]").lower()
    if host and host not in ("0.0.0.0", "::"):
        names.add(host)
    return frozenset(names)


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, _port = header.partition(":")
    return name


def _refusal(status: int, code: str, reason: str, message: str) -> web.Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": code,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": ERROR_DOMAIN,
                }
            ],
        }
    }
    return web.json_response(body, status=status)


def _method(request: web.Request) -> str:
    handler = getattr(request.match_info, "handler", None)
    name = getattr(handler, "__name__", "")
    return ROUTE_RPC.get(name, f"{request.method} {request.path[:100]}")


def _is_api_route(request: web.Request) -> bool:
    """A route of the door's own app: not a 404/405, nor a sub-application's
    (the console), which checks its viewers itself."""
    if request.match_info.http_exception is not None:
        return False
    return len(request.match_info.apps) == 1


def _peer(request: web.Request) -> str:
    return str(request.remote or "")


@web.middleware
async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    allowed = request.app[ALLOWED_HOSTS]
    if ANY_HOST not in allowed and _host_name(request.host) not in allowed:
        audit.refused(
            LrodError("Host not allowed", reason="HOST_NOT_ALLOWED"),
            method=_method(request),
            peer=_peer(request),
            principal=None,
        )
        return _refusal(
            421, "INVALID_ARGUMENT", "HOST_NOT_ALLOWED", "This server does not answer to that Host."
        )
    return await handler(request)


@web.middleware
async def check_content_type(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (
        _is_api_route(request)
        and request.method not in SAFE_METHODS
        and request.content_type != "application/json"
    ):
        audit.refused(
            LrodError("Content-Type not JSON", reason="UNSUPPORTED_MEDIA_TYPE"),
            method=_method(request),
            peer=_peer(request),
            principal=None,
        )
        return _refusal(
            415,
            "INVALID_ARGUMENT",
            "UNSUPPORTED_MEDIA_TYPE",
            "State-changing requests must have Content-Type: application/json.",
        )
    return await handler(request)


def credentials_of(request: web.Request) -> Credentials:
    certificate = None
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None:
        certificate = ssl_object.getpeercert(binary_form=True)
    return Credentials(
        bearer_token(request.headers.get("Authorization")), certificate, _peer(request)
    )


async def authenticate_request(request: web.Request) -> Principal:
    """The seam for aiohttp: the request's Principal, or the refusal
    (Unauthenticated / PermissionDenied), audited."""
    method = _method(request)
    principal = None
    try:
        principal = await request.app[AUTHENTICATION].authenticate(credentials_of(request))
        authorize(principal, method)
    except LrodError as error:
        audit.refused(error, method=method, peer=_peer(request), principal=principal)
        raise
    return principal


def unauthenticated_response(error: Unauthenticated) -> web.Response:
    """401 with the WWW-Authenticate challenge (RFC 6750)."""
    response = error_response(error)
    challenge = 'Bearer realm="lrod"'
    if isinstance(error, CredentialsRejected):
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_api_route(request):
        # 404/405 answer as they are; the console checks its viewers itself
        # (with its sign-in form and CSRF tokens), through the same seam.
        return await handler(request)
    try:
        request[PRINCIPAL] = await authenticate_request(request)
    except Unauthenticated as error:
        return unauthenticated_response(error)
    return await handler(request)
