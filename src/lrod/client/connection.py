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
from datetime import timedelta
from types import TracebackType

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


class Client:
    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(
            address,
            options=[("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)],
        )
        self.jobs = job_service_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.operations = operations_pb2_grpc.OperationsStub(self._channel)

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
            op: operations_pb2.Operation = self.operations.WaitOperation(
                request, timeout=chunk + SLACK
            )
            if op.done or (deadline is not None and time.monotonic() >= deadline):
                return op

    def watch(self, name: str) -> Iterator[operations_pb2.Operation]:
        """The operation now and after each change, until it is done; a stream
        that breaks (a server restarting) is reopened a few times."""
        request = job_service_pb2.WatchOperationRequest(name=operation_name(name))
        failures = 0
        while True:
            try:
                for response in self.jobs.WatchOperation(request):
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
