"""The client commands of `lrod`. Each opens a connection, makes its calls,
prints, and exits with a code from `exit_codes`; RPC errors end in exit 5
with the status on stderr, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TextIO, TypeVar

import click
import grpc
from google.protobuf import json_format
from rich.console import Console

from lrod.client import batches, messages, render
from lrod.client.connection import Client, ClientCredentials
from lrod.client.exit_codes import Exit, for_operation
from lrod.client.progress import Following
from lrod.options import option_for
from lrod.settings import CLIENT, ClientSettings
from lrod.v1 import job_service_pb2

_F = TypeVar("_F", bound=Callable[..., Any])


def client_options(func: _F) -> _F:
    """--address, --json and --proto-module, for every client command."""
    for option in reversed(
        [
            option_for(ClientSettings, "address", CLIENT),
            option_for(ClientSettings, "token", CLIENT),
            option_for(ClientSettings, "token_file", CLIENT),
            option_for(ClientSettings, "tls_ca", CLIENT),
            option_for(ClientSettings, "tls_client_cert", CLIENT),
            option_for(ClientSettings, "tls_client_key", CLIENT),
            click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON."),
            click.option(
                "--proto-module",
                "proto_modules",
                multiple=True,
                metavar="MODULE",
                help="A generated _pb2 module to import, so that its messages can be read "
                "and shown (repeatable; lrod.examples.v1 is always imported).",
            ),
        ]
    ):
        func = option(func)
    return func


def rpc_command(func: Callable[..., Exit]) -> Callable[..., None]:
    """Run a command body with a client, and turn what it returns or raises
    into the exit code."""

    @functools.wraps(func)
    def wrapper(
        address: str,
        proto_modules: tuple[str, ...],
        token: str | None,
        token_file: str | None,
        tls_ca: str | None,
        tls_client_cert: str | None,
        tls_client_key: str | None,
        **kwargs: Any,
    ) -> None:
        ctx = click.get_current_context()
        try:
            messages.import_proto_modules(proto_modules)
        except ImportError as error:
            raise click.BadParameter(str(error), param_hint="--proto-module") from None
        try:
            credentials = ClientCredentials.load(
                token, token_file, tls_ca, tls_client_cert, tls_client_key
            )
        except (OSError, ValueError) as error:
            raise click.UsageError(str(error)) from None
        try:
            with Client(address, credentials) as client, _interrupts_to(client):
                code = func(client, **kwargs)
        except grpc.RpcError as error:
            for line in render.rpc_error(error):
                click.echo(line, err=True)
            ctx.exit(Exit.RPC_ERROR)
        except StoppedFollowing as stopped:
            click.echo(
                f"stopped following {stopped.name}; the job goes on. "
                f"Follow it again: lrod watch {stopped.name}; "
                f"cancel it: lrod cancel {stopped.name}",
                err=True,
            )
            ctx.exit(Exit.INTERRUPTED)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(Exit.INTERRUPTED)
        except BrokenPipeError:
            # The reader of our output went away (`lrod list | head`).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(Exit.FAILED)
        ctx.exit(code)

    return wrapper


@contextlib.contextmanager
def _interrupts_to(client: Client) -> Iterator[None]:
    """Ctrl-C during the command goes to `client.interrupt` (it cancels a
    wait or a watch under way) instead of raising inside grpc."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: client.interrupt())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _console() -> Console | None:
    """A rich console when stdout is a terminal, else None (plain output)."""
    return Console(force_terminal=True) if sys.stdout.isatty() else None


