"""Load benchmark: both bakes beside the bare stack and the docs-style apps, in one run.

    uv run python bench/run.py [--duration 30] [--rounds 3] [--only async-bake,sync-bake]
                               [--baseline REF]

Bakes both modes, starts a throwaway PostgreSQL on loopback with 10,000 items, and serves each
app with one granian worker (uvloop; each bake by its production command, scripts/serve.sh),
one at a time, on the same data, over rounds: each round measures every app once, in an order
rotated from round to round (the first app measured on a cold machine ran 27 to 33 % slower),
and the table gives medians, with the spread of rates and CPU. For each it measures
`GET /api/v1/items/{random id}` with wrk at 64 and 256 connections (requests per second,
latency, errors), the server's CPU time (all its processes) and the database statements per
request, then `/health` latency while CPU-heavy primes requests run (counting the jobs that
completed meanwhile), and during a flood of them. It prints a
table with ratios to the bare app, of each bake to its docs-style twin, and of each bake
with its stall monitor and metrics switched off to the bake as shipped. The machine is
shared and noisy: compare ratios within one run, not absolute figures across runs: for a
change's before and after, `--baseline REF` also bakes the template as it was at git REF and
measures those bakes in the same rounds (as async-bake@REF and sync-bake@REF).
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psycopg2
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.postgres import find_bindir, free_port, throwaway_postgres  # noqa: E402
from tests.serve import children, command_line  # noqa: E402

APPS_DIR = ROOT / "bench" / "apps"
WRK_SCRIPT = ROOT / "bench" / "items.lua"
ITEMS = 10_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class App:
    name: str
    module: str  # the server's APP argument
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    twin: str | None = None  # the app this one is compared with (its docs-style twin)
    items_only: bool = False  # measure item reads only (the embedded SQLite default)


@dataclass
class Result:
    figures: dict[str, float | str] = field(default_factory=dict)
    spreads: dict[str, tuple[float, float]] = field(default_factory=dict)


SPREAD = ("rps64", "cpu_us")  # figures shown with their lowest and highest over the rounds


def median_of(results: list[Result]) -> Result:
    """Each figure's median over the rounds that measured it, and the spread of SPREAD's."""
    merged = Result()
    for key in {key for result in results for key in result.figures}:
        values = [float(result.figures[key]) for result in results if key in result.figures]
        merged.figures[key] = statistics.median(values)
        if key in SPREAD:
            merged.spreads[key] = (min(values), max(values))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per load phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each app once a round")
    parser.add_argument("--only", help="comma-separated app names to run (default: all)")
    parser.add_argument("--baseline", metavar="REF", help="also measure the bakes of git REF")
    args = parser.parse_args()
    bindir = required_tools()

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        bakes = {mode: bake(work, mode) for mode in ("async", "sync")}
        if args.baseline:
            template = template_at(args.baseline, work / "baseline")
            for mode in ("async", "sync"):
                bakes[f"{mode}@{args.baseline}"] = bake(work / "baseline", mode, template=template)
        settings = ("max_connections=300", "shared_preload_libraries=pg_stat_statements")
        with throwaway_postgres(bindir, *settings) as server:
            url = prepare_database(server.url, bakes["async"])
            sqlite_url = prepare_sqlite(work / "bench.db", bakes["async"])
            apps = all_apps(bakes, url, sqlite_url, args.baseline)
            if args.only:
                apps = [app for app in apps if app.name in args.only.split(",")]
            runs: dict[str, list[Result]] = {app.name: [] for app in apps}
            for round_ in range(args.rounds):
                for app in rotated(apps, round_, args.rounds):
                    print(f"-- round {round_ + 1}: {app.name}", file=sys.stderr, flush=True)
                    try:
                        result = measure(app, url, args.duration)
                    except (RuntimeError, subprocess.SubprocessError) as error:
                        print(f"{app.name} failed: {error}", file=sys.stderr)
                        result = Result()
                    print(f"   {result.figures}", file=sys.stderr, flush=True)
                    runs[app.name].append(result)
            print_table(apps, {name: median_of(results) for name, results in runs.items()},
                        args.duration, args.rounds)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


T = TypeVar("T")


def required_tools() -> Path:
    """wrk, and the PostgreSQL server's binaries (their folder), or exit saying what is missing."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (initdb, pg_ctl)")
    return bindir


def rotated(items: list[T], round_: int, rounds: int) -> list[T]:
    """`items` in the order of round `round_` of `rounds`: each starts a round in turn."""
    shift = round_ * len(items) // rounds
    return items[shift:] + items[:shift]


