"""`lrod submit --batch FILE.jsonl`: one JSON SubmitRequest per line, sent
with BatchSubmit in calls of at most MAX_BATCH jobs, each call all or none.

A line is the SubmitRequest in protobuf's JSON mapping (`jobType`,
`requestId`, `labels`, `priority`, `scheduleTime`, `timeout`, `dedupeKey`;
snake_case names work too), except that `input` is the job's input message
as JSON, as `lrod submit --input` takes it. Blank lines are skipped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import click
from google.protobuf import json_format

from lrod.client import messages, render
from lrod.client.connection import Client
from lrod.client.exit_codes import Exit
from lrod.domain.submission import MAX_BATCH
from lrod.v1 import job_service_pb2


def submit_file(client: Client, lines: TextIO, as_json: bool) -> Exit:
    input_types = {t.name: t.input_type for t in client.job_types()}
    requests = list(_requests(lines, input_types))
    if not requests:
        raise click.BadParameter("the file holds no requests", param_hint="--batch")
    for start in range(0, len(requests), MAX_BATCH):
        chunk = requests[start : start + MAX_BATCH]
        # A request_id per call makes gRPC's own retry of it safe.
        batch = job_service_pb2.BatchSubmitRequest(
            requests=[request for _, request in chunk], request_id=str(uuid.uuid4())
        )
        try:
            response = client.batch_submit(batch)
        except Exception:
            first, last = chunk[0][0], chunk[-1][0]
            done = f"; the {start} before it were submitted" if start else ""
            click.echo(
                f"the batch of lines {first}-{last} was refused (requests[i] is the i-th "
                f"request of these lines){done}",
                err=True,
            )
            raise
        for op in response.operations:
            if as_json:
                render.emit_json(messages.to_dict(op), compact=True)
            else:
                click.echo(op.name)
    return Exit.SUCCEEDED


def _requests(
    lines: TextIO, input_types: dict[str, str]
) -> Iterator[tuple[int, job_service_pb2.SubmitRequest]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        yield number, _request(number, line, input_types)


def _request(number: int, line: str, input_types: dict[str, str]) -> job_service_pb2.SubmitRequest:
    where = f"line {number}"
    try:
        fields: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"{where}: not JSON ({error})", param_hint="--batch") from None
    if not isinstance(fields, dict):
        raise click.BadParameter(f"{where}: not a JSON object", param_hint="--batch")
    job_input = fields.pop("input", {})
    request = job_service_pb2.SubmitRequest()
    try:
        json_format.ParseDict(fields, request)
    except json_format.ParseError as error:
        raise click.BadParameter(f"{where}: {error}", param_hint="--batch") from None
    type_name = input_types.get(request.job_type)
    if type_name is None:
        names = ", ".join(sorted(input_types)) or "none"
        raise click.BadParameter(
            f"{where}: the server has no job type {request.job_type!r} (it has: {names})",
            param_hint="--batch",
        )
    try:
        request.input.CopyFrom(messages.parse_input(json.dumps(job_input), type_name))
    except messages.UnknownMessageType:
        raise click.UsageError(
            f"{where}: the input type {type_name} is not known here: "
            "import its generated module with --proto-module"
        ) from None
    except json_format.ParseError as error:
        problem = f"{where}: not a {type_name}: {error}"
        raise click.BadParameter(problem, param_hint="--batch") from None
    return request
