"""Every default of lrod, in one place: frozen settings dataclasses.

A field declared with `setting(...)` is also a command-line flag: the CLI
(lrod.options) derives the flag's name, its `LROD_*` environment variable, its
type, its help and its default from the field, for each command named in
`commands`. Nothing else restates a default. To add a flag: add a field here
with `setting(...)`; the commands listed pick it up (README, "Adding a flag").

This module imports nothing heavy, so that `lrod --help` stays fast.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

_T = TypeVar("_T")

# The commands a setting can belong to.
SERVE = "serve"
WORKER = "worker"
DB = "db"  # `lrod db upgrade` and `lrod attempts`: they read the database directly
CLIENT = "client"  # every client command (submit, get, list, ...)
MAIN = "main"  # the `lrod` group itself (logging)


@dataclass(frozen=True)
class Flag:
    """How a settings field appears on the command line."""

    help: str
    commands: tuple[str, ...]
    # The flag's name without the dashes; default: the field's name.
    name: str | None = None
    # The least value accepted (numbers).
    minimum: float | None = None
    # Per command: a different help text or minimum ({"worker": {"minimum": 1}}).
    per_command: dict[str, dict[str, Any]] = field(default_factory=dict)
    metavar: str | None = None


def setting(
    default: _T,
    help: str,
    *,
    commands: tuple[str, ...],
    name: str | None = None,
    minimum: float | None = None,
    per_command: dict[str, dict[str, Any]] | None = None,
    metavar: str | None = None,
) -> _T:
    """A settings field that is also a flag. A `timedelta` is given in seconds
    on the command line; `None` means off (a flag with no default)."""
    flag = Flag(help, commands, name, minimum, per_command or {}, metavar)
    result: _T = field(default=default, metadata={"flag": flag})
    return result


class ConfigurationError(Exception):
    """A setting that cannot work (a port in use, a database that cannot be
    opened): its message names the problem and the fix, in one or two lines.
    The CLI prints it and exits 2, with no traceback."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite:///lrod.db"
DEFAULT_JOBS = "lrod.jobs.examples:registry"
DEFAULT_LEASE = timedelta(seconds=30)

_DATABASE = (SERVE, WORKER, DB)


@dataclass(frozen=True)
class LogSettings:
    level: str = setting(
        "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.", commands=(MAIN,), name="log-level"
    )
    json: bool = setting(False, "One JSON object per log line.", commands=(MAIN,), name="log-json")


@dataclass(frozen=True)
class ClientSettings:
    address: str = setting(DEFAULT_ADDRESS, "host:port of the lrod server.", commands=(CLIENT,))
    token: str | None = setting(
        None,
        "Bearer token to send (prefer LROD_TOKEN or --token-file: a flag shows in `ps`)"
        " (default: off).",
        commands=(CLIENT,),
    )
    token_file: str | None = setting(
        None,
        "File whose first line is the bearer token (default: off).",
        commands=(CLIENT,),
        metavar="FILE",
    )
    tls_ca: str | None = setting(
        None,
        "Speak TLS, trusting the CAs of this PEM file (default: off).",
        commands=(CLIENT,),
        metavar="FILE",
    )
    tls_client_cert: str | None = setting(
        None,
        "PEM client certificate for mTLS, with --tls-client-key (default: off).",
        commands=(CLIENT,),
        metavar="FILE",
    )
    tls_client_key: str | None = setting(
        None, "PEM key of --tls-client-cert (default: off).", commands=(CLIENT,), metavar="FILE"
    )


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = setting(
        4,
        "Jobs run at once in this process; 0 serves the API with no embedded workers.",
        commands=(SERVE, WORKER),
        minimum=0,
        per_command={WORKER: {"minimum": 1, "help": "Jobs run at once in this process."}},
    )
    lease: timedelta = setting(
        DEFAULT_LEASE,
        "Seconds a running job's claim lasts without a heartbeat; after that another "
        "worker may take the job over (the running worker renews it every third of it).",
        commands=(SERVE, WORKER),
        name="lease-seconds",
        minimum=0.5,
    )
    poll_interval: float = setting(
        1.0,
        "How often idle workers look for due jobs without a wake-up.",
        commands=(SERVE, WORKER),
        name="poll-seconds",
        minimum=0.01,
    )
    claim_ahead: int = setting(
        16,
        "Most jobs to claim beyond the free slots, into a local queue, so that a freed slot "
        "starts its next job without waiting for a claim (0: none). Only as many as the "
        "workers are expected to start within --claim-ahead-seconds are claimed ahead: a job "
        "claimed ahead shows RUNNING (and its start time) from its claim, and a higher-priority "
        "job submitted after it may start after it, for about that long at most.",
        commands=(SERVE, WORKER),
        minimum=0,
    )
    claim_ahead_wait: float = setting(
        0.05,
        "How long, at most, a job claimed ahead is expected to wait in the local queue: the "
        "pool claims ahead only concurrency x this / the mean time its handlers took "
        "(nothing until one has finished), so slow jobs are not claimed ahead at all.",
        commands=(SERVE, WORKER),
        name="claim-ahead-seconds",
        minimum=0,
    )
    hand_off: bool = setting(
        False,
        "Store a Submit already claimed by this process's own workers when they are idle "
        "(a free slot, the last claim found no due job, nothing announced since), instead "
        "of queueing it for the claim loop: the job starts without a claim round trip. "
        "Never for a scheduled job, a type these workers do not run, a job with a dedupe "
        "key, a BatchSubmit, or when a due queued job of at least its priority is stored.",
        commands=(SERVE,),
    )
    # Claims outstanding at once (their sizes counted against the room);
    # None: the store's choice for its database (store.claims_in_flight).
    claims_in_flight: int | None = None
    progress_interval: float = 0.2
    cancel_grace: float = 5.0
    drain_grace: float = setting(
        10.0,
        "On SIGTERM or Ctrl-C, how long running jobs get to finish (a second Ctrl-C "
        "cuts it short).",
        commands=(SERVE, WORKER),
        name="drain-seconds",
        minimum=0,
    )
    worker_id: str = field(default_factory=default_worker_id)

    @property
    def rescue_interval(self) -> float:
        """How often to look for jobs whose lease expired."""
        return max(0.25, min(self.poll_interval, self.lease.total_seconds() / 4))


