"""The server processes: `python -m bench.servers echo|lrod ...`.

`echo` is the ceiling for any unary RPC here: a bare grpc.aio server with
lrod's channel options whose handlers parse the request and answer a fixed,
pre-built Operation of the size lrod returns. `lrod` is lrod's own Service
(API, and workers unless --workers 0) with the benchmark's job types.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2

from bench.jobs import registry
from bench.procs import announce, until_terminated
from lrod import logs
from lrod.api.server import MAX_MESSAGE_BYTES
from lrod.app import Service, Settings, tune_garbage_collection
from lrod.manager import ManagerSettings
from lrod.settings import QuotaSettings
from lrod.v1 import job_service_pb2
from lrod.worker import WorkerSettings

DEFAULT_WORKERS = WorkerSettings()

ECHO_SERVICE = "bench.Echo"
ECHO_SUBMIT = f"/{ECHO_SERVICE}/Submit"
ECHO_GET = f"/{ECHO_SERVICE}/Get"
# Server streams that send the operation, then wait until Release and send
# it done: the bare transport's cost of many waiters.
ECHO_HOLD = f"/{ECHO_SERVICE}/Hold"
ECHO_RELEASE = f"/{ECHO_SERVICE}/Release"


def echo_handler(response: operations_pb2.Operation) -> grpc.GenericRpcHandler:
    released = asyncio.Event()
    done = operations_pb2.Operation()
    done.CopyFrom(response)
    done.done = True

    async def answer(request: Any, context: grpc.aio.ServicerContext) -> operations_pb2.Operation:
        return response

    async def hold(
        request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[job_service_pb2.WatchOperationResponse]:
        yield job_service_pb2.WatchOperationResponse(operation=response)
        await released.wait()
        yield job_service_pb2.WatchOperationResponse(operation=done)

    async def release(request: Any, context: grpc.aio.ServicerContext) -> operations_pb2.Operation:
        released.set()
        return done

    def method(parse: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            answer,
            request_deserializer=parse,
            response_serializer=operations_pb2.Operation.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Submit": method(job_service_pb2.SubmitRequest.FromString),
            "Get": method(operations_pb2.GetOperationRequest.FromString),
            "Hold": grpc.unary_stream_rpc_method_handler(
                hold,
                request_deserializer=job_service_pb2.WatchOperationRequest.FromString,
                response_serializer=job_service_pb2.WatchOperationResponse.SerializeToString,
            ),
            "Release": grpc.unary_unary_rpc_method_handler(
                release,
                request_deserializer=operations_pb2.GetOperationRequest.FromString,
                response_serializer=operations_pb2.Operation.SerializeToString,
            ),
        },
    )


async def serve_echo(response: operations_pb2.Operation) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((echo_handler(response),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    announce(port)
    await until_terminated()
    await server.stop(1.0)


def _time_collections(log: Path) -> None:
    """With BENCH_GC_LOG set: one line per garbage collection (generation,
    wall-clock ms, objects collected, CPU ms of the thread), written to that
    file at exit: how long the collector stalls the loop."""
    began: list[float] = [0.0, 0.0]
    pauses: list[tuple[int, float, int]] = []
    cpus: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            began[1] = time.thread_time()
        else:
            cpu = time.thread_time() - began[1]
            pauses.append((info["generation"], time.perf_counter() - began[0], info["collected"]))
            cpus.append(cpu)

    gc.callbacks.append(callback)

    def write() -> None:
        with log.open("w") as out:
            for (generation, seconds, collected), cpu in zip(pauses, cpus, strict=True):
                out.write(f"{generation} {seconds * 1000:.3f} {collected} {cpu * 1000:.3f}\n")

    atexit.register(write)


async def serve_lrod(
    database_url: str,
    workers: int,
    lease: float,
    claim_ahead: int = DEFAULT_WORKERS.claim_ahead,
    hand_off: bool = False,
    claim_ahead_wait: float = DEFAULT_WORKERS.claim_ahead_wait,
) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=(
            WorkerSettings(
                concurrency=workers,
                lease=timedelta(seconds=lease),
                claim_ahead=claim_ahead,
                claim_ahead_wait=claim_ahead_wait,
                hand_off=hand_off,
            )
            if workers > 0
            else None
        ),
        manager=ManagerSettings(max_wait=60.0),
        # Figure 9 queues 100,000 jobs at once, as many as the default ceiling
        # on QUEUED operations (the peers have none); every other quota stays.
        quotas=replace(QuotaSettings(), queued_operations=0),
    )
    service = Service(settings, registry)
    await service.start()
    if not os.environ.get("BENCH_DEFAULT_GC"):  # as `lrod serve` does
        tune_garbage_collection()
    announce(service.port)
    try:
        await until_terminated()
    finally:
        await service.stop(5.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    kinds = parser.add_subparsers(dest="kind", required=True)
    echo = kinds.add_parser("echo")
    echo.add_argument("--response-file", type=Path, required=True)
    served = kinds.add_parser("lrod")
    served.add_argument("--database-url", required=True)
    served.add_argument("--workers", type=int, default=0, help="0: API only")
    served.add_argument("--lease-seconds", type=float, default=30.0)
    served.add_argument("--claim-ahead", type=int, default=DEFAULT_WORKERS.claim_ahead)
    served.add_argument(
        "--claim-ahead-seconds", type=float, default=DEFAULT_WORKERS.claim_ahead_wait
    )
    served.add_argument("--hand-off", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    logs.configure("WARNING", False)
    if os.environ.get("BENCH_GC_LOG"):
        _time_collections(Path(os.environ["BENCH_GC_LOG"]))
    if args.kind == "echo":
        response = operations_pb2.Operation.FromString(args.response_file.read_bytes())
        asyncio.run(serve_echo(response))
    else:
        asyncio.run(
            serve_lrod(
                args.database_url,
                args.workers,
                args.lease_seconds,
                args.claim_ahead,
                args.hand_off,
                args.claim_ahead_seconds,
            )
        )


if __name__ == "__main__":
    main()
