"""The real CLI as a client: a token from `lrod token new`, given by
LROD_TOKEN or --token-file, over TLS (--tls-ca) to a real server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import trustme

from lrod.app import Service
from lrod.settings import SecuritySettings
from tests.auth.conftest import ServiceFactory

pytestmark = pytest.mark.slow

LROD = [sys.executable, "-m", "lrod"]


async def _lrod(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *LROD, *args,
        env=os.environ | (env or {}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_submits_with_a_token_over_tls(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    code, printed, _ = await _lrod("token", "new", "cli-user")
    assert code == 0
    token, _, entry = printed.partition("\n\n")
    (tmp_path / "tokens.toml").write_text(entry)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    cert.private_key_pem.write_to_path(tmp_path / "server.key")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    service: Service = await start_service(
        security=SecuritySettings(
            tls_cert=str(tmp_path / "server.pem"),
            tls_key=str(tmp_path / "server.key"),
            auth_token_file=str(tmp_path / "tokens.toml"),
        )
    )
    address = f"127.0.0.1:{service.port}"
    tls = ("--address", address, "--tls-ca", str(tmp_path / "ca.pem"))
    code, out, err = await _lrod(
        "submit", "examples.sleep", "--input", '{"duration": "0.05s"}', "--wait", "--json", *tls,
        env={"LROD_TOKEN": token.strip()},
    )  # fmt: skip
    assert code == 0, err
    assert '"SUCCEEDED"' in out
    (tmp_path / "token").write_text(token)
    code, out, err = await _lrod("list", "--token-file", str(tmp_path / "token"), "--json", *tls)
    assert code == 0, err
    code, _, err = await _lrod("list", *tls)
    assert code == 5
    assert "UNAUTHENTICATED" in err
    code, _, err = await _lrod("list", *tls, env={"LROD_TOKEN": "lrod_wrong"})
    assert code == 5
    assert "lrod_wrong" not in err
    code, _, err = await _lrod("list", "--address", address, env={"LROD_TOKEN": token.strip()})
    assert code == 5  # a plain channel to a TLS port
