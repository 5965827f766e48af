"""A client in another language: stock Node.js code (grpc-js and proto-loader
over the repository's protos) drives lrod end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trustme

from lrod.app import Service
from lrod.auth.tokens import new_token, token_digest
from lrod.http.server import HttpFrontDoor
from lrod.settings import SecuritySettings, Settings
from tests.jobs import Gates, build_registry

REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT = REPO / "clients" / "node"
CLIENT_TIMEOUT = 60.0

pytestmark = pytest.mark.slow


async def _run_client(port: int | None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    assert port, "the service is not listening"
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js 20 to run the Node client test")
    if not (NODE_CLIENT / "node_modules").is_dir():
        pytest.fail(f"{NODE_CLIENT / 'node_modules'} is missing: run `make node-deps`")
    # Not subprocess.run: the server runs on this event loop and must keep serving.
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_CLIENT / "client.js"),
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | (env or {}),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"the Node client did not finish within {CLIENT_TIMEOUT} s")
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.timeout(CLIENT_TIMEOUT + 30)
async def test_node_client_follows_an_operation_to_its_result(service: Service) -> None:
    code, stdout, stderr = await _run_client(service.port)
    assert code == 0, f"node client exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    _check_events(stdout)


@pytest.mark.timeout(CLIENT_TIMEOUT + 30)
async def test_node_client_with_a_token_over_tls(
    database_url: str, gates: Gates, tmp_path: Path
) -> None:
    """The same run against a server that speaks only TLS and wants a token."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    cert.private_key_pem.write_to_path(tmp_path / "server.key")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    token = new_token()
    (tmp_path / "tokens.toml").write_text(
        f'[[principal]]\nname = "node"\ntoken_sha256 = "{token_digest(token)}"\n'
    )
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        security=SecuritySettings(
            tls_cert=str(tmp_path / "server.pem"),
            tls_key=str(tmp_path / "server.key"),
            auth_token_file=str(tmp_path / "tokens.toml"),
        ),
    )
    service = Service(settings, build_registry(gates))
    await service.start()
    try:
        env = {"LROD_TLS_CA": str(tmp_path / "ca.pem"), "LROD_TOKEN": token}
        code, stdout, stderr = await _run_client(service.port, env)
        assert code == 0, f"node client exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        _check_events(stdout)
        code, _, stderr = await _run_client(service.port, {**env, "LROD_TOKEN": "wrong"})
        assert code == 1
        assert "UNAUTHENTICATED" in stderr, stderr
    finally:
        await service.stop(1.0)


def _check_events(stdout: str) -> None:

    events: list[dict[str, Any]] = [json.loads(line) for line in stdout.splitlines() if line]
    watch = [e for e in events if e["event"] == "watch"]
    assert watch, stdout
    assert watch[-1]["done"] is True
    assert watch[-1]["state"] == "SUCCEEDED"
    assert all(not e["done"] for e in watch[:-1])
    completed = [e["completed"] for e in watch]
    assert completed == sorted(completed), completed
    assert completed[-1] == 3

    (result,) = [e for e in events if e["event"] == "result"]
    assert result["steps_done"] == 3
    assert result["name"].startswith("operations/")

    (not_found,) = [e for e in events if e["event"] == "not_found"]
    assert not_found["reason"] == "OPERATION_NOT_FOUND"


@pytest.mark.timeout(CLIENT_TIMEOUT + 30)
async def test_the_seed_documents_wait_for_job_reaches_the_result(service: Service) -> None:
    """`waitForJob` from the first source document, unchanged, with Node's
    plain fetch: it follows the absolute Location and the 303."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js 20 to run the Node client test")
    door = HttpFrontDoor(service.manager, "127.0.0.1:0")
    await door.start()
    try:
        process = await asyncio.create_subprocess_exec(
            node, str(NODE_CLIENT / "wait_for_job.js"), f"http://127.0.0.1:{door.port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    finally:
        await door.stop()
    assert process.returncode == 0, stderr.decode()
    shown = json.loads(stdout.decode().strip().splitlines()[-1])
    assert shown["location"].startswith(f"http://127.0.0.1:{door.port}/v1/operations/")
    assert shown["result"] == {
        "@type": "type.googleapis.com/lrod.examples.v1.SleepResult",
        "stepsDone": 2,
    }
