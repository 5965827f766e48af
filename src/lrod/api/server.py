"""One grpc.aio server on one port: JobService, Operations, Health, reflection."""

from __future__ import annotations

import logging

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from lrod.api.calls import AuthPolicy, Registrar, no_authentication
from lrod.api.convert import OperationBytes
from lrod.api.health import HealthMonitor
from lrod.api.job_service import JobService
from lrod.api.operations_service import OperationsService
from lrod.manager import OperationManager
from lrod.v1 import job_service_pb2, job_service_pb2_grpc

JOB_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
OPERATIONS_SERVICE = operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name
SERVICES = (JOB_SERVICE, OPERATIONS_SERVICE)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_PENDING_REQUESTS = 20_000


class _CallerLeft(logging.Filter):
    """grpc-core fails to send the answer of a call whose caller left a moment
    before (its deadline passed, it hung up) and logs that at ERROR with a
    traceback. Nothing is wrong on the server: keep it out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ExecuteBatchError raised in core")


_CALLER_LEFT = _CallerLeft()


def build_server(
    manager: OperationManager,
    health: HealthMonitor,
    *,
    reuse_port: bool = False,
    auth: AuthPolicy = no_authentication,
) -> grpc.aio.Server:
    """Every method of every service wrapped once (lrod.api.calls): timed into
    the process's metrics, decoded leniently, errors mapped, and `auth`'s
    step, if any, run first. `reuse_port`: share the port with the other
    processes of `lrod serve --processes N` (otherwise a port in use is an
    error)."""
    cygrpc_log = logging.getLogger("grpc._cython.cygrpc")
    if _CALLER_LEFT not in cygrpc_log.filters:
        cygrpc_log.addFilter(_CALLER_LEFT)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", int(reuse_port)),
            # grpc-core cancels calls beyond 1,000 not yet taken up (its default);
            # a burst of waiters and watchers must not be turned away.
            ("grpc.server.max_pending_requests", MAX_PENDING_REQUESTS),
        ],
    )
    methods = Registrar(manager.metrics, auth)
    kept = OperationBytes()  # shared: a Get after a Watch of one version converts nothing
    add_job_service = job_service_pb2_grpc.add_JobServiceServicer_to_server
    add_job_service(JobService(manager, kept), methods)  # type: ignore[no-untyped-call]
    operations = OperationsService(manager, kept)
    operations_pb2_grpc.add_OperationsServicer_to_server(operations, methods)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, methods)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    names = (*SERVICES, health_name, reflection.SERVICE_NAME)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), methods
    )
    methods.install(server)
    return server
