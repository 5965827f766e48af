"""lrod.v1.JobService: Submit, WatchOperation, ListJobTypes."""

from __future__ import annotations

from contextlib import aclosing

import grpc
from google.longrunning import operations_pb2

from lrod.api import convert, wire
from lrod.api.identity import caller
from lrod.api.validation import new_job, new_jobs
from lrod.manager import OperationManager
from lrod.v1 import job_service_pb2, job_service_pb2_grpc


class JobService(job_service_pb2_grpc.JobServiceServicer):
    def __init__(
        self, manager: OperationManager, kept: convert.OperationBytes | None = None
    ) -> None:
        self._manager = manager
        # One conversion per version for all of an operation's watchers.
        self._kept = kept or convert.OperationBytes()

    async def Submit(
        self, request: job_service_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation | bytes:
        self._manager.quotas.check_request_size(request.ByteSize())
        now = self._manager.clock()
        job = new_job(
            request, self._manager.registry, caller(context).owner, now, self._manager.webhook_rules
        )
        op = await self._manager.submit(job)
        # A new operation's answer written straight as bytes (the servers'
        # response serializer passes bytes through); anything else converted.
        return wire.fresh_operation(op, now) or convert.operation(op, now)

    async def BatchSubmit(
        self, request: job_service_pb2.BatchSubmitRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # Answered serialized (a BatchSubmitResponse): its members share
        # their conversion (convert.batch_response).
        self._manager.quotas.check_request_size(request.ByteSize())
        now = self._manager.clock()
        jobs = new_jobs(
            request, self._manager.registry, caller(context).owner, now, self._manager.webhook_rules
        )
        stored = await self._manager.batch_submit(jobs, request.request_id or None)
        return convert.batch_response(stored, now)

    async def WatchOperation(
        self, request: job_service_pb2.WatchOperationRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Written (not yielded): no generator of ours between the manager's
        # and grpc's per message. Serialized WatchOperationResponses, from the
        # bytes kept per version.
        kept, clock = self._kept, self._manager.clock
        async with aclosing(self._manager.watch(caller(context), request.name)) as changes:
            async for op in changes:
                await context.write(kept.watch_response(op, clock()))

    async def ListJobTypes(
        self, request: job_service_pb2.ListJobTypesRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ListJobTypesResponse:
        return job_service_pb2.ListJobTypesResponse(
            job_types=[convert.job_type(t) for t in self._manager.registry]
        )
