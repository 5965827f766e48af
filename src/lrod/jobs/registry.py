"""The job type registry: names mapped to handlers with declared messages."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message

from lrod.domain.retry import Backoff, JobPolicy
from lrod.jobs.context import JobContext

Handler = Callable[[JobContext, Any], Awaitable[Message] | Message]
# A job type's check of its input at Submit, before the job exists: the
# problems as (field, description) pairs, the field relative to the input
# message ("rows"); none for a good input. Any bad input is refused with
# INVALID_ARGUMENT, reason INVALID_INPUT, each problem a field violation
# `input.FIELD`. Keep it quick and pure: it runs on the request path.
Validator = Callable[[Any], Iterable[tuple[str, str]]]

TYPE_URL_PREFIX = "type.googleapis.com/"
DEFAULT_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    input_type: type[Message]
    output_type: type[Message]
    max_attempts: int = 3
    default_timeout: timedelta = timedelta(minutes=10)
    max_timeout: timedelta = timedelta(hours=1)
    backoff: Backoff = field(default_factory=Backoff)
    retention: timedelta = DEFAULT_RETENTION
    retryable_exceptions: tuple[type[BaseException], ...] = ()
    retry_timeouts: bool = True
    description: str = ""
    # The completion webhook of a Submit that names none (None: no webhook).
    default_notify_url: str | None = None
    validate: Validator | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    @property
    def input_type_url(self) -> str:
        return TYPE_URL_PREFIX + self.input_type.DESCRIPTOR.full_name

    @property
    def output_type_url(self) -> str:
        return TYPE_URL_PREFIX + self.output_type.DESCRIPTOR.full_name


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> JobType:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        if job_type.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._types[job_type.name] = job_type
        return job_type

    def job(
        self, name: str, *, input: type[Message], output: type[Message], **options: Any
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.job("x.y", input=XJob, output=XResult)`."""

        def decorate(handler: Handler) -> Handler:
            doc = (inspect.getdoc(handler) or "").split("\n", 1)[0]
            options.setdefault("description", doc)
            self.register(JobType(name, handler, input, output, **options))
            return handler

        return decorate

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def retention(self, name: str) -> timedelta:
        """How long finished operations of `name` are kept (a job type that
        is no longer registered gets the default)."""
        job_type = self._types.get(name)
        return job_type.retention if job_type else DEFAULT_RETENTION

    def policy(self, name: str) -> JobPolicy:
        """The job type's retry backoff and retention, which the worker and
        the rescuer both apply (the defaults for a type no longer registered)."""
        job_type = self._types.get(name)
        if job_type is None:
            return JobPolicy(retention=DEFAULT_RETENTION)
        return JobPolicy(job_type.backoff, job_type.retention)

    def __iter__(self) -> Iterator[JobType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._types)


def load_registry(spec: str) -> Registry:
    """Load `module:attribute`, a Registry or a callable returning one."""
    module_name, _, attribute = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "registry").split("."):
        target = getattr(target, part)
    if callable(target) and not isinstance(target, Registry):
        target = target()
    if not isinstance(target, Registry):
        raise TypeError(f"{spec} is not a lrod Registry")
    return target