def _parse_labels(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        labels[key] = value
    return labels


def _read_input(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as handle:
                return handle.read()
        except OSError as error:
            raise click.BadParameter(str(error), param_hint="--input") from None
    return text


def _input_for(client: Client, job_type: str, text: str) -> Any:
    known = {t.name: t for t in client.job_types()}
    if job_type not in known:
        names = ", ".join(sorted(known)) or "none"
        raise click.BadParameter(
            f"the server has no job type {job_type!r} (it has: {names})", param_hint="JOB_TYPE"
        )
    type_name = known[job_type].input_type
    try:
        return messages.parse_input(_read_input(text), type_name)
    except messages.UnknownMessageType:
        raise click.UsageError(
            f"the input type {type_name} is not known here: "
            "import its generated module with --proto-module"
        ) from None
    except json_format.ParseError as error:
        raise click.BadParameter(f"not a {type_name}: {error}", param_hint="--input") from None


class StoppedFollowing(KeyboardInterrupt):
    """Ctrl-C while following an operation: the job goes on without us."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name if name.startswith("operations/") else f"operations/{name}"


def _follow(client: Client, name: str, as_json: bool) -> Exit:
    """Watch the operation to its end with progress, then print the outcome
    (with --json: no progress, only the final operation)."""
    try:
        return _follow_to_end(client, name, as_json)
    except KeyboardInterrupt:
        raise StoppedFollowing(name) from None


def _follow_to_end(client: Client, name: str, as_json: bool) -> Exit:
    if as_json:
        *_, last = client.watch(name)
        render.emit_json(messages.to_dict(last))
        return for_operation(last)
    with Following(sys.stdout, live=sys.stdout.isatty()) as display:
        for last in client.watch(name):
            display.update(last)
    render.print_outcome(last)
    return for_operation(last)


@click.command("job-types")
@client_options
@rpc_command
def job_types(client: Client, as_json: bool) -> Exit:
    """List the job types the server runs, with their input and output messages."""
    types = client.job_types()
    if as_json:
        render.emit_json(messages.to_dict(job_service_pb2.ListJobTypesResponse(job_types=types)))
    else:
        render.job_types_table(types, _console())
    return Exit.SUCCEEDED


@click.command()
@click.argument("job_type", required=False)
@click.option(
    "--batch",
    "batch_file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE.jsonl",
    help="Submit every job in FILE (one JSON SubmitRequest per line, its input as the "
    "input message's JSON; - reads stdin) with BatchSubmit, instead of JOB_TYPE. "
    "Prints one operation name per line.",
)
@click.option(
    "--input",
    "input_text",
    default="{}",
    show_default=True,
    help="The job's input message as JSON (protobuf's JSON mapping); @FILE reads a file, "
    "- reads stdin.",
)
@click.option(
    "--request-id",
    help="An idempotency key (a UUID): a repeat returns the same operation. "
    "One is made up if not given, so that retries are safe.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_labels,
    help="A label (repeatable).",
)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Time limit of each attempt, in seconds (default: the job type's).",
)
@click.option("--dedupe-key", help="At most one active operation of this type per key.")
@click.option("--wait", is_flag=True, help="Follow the operation to its end, with progress.")
@client_options
@rpc_command
def submit(
    client: Client,
    job_type: str | None,
    batch_file: TextIO | None,
    input_text: str,
    request_id: str | None,
    labels: dict[str, str],
    priority: int,
    timeout: float | None,
    dedupe_key: str | None,
    wait: bool,
    as_json: bool,
) -> Exit:
    """Submit a job of JOB_TYPE. Prints the operation name (or, with --wait,
    follows it and exits 0 succeeded, 1 failed, 3 cancelled)."""
    if batch_file is not None:
        if job_type is not None or wait:
            raise click.UsageError("--batch takes no JOB_TYPE and no --wait")
        return batches.submit_file(client, batch_file, as_json)
    if job_type is None:
        raise click.UsageError("JOB_TYPE is required (or --batch FILE.jsonl)")
    request = job_service_pb2.SubmitRequest(
        job_type=job_type,
        input=_input_for(client, job_type, input_text),
        request_id=request_id or str(uuid.uuid4()),
        labels=labels,
        priority=priority,
        dedupe_key=dedupe_key or "",
    )
    if timeout is not None:
        request.timeout.FromTimedelta(timedelta(seconds=timeout))
    op = client.submit(request)
    if wait:
        return _follow(client, op.name, as_json)
    if as_json:
        render.emit_json(messages.to_dict(op))
    else:
        click.echo(op.name)
    return Exit.SUCCEEDED


@click.command()
@click.argument("name")
@client_options
@rpc_command
def get(client: Client, name: str, as_json: bool) -> Exit:
    """Show an operation (NAME is operations/ID or the ID)."""
    op = client.get(name)
    if as_json:
        render.emit_json(messages.to_dict(op))
    else:
        render.print_operation(op)
    return Exit.SUCCEEDED


@click.command("list")
@click.option(
    "--filter",
    "filter_text",
    default="",
    help="AIP-160 filter, e.g. 'metadata.state = RUNNING AND labels.team = \"a\"'.",
)
@click.option("--page-size", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--page-token", default="", help="Where the previous page ended.")
@click.option("--all", "all_pages", is_flag=True, help="Every page, not just the first.")
@client_options
@rpc_command
def list_operations(
    client: Client,
    filter_text: str,
    page_size: int,
    page_token: str,
    all_pages: bool,
    as_json: bool,
) -> Exit:
    """List operations, newest first."""
    if all_pages:
        ops, next_token = list(client.list_all(filter_text, page_size)), ""
    else:
        page = client.list_page(filter_text, page_size, page_token)
        ops, next_token = list(page.operations), page.next_page_token
    if as_json:
        render.emit_json(
            {"operations": [messages.to_dict(op) for op in ops], "nextPageToken": next_token}
        )
        return Exit.SUCCEEDED
    if not ops:
        click.echo("no operations" + (" match the filter" if filter_text else " yet"))
        return Exit.SUCCEEDED
    render.operations_table(ops, _console())
    if next_token:
        click.echo(f"more: --page-token {next_token} (or --all)", err=True)
    return Exit.SUCCEEDED


@click.command()
@click.argument("name")
@client_options
@rpc_command
def cancel(client: Client, name: str, as_json: bool) -> Exit:
    """Ask for an operation to be cancelled (a queued one at once, a running
    one when its handler stops)."""
    client.cancel(name)
    op = client.get(name)
    if as_json:
        render.emit_json(messages.to_dict(op))
    else:
        state = render.State.Name(messages.metadata_of(op).state)
        click.echo(f"{op.name} {state}" + ("" if op.done else " (cancel requested)"))
    return Exit.SUCCEEDED


@click.command()
@click.argument("name")
@client_options
@rpc_command
def delete(client: Client, name: str, as_json: bool) -> Exit:
    """Delete a finished operation."""
    client.delete(name)
    full = name if name.startswith("operations/") else f"operations/{name}"
    if as_json:
        render.emit_json({"name": full, "deleted": True})
    else:
        click.echo(f"deleted {full}")
    return Exit.SUCCEEDED


@click.command()
@click.argument("name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Give up after this many seconds (exit 4); default: wait until done.",
)
@client_options
@rpc_command
def wait(client: Client, name: str, timeout: float | None, as_json: bool) -> Exit:
    """Wait for an operation to finish; exit 0 succeeded, 1 failed,
    3 cancelled, 4 not done within --timeout."""
    try:
        op = client.wait(name, timeout)
    except KeyboardInterrupt:
        raise StoppedFollowing(name) from None
    if as_json:
        render.emit_json(messages.to_dict(op))
    else:
        render.print_operation(op)
    if not op.done:
        click.echo(
            f"{op.name} is not done after {timeout or 0:g} s; it goes on "
            f"(lrod wait {op.name} again, or lrod watch {op.name})",
            err=True,
        )
    return for_operation(op)


@click.command()
@click.argument("name")
@client_options
@rpc_command
def watch(client: Client, name: str, as_json: bool) -> Exit:
    """Follow an operation's progress to its end (a live bar on a terminal,
    one line per change otherwise; --json: one JSON object per change)."""
    if not as_json:
        return _follow(client, name, as_json=False)
    last = None
    for last in client.watch(name):
        render.emit_json(messages.to_dict(last), compact=True)
    assert last is not None
    return for_operation(last)


COMMANDS = (job_types, submit, get, list_operations, cancel, delete, wait, watch)
