"""A throwaway PostgreSQL server on loopback, for the baked projects' test suites."""

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


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


def require_bindir(hint: str) -> Path:
    """The PostgreSQL binaries; without them the test is skipped, or fails under CI."""
    bindir = find_bindir()
    if bindir is None:
        message = f"no PostgreSQL binaries found ({hint})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A cluster in `home` on a loopback port; the tests may stop and start it again."""

    def __init__(self, bindir: Path, home: Path, port: int, options: str) -> None:
        self.bindir, self.home, self.port, self.options = bindir, home, port, options
        # Password authentication, as a real server has: the bakes' tests see a URL with a
        # password in it (which their logs must mask), and nothing connects without it.
        self.password = secrets.token_urlsafe(16)
        self.url = f"postgresql://postgres:{self.password}@127.0.0.1:{port}/postgres"
        # As root, the server runs as the `postgres` user: initdb refuses to run as root.
        self._run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *command: str | Path, check: bool = True) -> None:
        subprocess.run([*self._run_as, *map(str, command)], check=check, capture_output=True)

    def start(self) -> None:
        data, log = self.home / "data", self.home / "log"
        self.run(self.bindir / "pg_ctl", "-D", data, "-o", self.options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self.run(self.bindir / "pg_ctl", "-D", self.home / "data", "-m", "fast", "-w", "stop")


@contextmanager
def throwaway_postgres(bindir: Path, *settings: str) -> Iterator[PostgresServer]:
    """Start a fresh cluster on a free loopback port; yield it; stop and delete it.

    `settings` are extra server settings (`"max_connections=200"`).
    """
    home = Path(tempfile.mkdtemp(prefix="template-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {home} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    options += "".join(f" -c {setting}" for setting in settings)
    server = PostgresServer(bindir, home, port, options)
    try:
        initdb = bindir / "initdb"
        password_file = home / "password"
        password_file.write_text(server.password)
        if os.geteuid() == 0:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        server.run(
            initdb, "-D", home / "data", "-U", "postgres", "--no-sync",
            "--auth=scram-sha-256", f"--pwfile={password_file}",
        )  # fmt: skip
        password_file.unlink()
        server.start()
        try:
            yield server
        finally:  # a test may have left it stopped
            server.run(bindir / "pg_ctl", "-D", home / "data", "-m", "fast", "stop", check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
