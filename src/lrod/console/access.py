"""Who is looking at the console, in one place: the viewer of a request,
through the same authentication seam as gRPC and the HTTP door
(lrod.auth.seam), and CSRF tokens for its forms.

A browser authenticates with the bearer token a login form stored in the
session cookie (HttpOnly, SameSite=Strict, re-checked on every request, so a
token removed from the token file stops working at once), or with an
`Authorization: Bearer` header, or with its TLS client certificate. With
authentication off every viewer is the anonymous owner, as on the HTTP door.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from aiohttp import web

from lrod.auth import audit
from lrod.auth.credentials import Credentials
from lrod.auth.principal import ANONYMOUS, Principal
from lrod.auth.seam import ANONYMOUS_ONLY, Authentication, authorize
from lrod.domain.errors import Unauthenticated
from lrod.http.guard import credentials_of

SESSION_COOKIE = "lrod_console_session"
CSRF_COOKIE = "lrod_console_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    # Signed in through the login form (a sign-out button makes sense).
    signed_in: bool = False

    @property
    def owner(self) -> str:
        return self.principal.owner

    @property
    def admin(self) -> bool:
        return self.principal.is_admin

    @property
    def caller(self) -> Principal:
        """What the manager's calls take to scope them to this viewer."""
        return self.principal


ANONYMOUS_VIEWER = Viewer(ANONYMOUS)


class NotSignedIn(Exception):
    """The console needs credentials and the request has none (or stale ones)."""


class Access:
    def __init__(self, authentication: Authentication = ANONYMOUS_ONLY) -> None:
        self.authentication = authentication

    @property
    def login_required(self) -> bool:
        return self.authentication.required

    async def viewer(self, request: web.Request) -> Viewer:
        if not self.authentication.required:
            return ANONYMOUS_VIEWER
        credentials = credentials_of(request)
        session = request.cookies.get(SESSION_COOKIE)
        from_cookie = credentials.token is None and bool(session)
        if from_cookie:
            credentials = replace(credentials, token=session)
        if credentials.token is None and credentials.peer_certificate is None:
            raise NotSignedIn()
        try:
            principal = await self.authentication.authenticate(credentials)
        except Unauthenticated as error:
            audit.refused(error, method="console", peer=credentials.peer, principal=None)
            raise NotSignedIn() from None
        return Viewer(principal, signed_in=from_cookie)

    async def sign_in(self, request: web.Request, token: str) -> Viewer | None:
        if not self.authentication.required or not token:
            return None
        credentials = Credentials(token, None, str(request.remote or ""))
        try:
            principal = await self.authentication.authenticate(credentials)
        except Unauthenticated as error:
            audit.refused(error, method="console login", peer=credentials.peer, principal=None)
            return None
        return Viewer(principal, signed_in=True)


def access_for(authentication: Authentication) -> Access:
    """The console's access through the one seam (anonymous when off)."""
    return Access(authentication)


def allow(viewer: Viewer, rpc: str) -> None:
    """Refuse (PermissionDenied) what the viewer's roles do not allow, by the
    RPC the action stands for (a `readonly` principal may not cancel)."""
    authorize(viewer.principal, rpc)


# -- CSRF -------------------------------------------------------------------
# A random cookie (HttpOnly, SameSite=Strict) per browser, and in each form a
# token derived from it and from the session: a page on another site can
# neither read the cookie nor compute the token, and a token planted through
# a cookie of its own does not match the victim's session. Form posts whose
# Origin or Sec-Fetch-Site says "another site" are refused as well.


def csrf_secret(request: web.Request) -> tuple[str, bool]:
    """The browser's CSRF cookie value, and whether it is new (to be set)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) == 43:
        return current, False
    return secrets.token_urlsafe(32), True


def csrf_token(secret: str, request: web.Request) -> str:
    session = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(secret.encode(), session.encode(), hashlib.sha256).hexdigest()


def csrf_valid(request: web.Request, submitted: str) -> bool:
    secret = request.cookies.get(CSRF_COOKIE, "")
    if not secret or not submitted:
        return False
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return False
    return hmac.compare_digest(csrf_token(secret, request), submitted)


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