def template_at(ref: str, folder: Path) -> Path:
    """The template's files as they were at git `ref`, in `folder`/template."""
    template = folder / "template"
    template.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=False
    )
    if archive.returncode != 0:
        sys.exit(f"--baseline {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(template)], input=archive.stdout, check=True)
    return template


def bake(work: Path, mode: str, task_queue: str = "none", template: Path = ROOT) -> Path:
    config = work / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {work / 'cc'}\nreplay_dir: {work / 'replay'}\n")
    answers = {"database_access": mode, "task_queue": task_queue, "project_slug": f"bench-{mode}"}
    return Path(
        cookiecutter(
            str(template),
            no_input=True,
            extra_context=answers,
            output_dir=str(work),
            config_file=str(config),
        )
    )


def prepare_database(admin_url: str, project: Path) -> str:
    """Create the `bench` database with the bakes' schema and ITEMS items; return its URL."""
    with connect(admin_url) as cursor:
        cursor.execute("CREATE DATABASE bench")
    url = admin_url.rsplit("/", 1)[0] + "/bench"
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    with connect(url) as cursor:
        cursor.execute("CREATE EXTENSION pg_stat_statements")
        cursor.execute(
            "INSERT INTO items (title, description) "
            "SELECT 'item ' || n, repeat('some text ', 20) FROM generate_series(1, %s) AS n",
            (ITEMS,),
        )
        cursor.execute("VACUUM ANALYZE items")
    return url


@contextmanager
def connect(url: str) -> Iterator["psycopg2.extensions.cursor"]:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def prepare_sqlite(path: Path, project: Path) -> str:
    """An SQLite file with the bakes' schema and ITEMS items; return its URL."""
    url = f"sqlite:///{path}"
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=project,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO items (title, description) VALUES (?, ?)",
            ((f"item {n}", "some text " * 20) for n in range(1, ITEMS + 1)),
        )
    return url


UNWATCHED = {"STALL_MONITOR_ENABLED": "false", "METRICS_ENABLED": "false"}


def all_apps(
    bakes: dict[str, Path], url: str, sqlite_url: str, baseline: str | None = None
) -> list[App]:
    docs_env = {"DATABASE_URL": url}
    # The bakes of --baseline REF, each compared with the same docs-style twin as today's.
    baselines = [
        App(f"{mode}-bake@{baseline}", "app.main:app", bakes[f"{mode}@{baseline}"],
            {"DATABASE_URL": url}, twin)
        for mode, twin in (("async", "docs-async"), ("sync", "docs-sync-pool40"))
        if baseline
    ]  # fmt: skip
    return [*baselines,
        App("bare", "bare:app", APPS_DIR, docs_env),
        App("docs-async", "docs_async:app", APPS_DIR, docs_env),
        App("async-bake", "app.main:app", bakes["async"], {"DATABASE_URL": url}, "docs-async"),
        App("docs-sync", "docs_sync:app", APPS_DIR, docs_env),
        App("docs-sync-pool40", "docs_sync:app", APPS_DIR, {**docs_env, "DB_POOL_SIZE": "40"}),
        App("sync-bake", "app.main:app", bakes["sync"], {"DATABASE_URL": url}, "docs-sync-pool40"),
        # The cost of watching: each bake with its stall monitor and metrics switched off.
        App("async-unwatched", "app.main:app", bakes["async"], {**UNWATCHED, "DATABASE_URL": url},
            "async-bake"),
        App("sync-unwatched", "app.main:app", bakes["sync"], {**UNWATCHED, "DATABASE_URL": url},
            "sync-bake"),
        App("async-bake-sqlite", "app.main:app", bakes["async"], {"DATABASE_URL": sqlite_url},
            items_only=True),
        App("sync-bake-sqlite", "app.main:app", bakes["sync"], {"DATABASE_URL": sqlite_url},
            items_only=True),
    ]  # fmt: skip


