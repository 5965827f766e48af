"""lrod: long-running operations over gRPC (google.longrunning).

Job authors need only what this module exports:

    from lrod import Registry, JobContext, RetryableJobError
"""

# src/lrod and generated/lrod are one package: extend the path over both.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from lrod.domain.errors import Code
from lrod.domain.retry import Backoff
from lrod.jobs.context import JobCancelled, JobContext
from lrod.jobs.errors import JobError, PermanentJobError, RetryableJobError
from lrod.jobs.registry import JobType, Registry

__all__ = [
    "Backoff",
    "Code",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobType",
    "PermanentJobError",
    "Registry",
    "RetryableJobError",
]
