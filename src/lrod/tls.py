"""TLS for the listeners: a certificate and key, and with a client CA,
client certificates required and verified (mTLS). The files are re-read
when they change (checked every second) or on SIGHUP, without a restart:

- gRPC: grpc's dynamic server credentials ask `_fetch` at each new
  handshake and get the new configuration once the files changed;
- HTTP: each handshake's SNI callback hands the connection the newest
  SSLContext (the callback runs for every ClientHello, SNI or not).

A new set of files that does not load keeps the previous one (logged).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from lrod.auth.errors import AuthConfigError

log = logging.getLogger("lrod.tls")

CHECK_INTERVAL = 1.0


class TlsConfigError(AuthConfigError):
    pass


@dataclass(frozen=True)
class TlsSettings:
    cert: Path
    key: Path
    # With a client CA, client certificates are required and checked.
    client_ca: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def files(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


@dataclass(frozen=True)
class _Loaded:
    key: bytes
    chain: bytes
    client_ca: bytes | None
    context: ssl.SSLContext
    signature: tuple[tuple[int, int, int], ...]


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        st = path.stat()
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class ServerTls:
    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        try:
            self._loaded = self._load()
        except (OSError, ssl.SSLError, ValueError) as error:
            raise TlsConfigError(f"TLS files do not load: {error}") from None
        self._served: _Loaded | None = None
        self._task: asyncio.Task[None] | None = None
        self.generation = 0

    def _load(self) -> _Loaded:
        s = self.settings
        signature = _signature(s.files())
        key, chain = s.key.read_bytes(), s.cert.read_bytes()
        client_ca = s.client_ca.read_bytes() if s.client_ca else None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(s.cert, s.key)
        if client_ca is not None:
            context.load_verify_locations(cadata=client_ca.decode())
            context.verify_mode = ssl.CERT_REQUIRED
        return _Loaded(key, chain, client_ca, context, signature)

    # -- reloading ----------------------------------------------------------
    def reload(self, force: bool = False) -> bool:
        """Re-read the files if they changed (or `force`); True if a new set
        is in use from the next handshake on."""
        with self._lock:
            try:
                if not force and _signature(self.settings.files()) == self._loaded.signature:
                    return False
                loaded = self._load()
            except (OSError, ssl.SSLError, ValueError) as error:
                log.error("TLS files do not load; keeping the previous ones: %s", error)
                return False
            self._loaded = loaded
            self.generation += 1
        log.info("TLS certificates reloaded", extra={"generation": self.generation})
        return True

    def start_watching(self, interval: float = CHECK_INTERVAL) -> None:
        async def watch() -> None:
            while True:
                await asyncio.sleep(interval)
                await asyncio.to_thread(self.reload)

        self._task = asyncio.create_task(watch(), name="lrod-tls-watch")

    async def stop_watching(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- gRPC ---------------------------------------------------------------
    def _configuration(self, loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(loaded.key, loaded.chain)], root_certificates=loaded.client_ca
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        loaded = self._loaded
        if loaded is self._served:
            return None
        self._served = loaded
        return self._configuration(loaded)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        self._served = self._loaded
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._loaded),
            self._fetch,
            require_client_authentication=self.settings.mutual,
        )

    # -- HTTP ---------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """The context to listen with; its SNI callback swaps in the newest."""
        first = self._loaded.context

        def newest(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            current = self._loaded.context
            if sock.context is not current:
                sock.context = current

        first.sni_callback = newest
        return first
