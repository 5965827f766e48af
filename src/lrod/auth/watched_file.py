"""A file re-read when it changes: its stat is checked at most once per
interval, and a new version that does not parse keeps the previous one."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from lrod.auth.errors import AuthConfigError

log = logging.getLogger("lrod.auth")

_T = TypeVar("_T")
CHECK_INTERVAL = 1.0


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


class WatchedFile(Generic[_T]):
    def __init__(
        self,
        path: str | os.PathLike[str],
        parse: Callable[[bytes], _T],
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self._parse = parse
        self._interval = check_interval
        self._lock = threading.Lock()
        try:
            self._signature = _signature(self.path)
            self._value = parse(self.path.read_bytes())
        except OSError as error:
            raise AuthConfigError(f"cannot read {self.path}: {error.strerror}") from None
        self._checked = time.monotonic()

    @property
    def value(self) -> _T:
        now = time.monotonic()
        if now - self._checked >= self._interval:
            self.reload_if_changed(now)
        return self._value

    def reload_if_changed(self, now: float | None = None, force: bool = False) -> bool:
        """Re-read the file if its stat changed (or `force`, for SIGHUP)."""
        with self._lock:
            self._checked = time.monotonic() if now is None else now
            try:
                signature = _signature(self.path)
                if signature == self._signature and not force:
                    return False
                value = self._parse(self.path.read_bytes())
            except (OSError, AuthConfigError) as error:
                log.error("keeping the previous %s: %s", self.path, error)
                return False
            self._signature, self._value = signature, value
        log.info("reloaded %s", self.path)
        return True
