"""google.longrunning.Operations, exactly as AIP-151 has it."""

from __future__ import annotations

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from lrod.api import convert
from lrod.api.identity import caller
from lrod.api.validation import duration_seconds
from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.manager import OperationManager

COLLECTIONS = ("", "operations")


class OperationsService(operations_pb2_grpc.OperationsServicer):  # type: ignore[misc]
    def __init__(
        self, manager: OperationManager, kept: convert.OperationBytes | None = None
    ) -> None:
        self._manager = manager
        # Get and Wait answer an operation's serialized bytes, kept per version.
        self._kept = kept or convert.OperationBytes()

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListOperationsResponse:
        if request.name not in COLLECTIONS:
            raise InvalidArgument.of(
                [FieldViolation("name", "must be empty or `operations`", "INVALID_COLLECTION")]
            )
        page = await self._manager.list(
            caller(context), request.filter, request.page_size, request.page_token
        )
        now = self._manager.clock()
        return operations_pb2.ListOperationsResponse(
            operations=[convert.operation(op, now) for op in page.operations],
            next_page_token=page.next_page_token,
        )

    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # An unchanged version is answered from its kept bytes, without
        # building or converting the operation.
        found = await self._manager.get_or_kept(caller(context), request.name, self._kept)
        if isinstance(found, bytes):
            return found
        return self._kept.operation(found, self._manager.clock())

    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._manager.delete(caller(context), request.name)
        return empty_pb2.Empty()

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._manager.cancel(caller(context), request.name)
        return empty_pb2.Empty()

    async def WaitOperation(
        self, request: operations_pb2.WaitOperationRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        timeout = None
        if request.HasField("timeout"):
            timeout = duration_seconds(request.timeout)
            if timeout is None:
                raise InvalidArgument.of(
                    [FieldViolation("timeout", "is not a valid duration", "INVALID_TIMEOUT")]
                )
            if timeout < 0:
                raise InvalidArgument.of(
                    [FieldViolation("timeout", "must not be negative", "INVALID_TIMEOUT")]
                )
        op = await self._manager.wait(
            caller(context), request.name, timeout, context.time_remaining()
        )
        return self._kept.operation(op, self._manager.clock())
