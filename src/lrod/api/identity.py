"""Who is calling. Until authentication exists every caller is one anonymous
owner; every read and list is already scoped by owner in the store."""

from __future__ import annotations

import grpc

ANONYMOUS = "anonymous"


def caller(context: grpc.aio.ServicerContext) -> str:
    return ANONYMOUS
