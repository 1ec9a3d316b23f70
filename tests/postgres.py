"""A throwaway PostgreSQL server on loopback, for the baked projects' test suites."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_bindir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: PATH, `pg_config --bindir`, then the usual places."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    candidates = [
        *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True),
        *sorted(Path("/opt/homebrew/opt").glob("postgresql*/bin"), reverse=True),
        *sorted(Path("/usr/local/opt").glob("postgresql*/bin"), reverse=True),
        Path("/usr/pgsql/bin"),
    ]
    return next((path for path in candidates if (path / "initdb").exists()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def throwaway_postgres(bindir: Path) -> Iterator[str]:
    """Start a fresh cluster on a free loopback port; yield its admin URL; stop and delete it.

    As root, the server runs as the `postgres` user: initdb refuses to run as root.
    """
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    home = Path(tempfile.mkdtemp(prefix="template-pg-"))
    if as_root:
        owner = pwd.getpwnam("postgres")
        os.chown(home, owner.pw_uid, owner.pw_gid)
    data, port = home / "data", free_port()

    def run(*command: str | Path) -> None:
        subprocess.run([*run_as, *map(str, command)], check=True, capture_output=True)

    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {home} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", home / "log", "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
