"""Bearer tokens from a file: each entry names a principal, the SHA-256 of
its token and its roles. Only hashes are stored; a presented token is hashed
and the digests compared in constant time. The file is re-read on change.

    [[principal]]
    name = "billing"
    token_sha256 = "9f86d08..."
    roles = ["admin"]

Several entries may share a name (one per token): that is how a token is
rotated without a gap. Tokens are random (`lrod token new`), so one SHA-256
suffices; a slow password hash would only slow every call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from dataclasses import dataclass

from lrod.auth.credentials import Credentials
from lrod.auth.errors import AuthConfigError
from lrod.auth.principal import Principal
from lrod.auth.watched_file import WatchedFile

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}")
TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "lrod_" + secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def parse_token_file(data: bytes) -> dict[bytes, _Entry]:
    try:
        document = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AuthConfigError(f"not a TOML token file: {error}") from None
    entries = document.get("principal", [])
    if not isinstance(entries, list):
        raise AuthConfigError("`principal` must be an array of tables ([[principal]])")
    table: dict[bytes, _Entry] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise AuthConfigError(f"principal #{number} is not a table")
        name, digest, roles = entry.get("name"), entry.get("token_sha256"), entry.get("roles", [])
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AuthConfigError(f"principal #{number}: `name` must be 1-255 plain characters")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise AuthConfigError(f"principal {name!r}: `token_sha256` must be 64 hex digits")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthConfigError(f"principal {name!r}: `roles` must be a list of strings")
        raw = bytes.fromhex(digest)
        if raw in table:
            raise AuthConfigError(f"principal {name!r}: this token hash is listed twice")
        table[raw] = _Entry(raw, Principal(name, frozenset(roles), via="token"))
    return table


class TokenFileAuthenticator:
    """Recognises tokens listed in the file; other tokens are not its own
    (None), so a JWT authenticator may try them."""

    kind = "bearer"

    def __init__(self, path: str | os.PathLike[str], check_interval: float = 1.0) -> None:
        self._file = WatchedFile(path, parse_token_file, check_interval)

    def reload(self) -> None:
        self._file.reload_if_changed(force=True)

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        if not credentials.token:
            return None
        digest = hashlib.sha256(credentials.token.encode()).digest()
        # The dict finds the entry by the digest (so its timing says
        # something about the hash only, never the token); the comparison
        # itself is constant time.
        entry = self._file.value.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry.principal
