"""What the client's exit status means, and the one for an operation."""

from __future__ import annotations

from enum import IntEnum

from google.longrunning import operations_pb2
from google.rpc import code_pb2


class Exit(IntEnum):
    SUCCEEDED = 0
    FAILED = 1
    USAGE = 2  # click's own code for a bad command line
    CANCELLED = 3
    NOT_DONE = 4
    RPC_ERROR = 5
    INTERRUPTED = 130


def for_operation(op: operations_pb2.Operation) -> Exit:
    if not op.done:
        return Exit.NOT_DONE
    if op.HasField("error"):
        return Exit.CANCELLED if op.error.code == code_pb2.CANCELLED else Exit.FAILED
    return Exit.SUCCEEDED
