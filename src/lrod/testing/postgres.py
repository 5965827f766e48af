"""A throwaway PostgreSQL cluster for tests and benchmarks.

Uses the server binaries on this machine (`pg_ctl` on the PATH, or Debian's
/usr/lib/postgresql/*/bin). As root, the cluster runs as the `postgres` user,
since the server refuses to run as root. It listens on 127.0.0.1 and a private
socket folder only, with durable settings (fsync on) so that figures measured
against it are honest.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries could be found or started here."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable("pg_ctl was not found (install the PostgreSQL server package)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ThrowawayCluster:
    root: Path
    port: int
    bin_dir: Path
    user: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        initdb = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()}")
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c max_connections=300 "
            "-c shared_buffers=128MB -c fsync=on -c synchronous_commit=on"
        )
        log = self.root / "server.log"
        started = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {tail}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart_after_stop(self) -> None:
        """Start the same cluster again (after `stop`), on the same port."""
        self._pg_ctl_start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> ThrowawayCluster:
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="lrod-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = ThrowawayCluster(root, _free_port(), bin_dir, user="lrod")
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster
