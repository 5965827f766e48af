"""The client's gRPC connection: one channel, the two stubs, and the calls the
commands make, with deadlines and retries on UNAVAILABLE.

Unary calls are retried by gRPC itself (a service config retry policy):
every call is safe to repeat, Submit included, since it always carries a
request_id. A watch stream that breaks after it started is reopened here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc

from lrod.v1 import job_service_pb2, job_service_pb2_grpc

# The deadline of a call that answers at once.
CALL_TIMEOUT = 30.0
# One WaitOperation call holds at most this long (the server caps it too).
WAIT_CHUNK = 50.0
# Time on top of a waiting call's own timeout for the answer to arrive.
SLACK = 10.0
# A watch stream is reopened up to this many times in a row.
STREAM_RETRIES = 5
STREAM_RETRY_DELAY = 1.0

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "lrod.v1.JobService"},
                    {"service": "google.longrunning.Operations"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

OPERATION_PREFIX = "operations/"


def operation_name(name: str) -> str:
    """`operations/ID`, also when given the bare ID."""
    return name if name.startswith(OPERATION_PREFIX) else OPERATION_PREFIX + name


@dataclass(frozen=True)
class ClientCredentials:
    """What the client presents: a bearer token, and TLS (the CAs it trusts,
    a client certificate for mTLS)."""

    token: str | None = None
    tls_ca: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None

    def __repr__(self) -> str:
        return f"ClientCredentials(token={'<hidden>' if self.token else None}, tls={self.tls})"

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @classmethod
    def load(
        cls,
        token: str | None,
        token_file: str | None,
        tls_ca: str | None,
        client_cert: str | None,
        client_key: str | None,
    ) -> ClientCredentials:
        if token_file and not token:
            lines = Path(token_file).read_text().splitlines()
            token = lines[0].strip() if lines else ""
            if not token:
                raise ValueError(f"{token_file}: no token on its first line")
        if bool(client_cert) != bool(client_key):
            raise ValueError("--tls-client-cert and --tls-client-key go together")
        if client_cert and not tls_ca:
            raise ValueError("a client certificate needs --tls-ca")
        return cls(
            token or None,
            Path(tls_ca).read_bytes() if tls_ca else None,
            Path(client_cert).read_bytes() if client_cert else None,
            Path(client_key).read_bytes() if client_key else None,
        )


class _BearerMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """The token on a channel without TLS (grpc's call credentials need a
    secure channel): loopback, or TLS ended in front of lrod."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def open_channel(address: str, credentials: ClientCredentials | None = None) -> grpc.Channel:
    """A channel to lrod: TLS with the token as grpc call credentials, or
    plain with the token added to each call's metadata."""
    credentials = credentials or ClientCredentials()
    options = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    if credentials.tls:
        channel_credentials = grpc.ssl_channel_credentials(
            credentials.tls_ca, credentials.client_key, credentials.client_cert
        )
        if credentials.token:
            channel_credentials = grpc.composite_channel_credentials(
                channel_credentials, grpc.access_token_call_credentials(credentials.token)
            )
        return grpc.secure_channel(address, channel_credentials, options=options)
    channel = grpc.insecure_channel(address, options=options)
    if credentials.token:
        channel = grpc.intercept_channel(channel, _BearerMetadata(credentials.token))
    return channel


class Client:
    def __init__(self, address: str, credentials: ClientCredentials | None = None) -> None:
        self._channel = open_channel(address, credentials)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.operations = operations_pb2_grpc.OperationsStub(self._channel)
        # Calls that block until the server answers (wait, watch): Ctrl-C cancels them.
        self._blocking: set[grpc.Future] = set()
        self._interrupted = False

    def interrupt(self) -> None:
        """Ctrl-C (the CLI's SIGINT handler): cancel the blocking calls under
        way, grpc's own way out of them, so that KeyboardInterrupt is raised in
        `_cancellable`, never at some point inside grpc's code, where it can
        leave the channel half-way and its close waiting for ever. With no
        such call under way it is raised at once."""
        self._interrupted = True
        if not self._blocking:
            raise KeyboardInterrupt
        for call in list(self._blocking):
            call.cancel()

    @contextmanager
    def _cancellable(self, call: Any) -> Iterator[Any]:
        self._blocking.add(call)
        try:
            yield call
        except grpc.RpcError as error:
            if self._interrupted and error.code() == grpc.StatusCode.CANCELLED:
                raise KeyboardInterrupt from None
            raise
        finally:
            self._blocking.discard(call)
        if self._interrupted:  # it came after the call had ended
            raise KeyboardInterrupt

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- job types and submit ------------------------------------------------
    def job_types(self) -> list[job_service_pb2.JobType]:
        response = self.jobs.ListJobTypes(
            job_service_pb2.ListJobTypesRequest(), timeout=CALL_TIMEOUT
        )
        return list(response.job_types)

    def submit(self, request: job_service_pb2.SubmitRequest) -> operations_pb2.Operation:
        operation: operations_pb2.Operation = self.jobs.Submit(request, timeout=CALL_TIMEOUT)
        return operation

    def batch_submit(
        self, request: job_service_pb2.BatchSubmitRequest
    ) -> job_service_pb2.BatchSubmitResponse:
        response: job_service_pb2.BatchSubmitResponse = self.jobs.BatchSubmit(
            request, timeout=CALL_TIMEOUT
        )
        return response

    # -- google.longrunning.Operations ---------------------------------------
    def get(self, name: str) -> operations_pb2.Operation:
        operation: operations_pb2.Operation = self.operations.GetOperation(
            operations_pb2.GetOperationRequest(name=operation_name(name)), timeout=CALL_TIMEOUT
        )
        return operation

    def list_page(
        self, filter_text: str, page_size: int, page_token: str
    ) -> operations_pb2.ListOperationsResponse:
        request = operations_pb2.ListOperationsRequest(
            name="operations", filter=filter_text, page_size=page_size, page_token=page_token
        )
        response: operations_pb2.ListOperationsResponse = self.operations.ListOperations(
            request, timeout=CALL_TIMEOUT
        )
        return response

    def list_all(self, filter_text: str, page_size: int) -> Iterator[operations_pb2.Operation]:
        token = ""
        while True:
            page = self.list_page(filter_text, page_size, token)
            yield from page.operations
            token = page.next_page_token
            if not token:
                return

    def cancel(self, name: str) -> None:
        self.operations.CancelOperation(
            operations_pb2.CancelOperationRequest(name=operation_name(name)), timeout=CALL_TIMEOUT
        )

    def delete(self, name: str) -> None:
        self.operations.DeleteOperation(
            operations_pb2.DeleteOperationRequest(name=operation_name(name)), timeout=CALL_TIMEOUT
        )

    def wait(self, name: str, timeout: float | None) -> operations_pb2.Operation:
        """The operation once done, or as it is when `timeout` seconds have
        passed (None: no limit), by WaitOperation calls one after another."""
        name = operation_name(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = WAIT_CHUNK
            if deadline is not None:
                chunk = min(chunk, max(deadline - time.monotonic(), 0.0))
            request = operations_pb2.WaitOperationRequest(name=name)
            request.timeout.FromTimedelta(timedelta(seconds=chunk))
            call = self.operations.WaitOperation.future(request, timeout=chunk + SLACK)
            with self._cancellable(call):
                op: operations_pb2.Operation = call.result()
            if op.done or (deadline is not None and time.monotonic() >= deadline):
                return op

    def watch(self, name: str) -> Iterator[operations_pb2.Operation]:
        """The operation now and after each change, until it is done; a stream
        that breaks (a server restarting) is reopened a few times."""
        request = job_service_pb2.WatchOperationRequest(name=operation_name(name))
        failures = 0
        while True:
            try:
                with self._cancellable(self.jobs.WatchOperation(request)) as stream:
                    for response in stream:
                        failures = 0
                        yield response.operation
                        if response.operation.done:
                            return
            except grpc.RpcError as error:
                failures += 1
                if error.code() != grpc.StatusCode.UNAVAILABLE or failures > STREAM_RETRIES:
                    raise
                time.sleep(STREAM_RETRY_DELAY)
                continue
            # The stream ended before the operation was done: ask again.
            failures += 1
            if failures > STREAM_RETRIES:
                yield self.get(name)
                return
