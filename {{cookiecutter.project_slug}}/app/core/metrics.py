"""The service's Prometheus metrics, and their exposition (prometheus-client).

With several server processes (WEB_CONCURRENCY workers), set PROMETHEUS_MULTIPROC_DIR to an empty
directory before they start: each process then writes its values there, and `/metrics`, whichever
process answers it, adds them all up (prometheus-client's multiprocess mode).
"""

import ipaddress
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "client_allowed", "exposition", "process_exits"]

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran its heartbeat",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOOP_STALLS = Counter("event_loop_stalls", "Event loop stalls longer than STALL_THRESHOLD")
LOOP_STARVATIONS = Counter(
    "event_loop_starvations",
    "Loop lags longer than STALL_THRESHOLD that the machine caused (the process not run)",
)
REQUESTS = Counter("http_requests", "Requests answered", ["method", "route", "status"])
REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer a request", ["method", "route"]
)
# Gauges: each process's value, summed over the processes alive.
THREADS_IN_USE = Gauge(
    "worker_threads_in_use", "Threads running blocking work (def handlers, run_in_thread)",
    multiprocess_mode="livesum",
)  # fmt: skip
DB_CONNECTIONS_IN_USE = Gauge(
    "db_pool_connections_in_use", "Database connections checked out of the pool",
    multiprocess_mode="livesum",
)  # fmt: skip
DB_OVERFLOW = Gauge(
    "db_pool_overflow", "Connections open beyond DB_POOL_SIZE", multiprocess_mode="livesum"
)
DB_WAITERS = Gauge(
    "db_pool_waiters", "Requests waiting for a database connection", multiprocess_mode="livesum"
)
CPU_JOBS_RUNNING = Gauge(
    "cpu_jobs_running", "Jobs running in the process pool", multiprocess_mode="livesum"
)
CPU_JOBS_QUEUED = Gauge(
    "cpu_jobs_queued", "Jobs waiting for a process-pool worker", multiprocess_mode="livesum"
)


def exposition() -> bytes:
    """Every metric in the Prometheus text format (reads files in multiprocess mode: blocking)."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_exits() -> None:
    """Drop this process's gauges from the sums (multiprocess mode), as it shuts down."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def client_allowed(host: str | None, allowed: list[str]) -> bool:
    """Whether a client's address is one of `allowed` (addresses or networks, `10.0.0.0/8`)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False  # a test client's made-up name, a Unix socket
    return any(address in ipaddress.ip_network(each, strict=False) for each in allowed)