@dataclass(frozen=True)
class ManagerSettings:
    # The longest a WaitOperation is held, whatever its timeout and deadline.
    max_wait: float = setting(
        60.0,
        "The longest WaitOperation holds a call.",
        commands=(SERVE,),
        name="max-wait-seconds",
        minimum=0,
    )
    # Answer a little before the caller's deadline, so it gets the state
    # rather than DEADLINE_EXCEEDED.
    deadline_margin: float = 0.05


@dataclass(frozen=True)
class PresenceSettings:
    """Worker presence (worker/presence.py): the workers table's heartbeats."""

    # How often a worker refreshes its row (and removes stale rows of others).
    interval: float = 5.0
    # A row not refreshed for this long belongs to a worker that is gone.
    stale_after: float = 30.0


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP/JSON front door's bounds and how it names itself."""

    public_url: str | None = setting(
        None,
        "The door's public base URL, e.g. https://jobs.example.com, for absolute Location "
        "headers; without it they are built from the request (default: off).",
        commands=(SERVE,),
        name="http-public-url",
    )
    trusted_proxies: str = setting(
        "",
        "Comma-separated addresses or networks of reverse proxies whose X-Forwarded-Proto "
        "and X-Forwarded-Host are believed when building Location URLs (default: none).",
        commands=(SERVE,),
        name="http-trusted-proxies",
    )
    read_timeout: float = setting(
        30.0,
        "Seconds a client has to send a request's body (then 408).",
        commands=(SERVE,),
        name="http-read-timeout",
        minimum=0.1,
    )
    idle_timeout: float = setting(
        15.0,
        "Seconds a connection may stay without a complete request (slow or idle clients).",
        commands=(SERVE,),
        name="http-idle-timeout",
        minimum=0.1,
    )
    max_connections: int = setting(
        1000,
        "Open HTTP connections at most; more are answered 503 and closed.",
        commands=(SERVE,),
        name="http-max-connections",
        minimum=1,
    )