def measure(app: App, url: str, duration: int) -> Result:
    result = Result()
    port = free_port()
    env = {**os.environ, **app.env}
    if app.module == "app.main:app":  # a bake: its production command, scripts/serve.sh
        command, env = production(env, port)
    else:  # the same server, with the same settings
        command = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
            "--http", "1", "--no-ws", "--port", str(port), "--workers-kill-timeout", "10",
            app.module,
        ]  # fmt: skip
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(command, cwd=app.cwd, env=env, stdout=log, stderr=log, text=True)
        try:
            wait_until_up(port, server)
            wrk(port, 64, 3)  # warm up: connections, caches, prepared statements
            on_postgres = app.env["DATABASE_URL"] == url
            if on_postgres:
                reset_statements(url)
            cpu_before = tree_cpu_seconds(server.pid)
            run = wrk(port, 64, duration)
            cpu = tree_cpu_seconds(server.pid) - cpu_before
            requests = max(run["requests"], 1)
            if on_postgres:
                statements = count_statements(url)
                result.figures["round_trips"] = count_round_trips(port, url)
                result.figures["statements"] = statements / requests
            result.figures.update(
                rps64=run["requests"] / run["seconds"],
                p50_64=run["p50"] / 1000,
                p99_64=run["p99"] / 1000,
                max64=run["max"] / 1000,
                errors64=run["errors"],
                cpu_us=cpu / requests * 1e6 if run["requests"] else float("nan"),
            )
            run = wrk(port, 256, duration)
            result.figures.update(
                rps256=run["requests"] / run["seconds"],
                p99_256=run["p99"] / 1000,
                max256=run["max"] / 1000,
                errors256=run["errors"],
            )
            if app.items_only:
                return result
            result.figures.update(health_under_primes(port, clients=4, below=300_000, seconds=6))
            flood = health_under_primes(
                port, clients=50, below=1_000_000, seconds=6, prefix="flood"
            )
            result.figures.update(flood)
            result.figures["recovered_s"] = seconds_until_primes_answer(port)
        finally:
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
                result.figures["shutdown_s"] = time.monotonic() - started
            except subprocess.TimeoutExpired:
                server.kill()  # still draining after 30 s: shown as "inf"
                server.wait()
                result.figures["shutdown_s"] = float("inf")
            log.seek(0)
            tail = log.read()[-2000:]
            if server.returncode not in (0, -signal.SIGINT) and tail:
                print(f"{app.name} log:\n{tail}", file=sys.stderr)
    return result


