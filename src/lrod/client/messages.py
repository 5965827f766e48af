"""Protobuf messages for the client: find a job's input type by name in the
default pool, read it from JSON, and turn operations into JSON-ready dicts
with their Any fields unpacked."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterable
from typing import Any

from google.longrunning import operations_pb2
from google.protobuf import (
    any_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from lrod.v1 import operation_metadata_pb2

# Modules whose messages register in the default pool on import: the
# well-known types, the error details, our metadata and the example jobs.
BUILT_IN_MODULES = (
    any_pb2,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
    error_details_pb2,
    operation_metadata_pb2,
)
EXAMPLE_MODULES = ("lrod.examples.v1.examples_pb2",)

Metadata = operation_metadata_pb2.OperationMetadata


class UnknownMessageType(LookupError):
    """The default pool has no message of that name: its _pb2 module was not imported."""


def import_proto_modules(names: Iterable[str]) -> None:
    """Import the generated modules named (dotted names), so that their
    messages are in the default pool. ImportError if one cannot be."""
    for name in (*EXAMPLE_MODULES, *names):
        importlib.import_module(name)


def message_class(full_name: str) -> type[Message]:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise UnknownMessageType(full_name) from None
    return message_factory.GetMessageClass(descriptor)


# Protobuf's JSON mapping writes these as their bare value ("text", 5, true);
# {"value": ...} is accepted too, since that is their field's name.
WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)


def parse_input(text: str, full_name: str) -> any_pb2.Any:
    """The JSON `text` (protobuf's JSON mapping) as `full_name`, packed.
    json_format.ParseError if it does not fit the message."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise json_format.ParseError(f"not JSON: {error}") from None
    if full_name in WRAPPERS and isinstance(data, dict) and set(data) == {"value"}:
        data = data["value"]
    message = message_class(full_name)()
    try:
        json_format.ParseDict(data, message)
    except (json_format.ParseError, TypeError, ValueError) as error:
        hint = (
            f" (a {full_name} is written as its bare JSON value, e.g. --input '\"text\"' "
            "or --input '5')"
            if full_name in WRAPPERS
            else ""
        )
        raise json_format.ParseError(f"{error}{hint}") from None
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def metadata_of(op: operations_pb2.Operation) -> Metadata:
    metadata = Metadata()
    if op.HasField("metadata"):
        op.metadata.Unpack(metadata)
    return metadata


def to_dict(message: Message) -> dict[str, Any]:
    """Protobuf's JSON mapping (camelCase names, default values shown), Any
    fields unpacked when the pool knows their type and left packed (type and
    base64 value) when it does not."""
    try:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    except TypeError:
        if not isinstance(message, operations_pb2.Operation):
            raise
    # An operation whose response type is not in this pool.
    bare = operations_pb2.Operation()
    bare.CopyFrom(message)
    bare.ClearField("response")
    result = json_format.MessageToDict(bare, always_print_fields_with_no_presence=True)
    result["response"] = packed_dict(message.response)
    return result


def packed_dict(packed: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(packed, always_print_fields_with_no_presence=True)
    except TypeError:
        return {"@type": packed.type_url, "value": base64.b64encode(packed.value).decode()}
