"""Stopping a child process: ask with a signal, wait, then kill."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["stop_child"]


def stop_child(proc: subprocess.Popen[bytes] | None, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig`` and wait up to ``timeout``; a child still alive then is killed."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