def wait_until_up(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if get(port, "/health", timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not start within 60 s")


def get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    command = [
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    run: dict[str, float] = json.loads(line.removeprefix("JSON "))
    run["seconds"] = run.pop("duration_us") / 1e6
    run["errors"] = sum(run.pop(key) for key in ("connect", "read", "write", "status", "timeout"))
    return run


def production(env: dict[str, str], port: int) -> tuple[list[str], dict[str, str]]:
    """A bake's production command (scripts/serve.sh: granian) on `port`, and its environment,
    with this environment's granian."""
    path = f"{Path(sys.executable).parent}:{env['PATH']}"
    return ["./scripts/serve.sh"], {**env, "PORT": str(port), "PATH": path}


def server_worker(pid: int) -> int:
    """The pid of the (first) worker process of the granian server `pid`, once it has one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in children(pid):
            if "granian" in command_line(child):
                return child
        time.sleep(0.1)
    raise RuntimeError(f"no worker process under {pid}")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and every process under it (granian's workers, the process pool)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process just ended
            continue
        process = int(stat.parent.name)
        parents[process] = int(fields[1])
        times[process] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    tree, found = {pid}, {pid}
    while found:
        found = {process for process, parent in parents.items() if parent in found}
        tree |= found
    return sum(times.get(process, 0.0) for process in tree)


def reset_statements(url: str) -> None:
    with connect(url) as cursor:
        cursor.execute("SELECT pg_stat_statements_reset()")


def count_statements(url: str) -> int:
    """Statements the apps ran since the reset (BEGIN, COMMIT and pings included)."""
    with connect(url) as cursor:
        cursor.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
            "WHERE query NOT LIKE '%%pg_stat_statements%%'"
        )
        return int(cursor.fetchone()[0])


def count_round_trips(port: int, url: str, requests: int = 200) -> float:
    """Messages the app sends to PostgreSQL per request, counted on the wire by tcpdump.

    Requests go one at a time, so each of the app's flushes to the server is one packet: a
    round trip. Needs tcpdump and the right to capture (root); "nan" without them.
    """
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        return float("nan")
    pg_port = int(url.rsplit(":", 1)[1].split("/")[0])
    capture = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-nn", "-q", "-l",
         f"tcp dst port {pg_port} and (tcp[tcpflags] & tcp-push != 0)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert capture.stderr is not None
    capture.stderr.readline()  # "listening on lo ...": capturing has begun
    for n in range(requests):
        get(port, f"/api/v1/items/{n * 37 % ITEMS + 1}", timeout=10)
    time.sleep(0.5)
    capture.terminate()
    packets = capture.communicate()[0].count("\n")
    return packets / requests


def health_under_primes(
    port: int, *, clients: int, below: int, seconds: float, prefix: str = "primes"
) -> dict[str, float]:
    """/health latency, probed every 10 ms on a fixed schedule, while `clients` loop on primes.

    The clients retry at once after an answer, or after `Retry-After` seconds when told to.
    """
    stop = threading.Event()
    statuses: list[int] = []
    open_connections: set[http.client.HTTPConnection] = set()

    def hammer() -> None:
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            open_connections.add(connection)
            try:
                connection.request("GET", f"/api/v1/examples/primes?below={below}")
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                # A well-behaved client waits as told before it retries.
                stop.wait(float(response.getheader("Retry-After") or 0))
            except OSError:
                if not stop.is_set():
                    statuses.append(0)
            finally:
                open_connections.discard(connection)
                connection.close()

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let the primes requests arrive
    latencies = probe_health(port, seconds)
    stop.set()
    for connection in list(open_connections):  # clients still waiting hang up
        sock = connection.sock
        if sock is not None:
            with suppress(OSError):  # unless their connection closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)
    for thread in threads:
        thread.join(timeout=5)
    ok = sum(status == 200 for status in statuses)
    refused = sum(status == 503 for status in statuses)
    other = len(statuses) - ok - refused
    return {
        f"{prefix}_health_p50": statistics.median(latencies) * 1000,
        f"{prefix}_health_p99": percentile(latencies, 99) * 1000,
        f"{prefix}_ok": ok,
        f"{prefix}_503": refused,
        f"{prefix}_other": other,
    }


def probe_health(port: int, seconds: float, every: float = 0.01) -> list[float]:
    """Latency of /health, due every `every` seconds, each timed from when it was due.

    A probe that answers late also answers for the probes that fell due meanwhile (each timed
    from its own due time), so a stalled loop weighs in the percentiles as long as it lasted.
    """
    latencies: list[float] = []
    started = time.perf_counter()
    end = started + seconds
    due = started
    while due < end:
        time.sleep(max(0.0, due - time.perf_counter()))
        with suppress(OSError):
            get(port, "/health", timeout=seconds)
        answered = time.perf_counter()
        while due <= answered and due < end:
            latencies.append(answered - due)
            due += every
    return latencies


def seconds_until_primes_answer(port: int) -> float:
    """After a flood's clients hang up: how long until a small primes request is served."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if get(port, "/api/v1/examples/primes?below=1000", timeout=10)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    return float("inf")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


COLUMNS = [
    ("rps64", "rps@64", "{:.0f}"),
    ("p99_64", "p99@64 ms", "{:.1f}"),
    ("errors64", "err@64", "{:.0f}"),
    ("rps256", "rps@256", "{:.0f}"),
    ("p99_256", "p99@256 ms", "{:.1f}"),
    ("max256", "max@256 ms", "{:.0f}"),
    ("errors256", "err@256", "{:.0f}"),
    ("cpu_us", "CPU us/req", "{:.0f}"),
    ("round_trips", "DB round trips/req", "{:.1f}"),
    ("statements", "DB stmts/req", "{:.1f}"),
    ("primes_health_p50", "health p50 primes", "{:.1f}"),
    ("primes_health_p99", "health p99 primes", "{:.1f}"),
    ("primes_ok", "primes done", "{:.0f}"),
    ("flood_health_p99", "health p99 flood", "{:.1f}"),
    ("flood_ok", "flood 200", "{:.0f}"),
    ("flood_503", "flood 503", "{:.0f}"),
    ("flood_other", "flood other", "{:.0f}"),
    ("recovered_s", "primes after flood s", "{:.1f}"),
    ("shutdown_s", "shutdown s", "{:.1f}"),
]


def print_table(apps: list[App], results: dict[str, Result], duration: int, rounds: int) -> None:
    print(
        f"\nGET /api/v1/items/{{id}} for {duration} s per phase; /health probed every 10 ms; "
        f"medians of {rounds} rounds [lowest-highest]; primes done: CPU jobs that completed "
        "while /health was probed"
    )
    header = ["app", *(title for _, title, _ in COLUMNS)]
    rows = [header]
    for app in apps:
        result = results[app.name]
        cells = []
        for key, _, fmt in COLUMNS:
            cell = fmt.format(result.figures.get(key, float("nan")))
            if key in result.spreads:
                low, high = result.spreads[key]
                cell += f" [{fmt.format(low)}-{fmt.format(high)}]"
            cells.append(cell)
        rows.append([app.name, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))

    print(
        "\nRatios (rps@64, CPU us/req): to the bare app, and to the app compared with (a bake's "
        "docs-style twin; an unwatched bake's watched self)"
    )
    bare = results.get("bare")
    for app in apps:
        figures = results[app.name].figures
        parts = [f"{app.name:>17}"]
        if bare:
            parts.append(f"vs bare: rps {ratio(figures, bare.figures, 'rps64')}")
            parts.append(f"CPU {ratio(figures, bare.figures, 'cpu_us')}")
        if app.twin and app.twin in results:
            twin = results[app.twin].figures
            parts.append(f"vs {app.twin}: rps {ratio(figures, twin, 'rps64')}")
            parts.append(f"CPU {ratio(figures, twin, 'cpu_us')}")
        print("  ".join(parts))


def ratio(figures: dict[str, float | str], reference: dict[str, float | str], key: str) -> str:
    value, base = float(figures.get(key, "nan")), float(reference.get(key, "nan"))
    if not base or base != base or value != value:
        return "n/a"
    return f"{value / base:.2f}x"


if __name__ == "__main__":
    main()
