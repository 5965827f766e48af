"""lrod's API as the benchmark calls it: stubs on one channel and the requests."""

from __future__ import annotations

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import any_pb2, duration_pb2, empty_pb2
from google.protobuf.message import Message

from bench.jobs import NOOP
from lrod.v1 import job_service_pb2, job_service_pb2_grpc


def submit_request(
    job_type: str = NOOP, message: Message | None = None
) -> job_service_pb2.SubmitRequest:
    packed = any_pb2.Any()
    packed.Pack(message if message is not None else empty_pb2.Empty())
    return job_service_pb2.SubmitRequest(job_type=job_type, input=packed)


class Lrod:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.jobs = job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        self.operations = operations_pb2_grpc.OperationsStub(channel)

    async def submit(self, request: job_service_pb2.SubmitRequest) -> operations_pb2.Operation:
        return await self.jobs.Submit(request)

    async def get(self, name: str) -> operations_pb2.Operation:
        return await self.operations.GetOperation(operations_pb2.GetOperationRequest(name=name))

    async def wait_done(
        self, name: str, seconds: int = 10, tries: int = 30
    ) -> operations_pb2.Operation:
        """WaitOperation until done (each call is capped by the server)."""
        for _ in range(tries):
            op = await self.operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=name, timeout=duration_pb2.Duration(seconds=seconds)
                )
            )
            if op.done:
                return op
        raise TimeoutError(f"{name} was not done after {tries} waits")

    async def watch_done(self, name: str) -> operations_pb2.Operation:
        """Follow WatchOperation until the operation is done."""
        call = self.jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=name))
        async for message in call:
            if message.operation.done:
                call.cancel()
                return message.operation
        raise RuntimeError(f"the watch of {name} ended before it was done")
