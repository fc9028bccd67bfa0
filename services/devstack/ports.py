"""Free ports and waiting for a port to answer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

__all__ = ["free_port", "port_in_use", "wait_for_port", "PortTakenError"]


class PortTakenError(RuntimeError):
    """Something else already listens on the port a part was told to use."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for_port(
    port: int, host: str = "127.0.0.1", *, timeout: float = 30.0, alive: Callable[[], bool] | None = None
) -> None:
    """Wait until something accepts connections on the port; ``alive()`` False aborts early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"the process meant to listen on {host}:{port} exited")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")