@dataclass(frozen=True)
class SecuritySettings:
    """TLS, authentication and the safe default (docs/security.md)."""

    tls_cert: str | None = setting(
        None,
        "PEM certificate chain for the gRPC port and the HTTP door; re-read when it changes"
        " or on SIGHUP (default: off).",
        commands=(SERVE,),
        metavar="FILE",
    )
    tls_key: str | None = setting(
        None, "PEM private key of --tls-cert (default: off).", commands=(SERVE,), metavar="FILE"
    )
    tls_client_ca: str | None = setting(
        None,
        "PEM CA bundle: client certificates are then required and verified (mTLS) (default: off).",
        commands=(SERVE,),
        metavar="FILE",
    )
    auth_token_file: str | None = setting(
        None,
        "TOML file of bearer tokens (principal, SHA-256 of the token, roles); re-read on"
        " change (default: off).",
        commands=(SERVE,),
        metavar="FILE",
    )
    auth_jwks: str | None = setting(
        None,
        "JWKS file or https:// URL to verify JWT bearer tokens with; needs"
        " --jwt-issuer and --jwt-audience (default: off).",
        commands=(SERVE,),
        metavar="FILE|URL",
    )
    auth_jwt_issuer: str | None = setting(
        None, "The `iss` JWTs must carry (default: off).", commands=(SERVE,), name="jwt-issuer"
    )
    auth_jwt_audience: str | None = setting(
        None,
        "The `aud` JWTs must carry (default: off).",
        commands=(SERVE,),
        name="jwt-audience",
    )
    auth_jwt_algorithms: str = setting(
        "RS256,ES256",
        "Accepted JWT algorithms, comma-separated (asymmetric only).",
        commands=(SERVE,),
        name="jwt-algorithms",
        metavar="ALGS",
    )
    auth_jwt_principal_claim: str = setting(
        "sub",
        "The JWT claim that names the principal.",
        commands=(SERVE,),
        name="jwt-principal-claim",
        metavar="NAME",
    )
    auth_jwt_roles_claim: str = setting(
        "roles",
        "The JWT claim that lists the principal's roles.",
        commands=(SERVE,),
        name="jwt-roles-claim",
        metavar="NAME",
    )
    auth_jwt_leeway: float = setting(
        30.0,
        "Seconds of clock skew allowed on a JWT's exp and nbf.",
        commands=(SERVE,),
        name="jwt-leeway-seconds",
        minimum=0,
        metavar="SECONDS",
    )
    auth_client_san: str | None = setting(
        None,
        "With --tls-client-ca: take the principal from the client certificate's `uri` or"
        " `dns` subjectAltName (default: off).",
        commands=(SERVE,),
        metavar="uri|dns",
    )
    admins: str | None = setting(
        None,
        "Comma-separated principals given the admin role (read, list and cancel every"
        " owner's operations) (default: off).",
        commands=(SERVE,),
        metavar="NAMES",
    )
    allow_unauthenticated: bool = setting(
        False,
        "Serve an address other than loopback without authentication, on purpose"
        " (a warning is logged at start).",
        commands=(SERVE,),
        name="insecure",
    )
    http_allowed_hosts: str | None = setting(
        None,
        "Comma-separated names the HTTP door's Host header may carry, `*` for any;"
        " unset: the loopback names and the bound address (default: off).",
        commands=(SERVE,),
        metavar="NAMES",
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Completion webhooks: who may be called, how they are signed, and the
    retry schedule of the dispatchers in worker processes."""

    secrets: str | None = setting(
        None,
        "Comma-separated Standard Webhooks secrets (whsec_BASE64); every one signs each "
        "delivery, so a new secret can be added before the old one is removed. Needed "
        "by worker processes to send webhooks (default: off).",
        commands=(SERVE, WORKER),
        name="webhook-secrets",
    )
    schemes: str = setting(
        "https",
        "The URL schemes webhook targets may use: https, or https,http to allow http too.",
        commands=(SERVE, WORKER),
        name="webhook-schemes",
    )
    allow: str | None = setting(
        None,
        "Comma-separated hosts, addresses or networks that webhooks may reach although "
        "they are loopback, private or link-local, e.g. 127.0.0.1,10.1.0.0/16 (default: off).",
        commands=(SERVE, WORKER),
        name="webhook-allow",
    )
    schedule: str = setting(
        "5,300,1800,7200,18000,36000,36000",
        "Seconds before each retry of a failed delivery (each with +-20% jitter); after "
        "the last the delivery is marked failed.",
        commands=(SERVE, WORKER),
        name="webhook-schedule",
    )
    timeout: float = setting(
        10.0,
        "Seconds one delivery attempt may take.",
        commands=(SERVE, WORKER),
        name="webhook-timeout",
        metavar="SECONDS",
        minimum=0.1,
    )
    per_host: int = setting(
        4,
        "Deliveries in flight at once to one host (per process).",
        commands=(SERVE, WORKER),
        name="webhook-per-host",
        metavar="N",
        minimum=1,
    )
    concurrency: int = setting(
        16,
        "Deliveries in flight at once in this process; 0 sends none.",
        commands=(SERVE, WORKER),
        name="webhook-concurrency",
        metavar="N",
        minimum=0,
    )
    poll_interval: float = setting(
        1.0,
        "How often dispatchers look for due deliveries without a wake-up.",
        commands=(SERVE, WORKER),
        name="webhook-poll-seconds",
        metavar="SECONDS",
        minimum=0.01,
    )
    # The most of a receiver's answer that is read.
    max_response_bytes: int = 4096


@dataclass(frozen=True)
class QuotaSettings:
    """Limits per principal and for the whole server; 0 turns one off."""

    submit_rate: float = setting(
        50.0,
        "Submits per second per principal (a token bucket; BatchSubmit counts each job).",
        commands=(SERVE,),
        name="quota-submit-rate",
        metavar="PER_S",
        minimum=0,
    )
    submit_burst: int = setting(
        200,
        "Submits per principal allowed at once above the rate (the bucket's size).",
        commands=(SERVE,),
        name="quota-submit-burst",
        metavar="N",
        minimum=0,
    )
    active_operations: int = setting(
        10_000,
        "QUEUED + RUNNING operations per principal.",
        commands=(SERVE,),
        name="quota-active-operations",
        metavar="N",
        minimum=0,
    )
    concurrent_waits: int = setting(
        100,
        "WaitOperation and WatchOperation calls open at once per principal.",
        commands=(SERVE,),
        name="quota-concurrent-waits",
        metavar="N",
        minimum=0,
    )
    request_bytes: int = setting(
        1024 * 1024,
        "The largest Submit or BatchSubmit request, in bytes.",
        commands=(SERVE,),
        name="quota-request-bytes",
        metavar="BYTES",
        minimum=0,
    )
    queued_operations: int = setting(
        100_000,
        "QUEUED operations in the whole database (every principal).",
        commands=(SERVE,),
        name="limit-queued-operations",
        metavar="N",
        minimum=0,
    )
    queued_input_bytes: int = setting(
        1024 * 1024 * 1024,
        "Bytes of input of the QUEUED operations in the whole database.",
        commands=(SERVE,),
        name="limit-queued-bytes",
        metavar="BYTES",
        minimum=0,
    )


@dataclass(frozen=True)
class Settings:
    """One lrod process: what `lrod serve` and `lrod worker` run."""

    address: str = setting(DEFAULT_ADDRESS, "host:port to listen on (gRPC).", commands=(SERVE,))
    database_url: str = setting(
        DEFAULT_DATABASE_URL,
        "sqlite:///PATH (relative to the working folder) or postgresql://USER@HOST/DB.",
        commands=_DATABASE,
    )
    # The job registry the CLI loads (module:attribute).
    jobs: str = setting(
        DEFAULT_JOBS, "The job registry to load, as module:attribute.", commands=(SERVE, WORKER)
    )
    processes: int = setting(
        1,
        "Serving processes on the one port (SO_REUSEPORT), each with the API and its own "
        "--concurrency workers: one per core to use every core.",
        commands=(SERVE,),
        minimum=1,
    )
    # Bind the ports with SO_REUSEPORT (the children of --processes N).
    reuse_port: bool = False
    serve_api: bool = True
    workers: WorkerSettings | None = field(default_factory=WorkerSettings)
    manager: ManagerSettings = field(default_factory=ManagerSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    migrate: bool = True
    janitor_interval: float = 60.0
    janitor_batch: int = 500
    # host:port for Prometheus metrics over HTTP; None: not served.
    metrics_address: str | None = setting(
        None,
        "host:port to serve Prometheus metrics on, e.g. 127.0.0.1:9464 (default: off).",
        commands=(SERVE, WORKER),
    )
    health_interval: float = setting(
        2.0,
        "Seconds between the database checks behind grpc.health.v1.",
        commands=(SERVE,),
        minimum=0.05,
    )
    # host:port for the HTTP/JSON front door; None: not served.
    http_address: str | None = setting(
        None,
        "host:port for the HTTP/JSON front door (202 + Location) (default: off).",
        commands=(SERVE,),
    )
    console: bool = setting(
        True,
        "Serve the operator's web console at /console/ on the HTTP address.",
        commands=(SERVE,),
    )
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)


# The classes whose flags the CLI offers, in the order --help lists them.
FLAG_SOURCES: tuple[type, ...] = (
    LogSettings,
    ClientSettings,
    Settings,
    WorkerSettings,
    ManagerSettings,
    HttpSettings,
    WebhookSettings,
    SecuritySettings,
    QuotaSettings,
)
