"""Who is looking at the console, in one place: the viewer of a request
(from a bearer token, or from the token a login form stored in the session
cookie), what the viewer may do, and CSRF tokens for its forms.

With authentication off every viewer is the anonymous owner the HTTP door
uses, and no one is an admin. Otherwise `access_for` checks each token
through the one authentication seam (lrod.auth.seam), as every transport
does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from lrod.auth.credentials import Credentials
from lrod.auth.principal import ADMIN, ANONYMOUS, Principal
from lrod.auth.seam import Authentication
from lrod.domain.errors import Unauthenticated

SESSION_COOKIE = "lrod_console_session"
CSRF_COOKIE = "lrod_console_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class Viewer:
    owner: str
    admin: bool = False
    # Signed in with a token (a logout button makes sense).
    signed_in: bool = False

    @property
    def caller(self) -> Principal:
        """What the manager's calls take to scope them to this viewer."""
        if not self.signed_in and not self.admin and self.owner == ANONYMOUS.name:
            return ANONYMOUS
        return Principal(self.owner, frozenset({ADMIN}) if self.admin else frozenset(), "console")


ANONYMOUS_VIEWER = Viewer(ANONYMOUS.name)

# A token to its viewer; None when no one has that token.
TokenCheck = Callable[[str], Awaitable[Viewer | None]]


def access_for(authentication: Authentication) -> Access | None:
    """The console's access through the seam; None (anonymous) when
    authentication is off."""
    if not authentication.required:
        return None

    async def check(token: str) -> Viewer | None:
        try:
            principal = await authentication.authenticate(Credentials(token, None, "console"))
        except Unauthenticated:
            return None
        return Viewer(principal.name, principal.is_admin, signed_in=True)

    return Access(check)


class NotSignedIn(Exception):
    """The console needs a token and the request has none (or a stale one)."""


class Access:
    def __init__(self, check: TokenCheck | None = None) -> None:
        self._check = check

    @property
    def login_required(self) -> bool:
        return self._check is not None

    async def viewer(self, request: web.Request) -> Viewer:
        if self._check is None:
            return ANONYMOUS_VIEWER
        token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
        if not token:
            raise NotSignedIn()
        viewer = await self._check(token)
        if viewer is None:
            raise NotSignedIn()
        return viewer

    async def sign_in(self, token: str) -> Viewer | None:
        if self._check is None or not token:
            return None
        return await self._check(token)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


# -- CSRF -------------------------------------------------------------------
# A random cookie (HttpOnly, SameSite=Strict) per browser, and in each form a
# token derived from it and from the session: a page on another site can
# neither read the cookie nor compute the token, and a token planted through
# a cookie of its own does not match the victim's session.


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
