"""Fixtures for the security tests: principals in a real token file, and a
real server (SQLite and PostgreSQL) that authenticates with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lrod.app import Service
from lrod.auth.tokens import new_token, token_digest
from lrod.settings import ManagerSettings, SecuritySettings, Settings
from lrod.worker import WorkerSettings
from tests.jobs import Gates, build_registry


@dataclass(frozen=True)
class Caller:
    name: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def write_token_file(path: Path, callers: dict[str, tuple[str, list[str]]]) -> None:
    lines = []
    for name, (token, roles) in callers.items():
        lines += [
            "[[principal]]",
            f'name = "{name}"',
            f'token_sha256 = "{token_digest(token)}"',
            f"roles = {roles!r}".replace("'", '"'),
            "",
        ]
    path.write_text("\n".join(lines))


@dataclass(frozen=True)
class Principals:
    alice: Caller
    bob: Caller
    admin: Caller
    reader: Caller
    token_file: Path


@pytest.fixture
def principals(tmp_path: Path) -> Principals:
    made = {name: Caller(name, new_token()) for name in ("alice", "bob", "ops", "reader")}
    path = tmp_path / "tokens.toml"
    write_token_file(
        path,
        {
            "alice": (made["alice"].token, []),
            "bob": (made["bob"].token, []),
            "ops": (made["ops"].token, ["admin"]),
            "reader": (made["reader"].token, ["readonly"]),
        },
    )
    return Principals(made["alice"], made["bob"], made["ops"], made["reader"], path)


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def start_service(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServiceFactory]:
    """start_service(security=..., quotas=..., **settings) -> a started Service."""
    monkeypatch.setenv("LROD_EXPORT_DIR", str(tmp_path / "exports"))
    started: list[tuple[Service, Gates]] = []

    async def start(**fields: Any) -> Service:
        gates = Gates()
        settings = Settings(
            address=fields.pop("address", "127.0.0.1:0"),
            database_url=database_url,
            workers=fields.pop(
                "workers",
                WorkerSettings(concurrency=2, poll_interval=0.2, progress_interval=0.05),
            ),
            manager=fields.pop("manager", ManagerSettings(max_wait=2.0)),
            janitor_interval=0.2,
            **fields,
        )
        service = Service(settings, build_registry(gates))
        await service.start()
        started.append((service, gates))
        return service

    yield start
    for service, gates in started:
        for gate in gates.gates.values():
            gate.set()
        await service.stop(1.0)


@pytest.fixture
async def token_service(start_service: ServiceFactory, principals: Principals) -> Service:
    service: Service = await start_service(
        security=SecuritySettings(auth_token_file=str(principals.token_file))
    )
    return service
