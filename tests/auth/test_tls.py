"""Real TLS (certificates made here with trustme): gRPC and the HTTP door,
with and without client certificates; a wrong CA refused; the principal
from a client certificate's URI SAN; rotated certificates used without a
restart."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.longrunning import operations_pb2, operations_pb2_grpc

from lrod.app import Service
from lrod.settings import SecuritySettings
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from tests.auth.conftest import Principals, ServiceFactory


def _server_files(ca: trustme.CA, folder: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(folder / "server.pem")
    cert.private_key_pem.write_to_path(folder / "server.key")
    return folder / "server.pem", folder / "server.key"


def _uri_client_cert(ca: trustme.CA, uri: str) -> tuple[bytes, bytes]:
    """A client certificate with a URI SAN (trustme issues DNS/IP ones),
    signed by the trustme CA's key."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def _list_types(port: int, credentials: grpc.ChannelCredentials) -> Any:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        return await stub.ListJobTypes(job_service_pb2.ListJobTypesRequest(), timeout=5)


async def test_grpc_and_http_over_tls_with_a_token_and_a_wrong_ca_refused(
    start_service: ServiceFactory, principals: Principals, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert, key = _server_files(ca, tmp_path)
    service: Service = await start_service(
        http_address="127.0.0.1:0",
        security=SecuritySettings(
            tls_cert=str(cert), tls_key=str(key), auth_token_file=str(principals.token_file)
        ),
    )
    assert service.port is not None
    assert service.http is not None
    # The stock way: TLS channel credentials plus a bearer token per call.
    good = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(ca.cert_pem.bytes()),
        grpc.access_token_call_credentials(principals.alice.token),
    )
    assert len((await _list_types(service.port, good)).job_types) > 0
    wrong_ca = trustme.CA()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _list_types(service.port, grpc.ssl_channel_credentials(wrong_ca.cert_pem.bytes()))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    no_token = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await _list_types(service.port, no_token)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED

    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    url = f"https://127.0.0.1:{service.http.port}/v1/jobTypes"
    async with aiohttp.ClientSession() as http:
        ok = await http.get(url, ssl=trusting, headers=principals.alice.headers)
        assert ok.status == 200
        other = ssl.create_default_context()
        wrong_ca.configure_trust(other)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(url, ssl=other, headers=principals.alice.headers)

    # Rotation: new files from another CA, used from the next handshake on.
    rotated_ca = trustme.CA()
    _server_files(rotated_ca, tmp_path)
    service.reload()  # SIGHUP's handler; the file watch does the same within a second
    rotated = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(rotated_ca.cert_pem.bytes()),
        grpc.access_token_call_credentials(principals.alice.token),
    )
    assert len((await _list_types(service.port, rotated)).job_types) > 0
    with pytest.raises(grpc.aio.AioRpcError):
        await _list_types(service.port, good)
    rotated_trust = ssl.create_default_context()
    rotated_ca.configure_trust(rotated_trust)
    async with aiohttp.ClientSession() as http:
        ok = await http.get(url, ssl=rotated_trust, headers=principals.alice.headers)
        assert ok.status == 200


async def test_mutual_tls_requires_a_client_certificate_and_maps_its_uri_san(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert, key = _server_files(ca, tmp_path)
    (tmp_path / "clients.pem").write_bytes(ca.cert_pem.bytes())
    service: Service = await start_service(
        http_address="127.0.0.1:0",
        security=SecuritySettings(
            tls_cert=str(cert),
            tls_key=str(key),
            tls_client_ca=str(tmp_path / "clients.pem"),
            auth_client_san="uri",
        ),
    )
    assert service.port is not None
    assert service.http is not None
    client_pem, client_key = _uri_client_cert(ca, "spiffe://example.org/billing")
    with_cert = grpc.ssl_channel_credentials(ca.cert_pem.bytes(), client_key, client_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{service.port}", with_cert) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        ops = operations_pb2_grpc.OperationsStub(channel)
        from tests.auth.test_owners import _sleep_request

        op = await jobs.Submit(_sleep_request(), timeout=5)
        assert service.manager is not None
        stored = await service.store.get(
            op.name.removeprefix("operations/"), None, service.manager.clock()
        )
        assert stored.owner == "spiffe://example.org/billing"
        await ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=5)

    without = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _list_types(service.port, without)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger_ca = trustme.CA()
    stranger_pem, stranger_key = _uri_client_cert(stranger_ca, "spiffe://example.org/billing")
    with pytest.raises(grpc.aio.AioRpcError):
        await _list_types(
            service.port,
            grpc.ssl_channel_credentials(ca.cert_pem.bytes(), stranger_key, stranger_pem),
        )

    (tmp_path / "c.pem").write_bytes(client_pem)
    (tmp_path / "c.key").write_bytes(client_key)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    url = f"https://127.0.0.1:{service.http.port}/v1/operations"
    async with aiohttp.ClientSession() as http:
        listed = await http.get(url, ssl=context)
        assert listed.status == 200
        names = [o["name"] for o in (await listed.json()).get("operations", [])]
        assert names == [op.name]
        bare = ssl.create_default_context()
        ca.configure_trust(bare)
        with pytest.raises(aiohttp.ClientError):
            await http.get(url, ssl=bare)
