"""Who is calling. Until authentication exists every caller is one anonymous
owner; every read and list is already scoped by owner in the store.

The caller of a call is set once per call by its method's authentication
step (`lrod.api.calls.AuthStep`), in a context variable: each grpc.aio call
runs in its own task, so the value never leaks from one call to another."""

from __future__ import annotations

from contextvars import ContextVar

import grpc

ANONYMOUS = "anonymous"

# Who a call's authentication step says is calling: for now the owner name.
Principal = str

CALLER: ContextVar[Principal] = ContextVar("lrod_caller", default=ANONYMOUS)


def caller(context: grpc.aio.ServicerContext) -> Principal:
    return CALLER.get()
