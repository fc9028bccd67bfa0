"""Fixtures of the local-stack tests: a port someone else holds, and a finder for stray processes."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another socket listens on for the whole test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _strays(marker: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(marker) in cmd:
                found.append(cmd)
    return found


@pytest.fixture
def strays() -> Callable[[Path], list[str]]:
    """``strays(path)``: command lines of live processes that mention ``path`` (e.g. the state folder)."""
    return _strays
