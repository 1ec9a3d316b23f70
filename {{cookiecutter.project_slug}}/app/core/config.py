"""The machinery's settings: every knob of the service's machinery, read from the environment or
`.env`. The template keeps this file up to date (cruft update); the service's own settings go in
`app/settings.py`, which extends these."""

from pathlib import Path
{% if cookiecutter.task_queue == "celery" -%}
from typing import Annotated, Any, Literal, Self
{%- else -%}
from typing import Annotated, Any, Self
{%- endif %}

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.concurrency import usable_cpus
from app.core.database_url import to_driver_url
from app.core.logging import LogFormat, LogLevel

DatabaseUrl = Annotated[str, AfterValidator(to_driver_url)]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list written as the shell writes one: `ALLOWED_HOSTS=api.example.com,*.example.org`.
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


def _cpu_workers_share(fields: dict[str, Any]) -> int:
    """This server process's share of the CPUs, less one for its event loop."""
    workers: int = fields["web_concurrency"]
    return max(1, usable_cpus() // workers - 1)


def _connection_pool_share(fields: dict[str, Any]) -> int:
    """This server process's share of the connection budget, at most 10."""
    processes: int = fields["web_concurrency"] * fields["replicas"]
    budget: int = fields["db_connection_budget"]
    return max(1, min(10, budget // processes))


# `.env` beside pyproject.toml, wherever the server is started from.
ENV_FILE = Path(__file__).resolve().parents[2] / ".env"


class CoreSettings(BaseSettings):
    # hide_input_in_errors: a mistyped setting is named, its value (a password in a URL) is not.
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, extra="ignore", validate_default=True, hide_input_in_errors=True
    )

    project_name: str = {{ cookiecutter.project_name | python_string }}

    # The interactive docs (/docs, /redoc) and the OpenAPI schema (/openapi.json). The
    # production image turns them off: they map the whole API for anyone who can reach it.
    docs_enabled: bool = True
    # Host names (the `Host` header) the service answers to; any other gets a 400, so a forged
    # Host never reaches a URL the app builds. `*.example.com` allows subdomains; `*` allows any.
    allowed_hosts: CommaSeparated = ["localhost", "127.0.0.1", "[::1]"]
    # Addresses or networks of the reverse proxies whose X-Forwarded-For and X-Forwarded-Proto
    # are believed (the client's address and scheme); from any other client they are ignored.
    forwarded_allow_ips: CommaSeparated = ["127.0.0.1", "::1"]

    # Logs: the lowest level written, and `text` (for people) or `json` (one object a line).
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    # One line a request, when it is answered (logger "app.access"): client, request line,
    # status, milliseconds.
    access_log: bool = True
    # The stall monitor logs each time the event loop is blocked longer than this many seconds,
    # naming the request and the line (see app.core.stalls).
    stall_monitor_enabled: bool = True
    stall_threshold: float = Field(default=0.1, ge=0.01)
    # /metrics, in the Prometheus text format (see app.core.metrics), answered only to these
    # client addresses or networks (as the server sees them: behind a proxy, what
    # FORWARDED_ALLOW_IPS lets it trust); any other client gets 404.
    metrics_enabled: bool = True
    metrics_allowed_clients: CommaSeparated = ["127.0.0.1", "::1"]

    # Plain URLs (postgresql://, postgres://, sqlite:///) are mapped to this project's drivers.
    # The default is an embedded SQLite file, so a fresh clone runs with no database server.
    database_url: DatabaseUrl = "sqlite:///./app.db"

    # Capacity: one set of knobs, from which every limit is derived (see the README).
    # Server processes: workers on this machine (scripts/serve.sh starts WEB_CONCURRENCY of
    # them) and replicas of the service (containers, machines). They share the budgets.
    web_concurrency: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)
    # Connections the whole service (every replica and worker) may hold open on PostgreSQL:
    # below its max_connections (100 by default), with room for migrations and admin sessions.
    db_connection_budget: int = Field(default=80, ge=1)
    # Connections each server process holds open (default: its share of the budget, at most 10):
    # at most this many requests use the database at once; the others wait for a free
    # connection, holding no thread.
    db_pool_size: int = Field(default_factory=_connection_pool_share, ge=1)
    # Seconds a request waits for a free connection before it is refused as overloaded (503).
    db_pool_timeout: float = Field(default=5.0, gt=0)
    # Threads for blocking work: `def` handlers and dependencies, and run_in_thread(). A request
    # holding a connection needs one to finish, so there must be more threads than connections.
    worker_threads: int = Field(default=40, ge=2)

    # Seconds. Bounded waits are what turn a database outage into a fast 503 instead of a hang.
    db_connect_timeout: float = Field(default=3.0, gt=0)
    db_statement_timeout: float = Field(default=15.0, gt=0)
    db_ping_timeout: float = Field(default=2.0, gt=0)

    # Pure-Python CPU work (see app.core.concurrency): worker processes (by default this server
    # process's share of the CPUs it may use, less one for its event loop), jobs that may wait
    # for a worker before new ones are refused (503), and each job's time limit in seconds.
    cpu_workers: int = Field(default_factory=_cpu_workers_share, ge=1)
    cpu_queue_size: int = Field(default=4, ge=0)
    cpu_job_timeout: float = Field(default=30.0, gt=0)
{%- if cookiecutter.task_queue == "celery" %}
    # Where that work runs: `processes`, this machine's process pool (needing nothing), or
    # `celery`, the workers of a task queue whose broker is CELERY_BROKER_URL (a Redis URL; see
    # app.core.task_queue). With `celery`, CPU_WORKERS counts this process's jobs
    # that workers run at once.
    cpu_backend: Literal["processes", "celery"] = "processes"
    celery_broker_url: str = ""
{%- endif %}
    # The old name of CPU_WORKERS, read only to refuse it: a deployment that still sets it learns
    # of the rename at start-up, instead of running with the default.
    process_pool_workers: int | None = Field(default=None, exclude=True, repr=False)

    # The shared client for calls to other services (HttpClientDep): seconds for each step of a
    # call (connecting, sending, each read, waiting for a free connection), and its pool.
    http_timeout: float = Field(default=10.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)
    http_max_keepalive_connections: int = Field(default=20, ge=0)

    # Request bodies larger than this many bytes are refused with 413 as they are read (FastAPI's
    # max_body_size: a route may allow more), and a body must arrive in full within this many
    # seconds of the app's first read of it (else 408): a client that sends a byte now and then
    # holds no request open for long.
    max_request_body_bytes: int = Field(default=256 * 1024, ge=1024)
    request_body_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _no_renamed_setting(self) -> Self:
        if self.process_pool_workers is not None:
            raise ValueError("PROCESS_POOL_WORKERS was renamed: set CPU_WORKERS instead")
        return self

{%- if cookiecutter.task_queue == "celery" %}

    @model_validator(mode="after")
    def _task_queue_has_a_broker(self) -> Self:
        if self.cpu_backend == "celery" and not self.celery_broker_url:
            raise ValueError(
                "CPU_BACKEND=celery needs CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0"
            )
        return self
{%- endif %}

    @model_validator(mode="after")
    def _connections_fit_the_budget(self) -> Self:
        if not self.database_url.startswith("postgresql"):
            return self  # an embedded SQLite file has no connection limit
        processes = self.web_concurrency * self.replicas
        connections, budget = processes * self.db_pool_size, self.db_connection_budget
        if connections > budget:
            raise ValueError(
                f"{processes} server process(es) (WEB_CONCURRENCY {self.web_concurrency} x "
                f"REPLICAS {self.replicas}) x DB_POOL_SIZE {self.db_pool_size} = {connections} "
                f"database connections, more than DB_CONNECTION_BUDGET ({budget}): set "
                f"DB_POOL_SIZE to {budget // processes or 1} or less, or raise the budget (and "
                "PostgreSQL's max_connections), or put PgBouncer in front"
            )
        return self

    @model_validator(mode="after")
    def _threads_outnumber_connections(self) -> Self:
        if self.worker_threads <= self.db_pool_size:
            raise ValueError(
                f"WORKER_THREADS ({self.worker_threads}) must be larger than DB_POOL_SIZE "
                f"({self.db_pool_size}): a request holding a connection needs a thread to finish"
            )
        return self
